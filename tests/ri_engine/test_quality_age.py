"""ageMismatch: ages stated for the patient against the age from birthDate."""

from __future__ import annotations

import pytest

from ri_engine.models import token_spans
from request_builder import analyse, build_request

# Reference date 2024-01-15 (encounter start); born 1980-03-02 -> 43 years old.
BORN_43 = "1980-03-02"


def ages(text: str, birth_date: str | None = BORN_43, **kw: object) -> int:
    return len(analyse(build_request(text, sex="female", birth_date=birth_date, **kw), "ageMismatch"))


@pytest.mark.parametrize("text", [
    "HISTORY: 72-year-old with pain.",
    "HISTORY: 72 yo female with pain.",
    "HISTORY: 72 y/o female with pain.",
    "HISTORY: Patient aged 72, pain.",
    "Provided history:\n78 years old Female\nPain.",
    "HISTORY: 72 years of age with pain.",
    "HISTORY: Neonate with distress.",
    "HISTORY: Adolescent with knee pain.",
    "HISTORY: 6-month-old with vomiting.",
])
def test_stated_age_far_from_true_age_fires(text: str) -> None:
    assert ages(text) == 1


@pytest.mark.parametrize("text", [
    "HISTORY: 43-year-old with pain.",
    "HISTORY: 44 yo woman with pain.",       # +1 year tolerance
    "HISTORY: 42 y/o woman with pain.",      # -1 year tolerance
])
def test_age_within_one_year_does_not_fire(text: str) -> None:
    assert ages(text) == 0


@pytest.mark.parametrize("text", [
    "HISTORY: Brought in by her 20-year-old son after a fall.",
    "HISTORY: Mother, 65 years old, had breast cancer.",
    "HISTORY: Breast cancer diagnosed at age 30.",
    "HISTORY: Appendectomy at the age of 12.",
    "HISTORY: Symptoms since age 12.",
    "HISTORY: Old 10-year-old fracture of the wrist.",
    "Screening advised for patients older than 50 years of age.",
    "Guideline: Male <60 years of age, refer.",
])
def test_ages_of_others_of_past_events_and_thresholds_do_not_fire(text: str) -> None:
    assert ages(text) == 0


def test_no_birth_date_means_no_comparison() -> None:
    assert ages("HISTORY: 72-year-old with pain.", birth_date=None) == 0


def test_document_date_is_used_without_an_encounter_period() -> None:
    text = "HISTORY: 43-year-old with pain."
    assert ages(text, encounter_start=None, created_at="2024-01-15T00:00:00") == 0
    assert ages(text, encounter_start=None, created_at="2034-01-15T00:00:00") == 1


def test_infant_word_against_an_infant_and_an_adult() -> None:
    assert ages("HISTORY: Infant with fever.", birth_date="2023-06-01") == 0
    assert ages("HISTORY: Infant with fever.", birth_date="2000-06-01") == 1


def test_one_inference_per_mismatching_age_with_its_tokens() -> None:
    text = "HISTORY: 72 y/o woman. Prior note says 43-year-old."
    data = build_request(text, sex="female", birth_date=BORN_43, include_evidence=True)
    (inference,) = analyse(data, "ageMismatch")
    start = text.index("72")
    assert token_spans(inference.extension) == [(start, 2), (start + 3, 1), (start + 4, 1), (start + 5, 1)]
