"""Near misses of the fourth review's rules (eval/corpus/review_probe4_check.jsonl): a
denied finding whose location runs past 40 characters before "consistent with", a size
followed by the dimension it gives ("3 cm across") after a word that does not measure, a
compact age after "Patient is" ending the sentence or without an article, and a score
denied by "no imaging evidence of"."""

from __future__ import annotations

import pytest

from request_builder import (
    analyse, build_request, finding_sizes, finding_subject, findings_of, is_absent, score_keys,
)

MALE = "248153007"
FEMALE = "248152002"


@pytest.mark.parametrize(("text", "expected"), [
    # The location of the denied finding, however long, is part of it: the denial goes on.
    ("FINDINGS: No mass in the upper outer quadrant of the left breast consistent with "
     "malignancy.", {"4147007": True, "363346000": True}),
    ("FINDINGS: No stone within the lower pole collecting system of the right kidney to "
     "suggest obstruction, consistent with passage.", {"56381008": True}),
    ("IMPRESSION: No focal consolidation in the periphery of the right lower lobe of the lung "
     "suspicious for pneumonia.", {"233604007": True}),
    # Near misses: a clause after the location ends it.
    ("FINDINGS: No mass in the upper outer quadrant of the left breast, findings consistent "
     "with fibroadenoma elsewhere.", {"4147007": True}),
    ("IMPRESSION: No pleural effusion in the right hemithorax where there is a large opacity "
     "consistent with pneumonia.", {"60046008": True, "233604007": False}),
])
def test_a_long_location_of_a_denied_finding_keeps_the_denial(text: str, expected: dict) -> None:
    got = {finding_subject(o): is_absent(o) for o in findings_of(text)}
    assert {k: v for k, v in got.items() if k in expected} == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: Mass in the pancreatic tail, estimated 3 cm across.", {"4147007": ["3c"]}),
    ("FINDINGS: Mass in the pancreatic tail, unchanged 3 cm craniocaudal.", {"4147007": ["3c"]}),
    ("FINDINGS: Cyst in the left kidney, roughly spherical 2 cm wide.", {"367643001": ["2c"]}),
    # Near misses: the size opens another noun phrase.
    ("FINDINGS: The 2 cm mass abuts 8 mm vessel.", {"4147007": ["2c"]}),
    ("FINDINGS: The 2 cm mass abuts 8 mm long segment of the vein.", {"4147007": ["2c"]}),
])
def test_a_size_and_its_dimension_measure_the_finding(text: str, expected: dict) -> None:
    got = {finding_subject(o): finding_sizes(o) for o in findings_of(text)}
    assert {k: v for k, v in got.items() if k in expected} == expected


@pytest.mark.parametrize(("text", "birth_date", "ages", "sexes"), [
    ("HISTORY: Patient is a 67F.", "1990-03-01", 1, [FEMALE]),
    ("HISTORY: Pt is 80M with fall.", "1990-03-01", 1, [MALE]),
    ("HISTORY: Patient is 45M, flank pain.", "1979-01-10", 0, [MALE]),
    # Near misses: a French size after "is a" or "this is a", with or without a period.
    ("FINDINGS: This is a 5 F sheath in the right common femoral artery.", "1990-03-01", 0, []),
    ("FINDINGS: The drain is a 10 F. It is in good position.", "1990-03-01", 0, []),
    ("FINDINGS: This is a 10 F. It is in good position.", "1990-03-01", 0, []),
])
def test_a_compact_age_after_patient_is(text: str, birth_date: str, ages: int,
                                        sexes: list[str]) -> None:
    request = build_request(text, sex="unspecified" if sexes == [] else
                            ("male" if sexes == [FEMALE] else "female"), birth_date=birth_date)
    assert len(analyse(request, "ageMismatch")) == ages
    assert [i.sex_indication.coding[0].code for i in analyse(request, "sexMismatch")] == sexes


@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: No imaging evidence of LR-5 observation. LR-3 observation in segment 7.",
     ["LI-RADS|3"]),
    ("IMPRESSION: No sonographic evidence of a TI-RADS 5 nodule. TR3 nodule in the right lobe.",
     ["TI-RADS|3"]),
    # Near misses: evidence asserted, a score after "no" of something else.
    ("IMPRESSION: Imaging evidence of LR-5 observation in segment 7.", ["LI-RADS|5"]),
    ("IMPRESSION: No change. BI-RADS 2: Benign.", ["BIRADS|2"]),
])
def test_a_score_denied_after_no_evidence(text: str, expected: list[str]) -> None:
    assert score_keys(text) == expected
