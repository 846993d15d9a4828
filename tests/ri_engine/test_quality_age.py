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


# --- ages written in words ----------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("HISTORY: A sixty-five-year-old woman with cough.", 1),
    ("HISTORY: Seventy two year old female with pain.", 1),
    ("HISTORY: Seventy-Two-Year-Old woman with pain.", 1),
    ("HISTORY: Woman, eighty years of age, with pain.", 1),
    ("HISTORY: Patient aged ninety, pain.", 1),
    ("HISTORY: One hundred and two year old woman, fall.", 1),
    ("HISTORY: Three-week-old with vomiting.", 1),
    ("HISTORY: Forty-three-year-old woman with pain.", 0),  # the true age
    ("HISTORY: Forty four year old woman with pain.", 0),    # within one year
    ("HISTORY: Fourty-two-year-old woman with pain.", 0),    # a common misspelling
])
def test_ages_in_words_are_read_like_digits(text: str, expected: int) -> None:
    assert expected == ages(text)


@pytest.mark.parametrize("text", [
    "HISTORY: Brought in by her twenty-year-old son after a fall.",
    "HISTORY: Breast cancer diagnosed at age thirty.",
    "HISTORY: Old ten-year-old fracture of the wrist.",
    "HISTORY: Two year old study for comparison is unavailable.",
    "COMPARISON: 2-year-old CT of the chest.",
    "Screening advised for patients older than fifty years of age.",
])
def test_word_ages_of_others_past_events_things_and_thresholds_do_not_fire(text: str) -> None:
    assert 0 == ages(text)


def test_word_age_evidence_is_its_tokens() -> None:
    text = "HISTORY: A sixty-five-year-old woman."
    data = build_request(text, sex="female", birth_date=BORN_43, include_evidence=True)
    (inference,) = analyse(data, "ageMismatch")
    start = text.index("sixty")
    assert [(start, 5), (start + 5, 1), (start + 6, 4), (start + 10, 1), (start + 11, 4),
            (start + 15, 1), (start + 16, 3)] == token_spans(inference.extension)


def test_newborn_and_weeks_old_match_a_newborn() -> None:
    assert 0 == ages("HISTORY: Newborn with apnea.", birth_date="2024-01-10")
    assert 0 == ages("HISTORY: 3-week-old with vomiting.", birth_date="2023-12-25")
    assert 0 == ages("HISTORY: Three-week-old with vomiting.", birth_date="2023-12-25")


@pytest.mark.parametrize("text", [
    # The age of a study in the comparison section, or of a thing named after the age.
    "COMPARISON: Two-year-old outside MRI of the lumbar spine.",
    "COMPARISON: CT of the abdomen and pelvis, three years old.",
    "HISTORY: 43-year-old woman with a ten-year-old left hip prosthesis.",
    # A thing the sentence is about, outside the history: "hematoma ... weeks old".
    "FINDINGS: Right subdural hematoma of mixed density, approximately two to three weeks old.",
    # Ages that are not a person's.
    "FINDINGS: Bone age: eleven years. Chronological age: forty-three years.",
    "FINDINGS: Bone age: 13 years 6 months by Greulich and Pyle.",
    "FINDINGS: Single live intrauterine gestation. Gestational age: thirty-two weeks.",
    # A relative as the subject, however far before the age.
    "HISTORY: 43-year-old. His brother, also a heavy smoker, is seventy years old.",
    "HISTORY: Mother diagnosed with lung cancer aged sixty-eight. 43-year-old nonsmoker.",
    # Another patient, and an age cut across two lines.
    "ADDENDUM: The preliminary report described a different patient, a seventy-year-old man.",
    "IMPRESSION:\n6 mm nodule; CT in one year\nOld healed fractures of the left fifth rib.",
])
def test_ages_of_studies_things_others_and_other_kinds_of_age_do_not_fire(text: str) -> None:
    assert 0 == ages(text)


@pytest.mark.parametrize("text", [
    "HISTORY: Seventy-eight-year-old woman after a fall, accompanied by her daughter.",
    "HISTORY: Seventy-eight-year-old woman with a twenty-year history of smoking.",
    "HISTORY: Fall with hip fracture. Patient is seventy-eight years old.",
    "HISTORY: 78-year-old right-handed woman with headache.",
    # A patient word after a thing word: the age is the patient's.
    "HISTORY: 78-year-old hip fracture patient.",
])
def test_the_patients_age_still_fires_next_to_relatives_histories_and_things(text: str) -> None:
    assert 1 == ages(text)


def test_a_relatives_age_is_not_the_stated_age_a_measure_uses() -> None:
    text = ("HISTORY: Mother diagnosed with lung cancer aged forty-eight. Thirty-one-year-old "
            "nonsmoker with cough.\nFINDINGS: 7 mm solid nodule in the right upper lobe.")
    data = build_request(text, birth_date=None, inference_types=["qualityMeasure"],
                         inference_options={"qualityMeasureOptions": {"measureTypes": ["mips364"]}})
    [measure] = analyse(data, "qualityMeasure")
    assert "notEligible" == measure.compliance_type
