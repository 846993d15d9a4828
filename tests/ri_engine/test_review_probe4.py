"""Rules from the fourth engine review (eval/corpus/review_probe4.jsonl and
review_probe4_near.jsonl): "consistent with" and its kin after a denied finding, a size
opening a noun phrase without a determiner, "Patient is a 45M", body parts shared by two
exams, a denied score, "further evaluation with MRI is recommended", and a communication
about an earlier study."""

from __future__ import annotations

import pytest

from request_builder import (
    analyse, build_request, critical_descriptions, finding_sizes, finding_subject, findings_of,
    is_absent, laterality_keys, score_keys,
)

CPT = "http://www.ama-assn.org/go/cpt"
MALE = "248153007"


# --- "consistent with" after a denial ----------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    # Right after a denied finding the connector qualifies it: the denial goes on.
    ("FINDINGS: No mass consistent with malignancy.", {"4147007": True, "363346000": True}),
    ("FINDINGS: No suspicious mass in the right breast suggestive of malignancy.",
     {"4147007": True, "363346000": True}),
    ("FINDINGS: No focal opacity compatible with pneumonia.", {"127558001": True, "233604007": True}),
    # Opening a clause, or after what is no finding, it ends the denial.
    ("FINDINGS: No acute fracture, consistent with healed prior fracture.",
     {"72704001": False}),
    ("IMPRESSION: Absent flow consistent with testicular torsion.", {"129256008": False}),
    ("IMPRESSION: Absent flow to the left testis, highly suspicious for torsion.",
     {"129256008": False}),
])
def test_a_connector_after_a_denied_finding_keeps_the_denial(text: str, expected: dict) -> None:
    got: dict[str, bool] = {}
    for observation in findings_of(text):
        # The last mention of a code decides (the healed fracture after the denied one).
        got[finding_subject(observation)] = is_absent(observation)
    assert {k: v for k, v in got.items() if k in expected} == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: Right breast: No mass consistent with malignancy.", []),
    ("IMPRESSION: No pericardial fluid collection suspicious for tamponade. No fracture "
     "concerning for malignancy.", []),
    ("FINDINGS: Left testis: No detectable arterial or venous flow, consistent with testicular "
     "torsion.", ["TESTICULAR TORSION"]),
])
def test_critical_results_follow_the_denial(text: str, expected: list[str]) -> None:
    assert critical_descriptions(text) == expected


# --- a size opens a noun phrase without a determiner ---------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: The 2 cm mass abuts 8 mm vessel.", {"4147007": ["2c"]}),
    ("FINDINGS: The 3 cm right lower lobe mass encases 5 mm segmental bronchus.", {"4147007": ["3c"]}),
    # Near misses: a measuring word, a comparison or the finding itself before the size.
    ("FINDINGS: Right upper lobe nodule measures 8 mm transverse.", {"27925004": ["8m"]}),
    ("FINDINGS: Nodule 8 mm right upper lobe.", {"27925004": ["8m"]}),
    ("FINDINGS: Hepatic cysts up to 4 mm scattered throughout.", {"367643001": ["4m"]}),
    ("FINDINGS: The stent abuts 6 mm stone in the distal duct.", {"56381008": ["6m"]}),
])
def test_a_size_without_a_determiner_measures_its_own_phrase(text: str, expected: dict) -> None:
    got = {finding_subject(o): finding_sizes(o) for o in findings_of(text)}
    assert {k: v for k, v in got.items() if k in expected} == expected


# --- "Patient is a 45M with ..." ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "birth_date", "ages", "sexes"), [
    ("HISTORY: Patient is a 45M with right flank pain.", "1978-05-01", 0, [MALE]),
    ("HISTORY: Patient is a 45M with right flank pain.", "1959-11-20", 1, [MALE]),
    ("HISTORY: Pt is an 80F, fall.", "1978-05-01", 1, []),
    ("INDICATION: This is a 62M with cough.", "1961-06-01", 0, [MALE]),
    # A French size after "is a" is no age.
    ("FINDINGS: The drain is a 10 F, which was left in place.", "1978-05-01", 0, []),
])
def test_a_compact_age_after_the_patients_introduction(
        text: str, birth_date: str, ages: int, sexes: list[str]) -> None:
    request = build_request(text, sex="female", birth_date=birth_date)
    assert len(analyse(request, "ageMismatch")) == ages
    assert [i.sex_indication.coding[0].code for i in analyse(request, "sexMismatch")] == sexes


# --- a part shared by two exams --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "display", "code", "expected"), [
    ("FINDINGS: Nondisplaced fracture of the lateral process of the left talus.",
     "XR ANKLE RIGHT 3 VIEWS", "73610", ["orderLateralityMismatch|7771000"]),
    ("FINDINGS: Osteochondral lesion of the right talus. Midfoot alignment is normal.",
     "XR FOOT LEFT 3 VIEWS", "73630", ["orderLateralityMismatch|24028007"]),
    ("FINDINGS: Left subtalar joint: moderate degenerative narrowing.",
     "XR ANKLE RIGHT 3 VIEWS", "73610", ["orderLateralityMismatch|7771000"]),
    ("FINDINGS: Comminuted fracture of the left distal radius.",
     "XR FOREARM RIGHT 2 VIEWS", "73090", ["orderLateralityMismatch|7771000"]),
    # Near misses: the order's side, or a part of another exam.
    ("FINDINGS: Osteochondral lesion of the left talus.", "XR FOOT LEFT 3 VIEWS", "73630", []),
    ("FINDINGS: Right ankle: no fracture. Left knee arthroplasty partly imaged.",
     "XR ANKLE RIGHT 3 VIEWS", "73610", []),
])
def test_a_part_shared_by_two_exams_counts_for_either(
        text: str, display: str, code: str, expected: list[str]) -> None:
    request = build_request(text, sex="male", procedures=[{"system": CPT, "code": code, "display": display}])
    assert laterality_keys(request) == expected


# --- a denied score ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: No PI-RADS 4 or 5 lesion. Overall PI-RADS assessment category 2.", ["PI-RADS|2"]),
    ("IMPRESSION: No evidence of a LI-RADS 5 observation. LR-3 observation in segment 6.",
     ["LI-RADS|3"]),
    # Near misses: a score after a denied finding, or a list that is asserted.
    ("IMPRESSION: No suspicious mass. BI-RADS 1: Negative.", ["BIRADS|1"]),
    ("IMPRESSION: PI-RADS 4 lesion in the left peripheral zone; no extraprostatic extension.",
     ["PI-RADS|4"]),
])
def test_a_denied_score_is_no_assessment(text: str, expected: list[str]) -> None:
    assert score_keys(text) == expected


# --- "protocol" in an exam's name -------------------------------------------------------------------

def _recommended(text: str) -> list[str]:
    out = []
    for i in analyse(build_request(text), "followupRecommendation"):
        procedure = i.to_json()["recommendedProcedure"]
        out += [p["modality"]["coding"][0]["code"] for p in procedure.get("imagingProcedures", [])]
    return out


@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: Indeterminate renal lesion. Further evaluation with renal protocol MRI is "
     "recommended.", ["113091000"]),
    ("IMPRESSION: Pancreatic cyst. Recommend CT with pancreas protocol in 1 year.", ["77477000"]),
    # A protocol that is a programme or guideline still makes a reference block.
    ("IMPRESSION: Lung-RADS 2. Per the screening program protocol, annual low-dose CT is "
     "performed.", []),
])
def test_protocol_in_an_exam_name_is_no_guideline(text: str, expected: list[str]) -> None:
    assert _recommended(text) == expected


# --- a communication about an earlier study ---------------------------------------------------------

def _communications(text: str) -> list[str]:
    return ["+".join(sorted(i.recipient)) for i in analyse(build_request(text), "followupCommunication")]


@pytest.mark.parametrize(("text", "expected"), [
    ("COMPARISON: CT 01/03/2024, whose findings were discussed with Dr. Lee at that time.\n\n"
     "FINDINGS: The consolidation has improved.", []),
    ("COMPARISON: CT 01/03/2024.\n\nFINDINGS: New right pneumothorax.\n\nIMPRESSION: New right "
     "pneumothorax, discussed with Dr. Lee at 10:05.", ["doctor"]),
])
def test_a_communication_in_the_comparison_was_of_the_earlier_study(
        text: str, expected: list[str]) -> None:
    assert _communications(text) == expected


# --- a run-on sentence in capitals ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: NO FOCAL CONSOLIDATION SMALL RIGHT PLEURAL EFFUSION", {"95436008": True, "60046008": False}),
    ("FINDINGS: No pneumothorax moderate left pleural effusion.", {"36118008": True, "60046008": False}),
    # Near misses: the size word inside the denial, after "or", or after a comma.
    ("FINDINGS: NO SMALL BOWEL OBSTRUCTION.", {"81060008": True}),
    ("FINDINGS: No pneumothorax or small pleural effusion.", {"36118008": True, "60046008": True}),
    ("FINDINGS: No pleural effusion, small or large.", {"60046008": True}),
])
def test_a_size_word_after_a_finding_opens_the_next_one(text: str, expected: dict) -> None:
    got = {finding_subject(o): is_absent(o) for o in findings_of(text)}
    assert {k: v for k, v in got.items() if k in expected} == expected
