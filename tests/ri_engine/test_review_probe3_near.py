"""Near misses of the third review's rules (eval/corpus/review_probe3_near.jsonl): a
temperature or a French size read as "45M"-style ages, "TAH" of a total artificial heart,
a pregnancy dated "by LMP" in a newborn's report, title case after "No" taken for a
dropped period, and a hedge inside a denial ("no fat stranding suggesting appendicitis")
ending it."""

from __future__ import annotations

import pytest

from request_builder import analyse, build_request

MALE, FEMALE = "248153007", "248152002"


@pytest.mark.parametrize(("text", "mismatches"), [
    # A temperature in Fahrenheit and a French size, followed by a word the compact age
    # form allows: neither opens a line, a sentence or a labelled field.
    ("HISTORY: Fever to 102 F, cough.", 0),
    ("HISTORY: Temperature 101 F with chills.", 0),
    ("FINDINGS: The 8 F sheath was exchanged for a 10 F, which was left in the collection.", 0),
    # The compact form where a history line opens it.
    ("HISTORY: 45F, fall.", 1),
    ("INDICATION: Chest pain. 45F with cough.", 1),
    ("45F with cough.", 1),
])
def test_a_compact_age_opens_its_line_or_sentence(text: str, mismatches: int) -> None:
    request = build_request(text, sex="male", birth_date="1960-03-01")
    assert len(analyse(request, "ageMismatch")) == mismatches
    assert [i.sex_indication.coding[0].code
            for i in analyse(request, "sexMismatch")] == [FEMALE] * mismatches


@pytest.mark.parametrize(("text", "expected"), [
    # TAH is also a total artificial heart: a device that is placed, with a driveline.
    ("HISTORY: Heart failure, status post TAH placement.", []),
    ("HISTORY: Status post TAH.\n\nFINDINGS: Total artificial heart in place.", []),
    ("HISTORY: Status post TAH.\n\nFINDINGS: No pelvic mass.", [FEMALE]),
    # "by LMP" dates a pregnancy: in a newborn's report it is the mother's.
    ("HISTORY: Former 30-week infant, corrected gestational age 36 weeks by LMP. Apnea.", []),
    ("HISTORY: Pelvic pain. LMP 2 weeks ago.", [FEMALE]),
])
def test_a_term_in_its_other_sense_implies_no_sex(text: str, expected: list[str]) -> None:
    request = build_request(text, sex="male", birth_date="2023-11-20")
    assert [i.sex_indication.coding[0].code for i in analyse(request, "sexMismatch")] == expected


def _critical(text: str) -> list[str]:
    return [i.to_json()["result"]["description"] for i in analyse(build_request(text), "criticalResult")]


@pytest.mark.parametrize(("text", "expected"), [
    # Title case after "No" is no dropped period.
    ("IMPRESSION: No New Fracture.", []),
    ("IMPRESSION: No Large Bowel Obstruction.", []),
    # A hedge that qualifies what is denied does not end the denial ...
    ("IMPRESSION: No periappendiceal fluid or fat stranding suggesting appendicitis.", []),
    ("IMPRESSION: No filling defects indicating pulmonary embolism.", []),
    # ... one that opens a clause does.
    ("IMPRESSION: Dilated appendix without surrounding fat stranding, possibly representing "
     "early appendicitis.", ["APPENDICITIS"]),
])
def test_a_denial_goes_on_through_title_case_and_a_qualifying_hedge(
        text: str, expected: list[str]) -> None:
    assert _critical(text) == expected
