"""sexMismatch: words, anatomy and conditions that imply a sex other than details.sex."""

from __future__ import annotations

import pytest

from request_builder import analyse, build_request

MALE = "248153007"
FEMALE = "248152002"


def indications(text: str, sex: str | None) -> list[str]:
    produced = analyse(build_request(text, sex=sex), "sexMismatch")
    return [i.sex_indication.coding[0].code for i in produced]


@pytest.mark.parametrize(("text", "sex", "expected"), [
    ("INDICATION: Screening mammogram on a 52 year old man.", "female", [MALE]),
    ("HISTORY: 60 yo F with flank pain.", "male", [FEMALE]),
    ("FINDINGS: The prostate is enlarged.", "female", [MALE]),
    ("FINDINGS: The uterus is anteverted.", "male", [FEMALE]),
    ("IMPRESSION: Findings concerning for ectopic pregnancy.", "male", [FEMALE]),
    ("IMPRESSION: Absent flow consistent with testicular torsion.", "female", [MALE]),
    ("HISTORY: The patient states she has had fever.", "male", [FEMALE]),
    # The removal of a sex-specific organ implies the sex whose organ it was; the organ named
    # in the same sentence is absent and does not count a second time.
    ("HISTORY: Status post hysterectomy, uterus absent.", "male", [FEMALE]),
    ("HISTORY: Status post radical prostatectomy.", "female", [MALE]),
    ("FINDINGS: Subareolar gynecomastia on the left.", "female", [MALE]),
])
def test_implied_sex_other_than_the_patients_fires(text: str, sex: str, expected: list[str]) -> None:
    assert indications(text, sex) == expected


@pytest.mark.parametrize(("text", "sex"), [
    ("HISTORY: Status post radical prostatectomy. The prostatectomy bed is clear.", "male"),
    ("HISTORY: Her father had a prostatectomy.", "female"),
    ("HISTORY: Inguinal hernia, further evaluation after therapy.", "male"),
    ("IMPRESSION: No evidence of ectopic pregnancy.", "male"),
    ("FINDINGS: Single live intrauterine gestation. Male fetus.", "female"),
    ("HISTORY: Family history of prostate cancer.", "female"),
    ("HISTORY: Her husband, a 50-year-old man, is present.", "female"),
    ("Discussed with Dr. Smith, who said he would call.", "female"),
    ("Guideline: Female >5cm, Male >5.5cm.", "female"),
    ("FINDINGS: The prostate is enlarged.", "male"),
])
def test_negated_absent_other_person_and_matching_mentions_do_not_fire(text: str, sex: str) -> None:
    assert indications(text, sex) == []


@pytest.mark.parametrize("sex", [None, "unspecified"])
def test_unknown_patient_sex_gives_nothing(sex: str | None) -> None:
    assert indications("FINDINGS: The prostate is enlarged.", sex) == []


def test_one_inference_per_triggering_mention_and_one_for_all_pronouns() -> None:
    text = ("HISTORY: 40-year-old man. He reports pain and he has fever.\n\n"
            "FINDINGS: The prostate is normal. The testes are normal.")
    assert indications(text, "female") == [MALE, MALE, MALE, MALE]
