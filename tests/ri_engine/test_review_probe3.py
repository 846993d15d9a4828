"""Rules from the third engine review (eval/corpus/review_probe3.jsonl and
review_probe3_fixes.jsonl): a size inside another noun phrase, a relative's surgery, one
operation named by two procedure words, sentences written in capitals, a dropped period,
interpretive connectors after a denial, ages written "45M", menstruation, and the named
parts of a joint."""

from __future__ import annotations

import pytest

from request_builder import (
    analyse, build_request, finding_sizes, finding_subject, findings_of as _findings,
    is_absent as _absent,
)

CPT = "http://www.ama-assn.org/go/cpt"
MALE, FEMALE = "248153007", "248152002"


# --- a size belongs to the head of its noun phrase -------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: The 2 cm mass abuts the 8 mm vessel.", {"4147007": ["2c"]}),
    ("FINDINGS: The mass abuts the 8 mm vessel.", {"4147007": []}),
    ("FINDINGS: A 1.5 cm stone obstructs the 9 mm common bile duct.", {"56381008": ["1.5c"]}),
    ("FINDINGS: A mass in the pancreatic head abutting the 8 mm vessel measures 2.1 cm.",
     {"4147007": ["2.1c"]}),
    # The phrase's head is a finding: the size stays with it.
    ("FINDINGS: A 3 cm cyst compresses the 1.2 cm nodule.", {"367643001": ["3c"], "27925004": ["1.2c"]}),
    ("FINDINGS: The 6 mm right upper lobe nodule is stable.", {"27925004": ["6m"]}),
    ("FINDINGS: There is a 2 cm area of consolidation in the left lower lobe.", {"95436008": ["2c"]}),
    # No determiner before the size: the rules before this one decide.
    ("FINDINGS: The mass abuts the vessel and measures 2 cm.", {"4147007": ["2c"]}),
])
def test_a_size_in_another_noun_phrase_is_not_the_findings(text: str, expected: dict) -> None:
    got = {finding_subject(o): finding_sizes(o) for o in _findings(text)}
    assert {k: v for k, v in got.items() if k in expected} == expected


# --- sexMismatch ------------------------------------------------------------------------------

def _sexes(text: str, sex: str) -> list[str]:
    return [i.sex_indication.coding[0].code for i in analyse(build_request(text, sex=sex), "sexMismatch")]


@pytest.mark.parametrize(("text", "sex", "expected"), [
    # A relative named after the surgery or condition owns it.
    ("HISTORY: Status post prostatectomy in her brother. Cough.", "female", []),
    ("HISTORY: Hysterectomy in his older sister.", "male", []),
    ("HISTORY: Ovarian cancer of the patient's mother.", "male", []),
    ("HISTORY: Status post prostatectomy. Brother with colon cancer.", "female", [MALE]),
    ("HISTORY: Status post prostatectomy in 2019.", "female", [MALE]),
    # One operation named by two procedure words is one mention; two operations are two.
    ("HISTORY: Status post TAH-BSO.", "male", [FEMALE]),
    ("HISTORY: Status post TAH/BSO.", "male", [FEMALE]),
    ("HISTORY: Status post total abdominal hysterectomy with bilateral salpingo-oophorectomy.",
     "male", [FEMALE]),
    ("HISTORY: Status post hysterectomy.\n\nFINDINGS: Prior bilateral oophorectomy.", "male",
     [FEMALE, FEMALE]),
    ("HISTORY: Status post TAH-BSO.", "female", []),
    # An age with its sex letter ("45M") and menstruation imply a sex.
    ("HISTORY: 45M with chest pain.", "female", [MALE]),
    ("FINDINGS: A 5F pigtail catheter is in the collection.", "male", []),
    ("INDICATION: Pelvic pain, last menstrual period 2 weeks ago.", "male", [FEMALE]),
    ("HISTORY: Patient's wife reports her last menstrual period was normal.", "male", []),
])
def test_sex_mentions(text: str, sex: str, expected: list[str]) -> None:
    assert _sexes(text, sex) == expected


# --- ageMismatch ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "birth_date", "mismatches"), [
    ("HISTORY: 45M with trauma to the chest.", "1950-03-01", 1),
    ("HISTORY: 72F, fall.", "1990-03-01", 1),
    ("HISTORY: 33F with cough.", "1990-03-01", 0),
    ("FINDINGS: A 5F pigtail catheter is in the collection. An 8 F drain is in the pelvis.",
     "1990-03-01", 0),
])
def test_age_written_with_its_sex_letter(text: str, birth_date: str, mismatches: int) -> None:
    assert len(analyse(build_request(text, birth_date=birth_date), "ageMismatch")) == mismatches


# --- followupCommunication in capitals ---------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: ACUTE SUBARACHNOID HEMORRHAGE. DISCUSSED WITH DR. OKAFOR AT 0215.",
     [(["doctor"], True)]),
    ("IMPRESSION: ACUTE EPIDURAL HEMATOMA. CRITICAL RESULT CALLED TO JANE SMITH, RN AT 2:15 AM.",
     [(["nurse"], True)]),
    ("IMPRESSION: NORMAL. WILL BE DISCUSSED WITH DR. OKAFOR TOMORROW.", []),
    ("IMPRESSION: NORMAL. PLEASE DO NOT HESITATE TO CALL WITH QUESTIONS.", []),
])
def test_communication_written_in_capitals(text: str, expected: list) -> None:
    got = [(i.recipient, i.was_acknowledged) for i in analyse(build_request(text), "followupCommunication")]
    assert got == expected


# --- assertion: a dropped period, connectors after a denial -------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: No pneumothorax Moderate right pleural effusion with adjacent atelectasis",
     [("36118008", True), ("60046008", False), ("46621007", False)]),
    ("FINDINGS: No consolidation Small bilateral pleural effusions",
     [("95436008", True), ("60046008", False)]),
    # After a word that runs on ("or"), a capital does not end the sentence.
    ("FINDINGS: No pneumothorax or Large pleural effusion.", [("36118008", True), ("60046008", True)]),
])
def test_a_dropped_period_ends_the_denial(text: str, expected: list) -> None:
    assert [(finding_subject(o), _absent(o)) for o in _findings(text)] == expected


def _critical(text: str) -> list[str]:
    return [i.to_json()["result"]["description"] for i in analyse(build_request(text), "criticalResult")]


@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: The right ovary is enlarged with no detectable arterial flow, possibly representing "
     "ovarian torsion.", ["OVARIAN TORSION"]),
    ("FINDINGS: The left ovary is enlarged without venous flow, suggesting ovarian torsion.",
     ["OVARIAN TORSION"]),
    # A denial of the evidence denies what it would suggest.
    ("IMPRESSION: No sonographic findings suggesting ovarian torsion.", []),
    ("IMPRESSION: No CT findings consistent with appendicitis.", []),
    ("IMPRESSION: No findings suggestive of appendicitis.", []),
])
def test_a_connector_after_a_denial(text: str, expected: list[str]) -> None:
    assert _critical(text) == expected


# --- lateralityDiscrepancy: the named parts of a joint -------------------------------------------

@pytest.mark.parametrize(("text", "display", "code", "expected"), [
    ("FINDINGS: There is a nondisplaced fracture of the left greater tuberosity.",
     "XR SHOULDER RIGHT 3 VIEWS", "73030", ["orderLateralityMismatch|7771000"]),
    ("FINDINGS: Avulsion fracture of the right greater trochanter.", "XR HIP LEFT 2 VIEWS", "73502",
     ["orderLateralityMismatch|24028007"]),
    ("FINDINGS: Nondisplaced fracture of the right greater tuberosity.", "XR SHOULDER RIGHT 3 VIEWS",
     "73030", []),
    ("FINDINGS: Right elbow: no fracture. Left clavicle hardware on the scout image.",
     "XR ELBOW RIGHT 2 VIEWS", "73070", []),
])
def test_joint_parts_carry_the_joints_side(text: str, display: str, code: str, expected: list[str]) -> None:
    request = build_request(text, sex="male", procedures=[{"system": CPT, "code": code, "display": display}])
    got = []
    for i in analyse(request, "lateralityDiscrepancy"):
        side = i.laterality_indication.coding[0].code if i.laterality_indication else "-"
        got.append(f"{i.discrepancy_type}|{side}")
    assert got == expected
