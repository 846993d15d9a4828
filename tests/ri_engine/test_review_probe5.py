"""The fifth review (eval/corpus/review_probe5.jsonl, review_probe5_near.jsonl,
resolved_findings.jsonl): resolved findings, exam titles against the report body, a
connector after a denied sign, denied and alternative scores, sizes "ranging from", advice
without a recommending word or after a citation, and "F/64" ages."""

from __future__ import annotations

import pytest

from request_builder import (
    analyse, build_request, critical_descriptions, finding_sizes, finding_subject, findings_of,
    laterality_keys, score_keys,
)

NONE, RESOLVED = "260413007", "723506003"
MALE, FEMALE = "248153007", "248152002"
CPT = "http://www.ama-assn.org/go/cpt"
CT_CHEST = {"system": "http://loinc.org", "code": "24627-2", "display": "CT CHEST"}


def statuses(text: str) -> list[tuple[str, str]]:
    """(SUBJECT OF INFORMATION, absent / resolved / present) per finding, in text order."""
    out = []
    for observation in findings_of(text):
        codes = {c["code"] for i in observation.get("interpretation", []) for c in i["coding"]}
        status = "absent" if NONE in codes else "resolved" if RESOLVED in codes else "present"
        out.append((finding_subject(observation), status))
    return out


# --- resolved findings (ri_contract 5.6: RESOLVED, not NONE) ------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: Interval resolution of the right lower lobe pneumonia. No pleural effusion.",
     [("233604007", "resolved"), ("60046008", "absent")]),
    ("FINDINGS: The previously seen right upper lobe nodules are no longer seen. No new nodules.",
     [("27925004", "resolved"), ("27925004", "absent")]),
    ("FINDINGS: The left pleural effusion has resolved.", [("60046008", "resolved")]),
    ("IMPRESSION: Resolved small bowel obstruction.", [("81060008", "resolved")]),
    ("FINDINGS: There is no longer a pneumothorax.", [("36118008", "resolved")]),
    ("FINDINGS: Pleural and pericardial effusions have resolved.",
     [("60046008", "resolved"), ("373945007", "resolved")]),
    ("FINDINGS: The left pleural effusion has resolved, but a small right pleural effusion persists.",
     [("60046008", "resolved"), ("60046008", "present")]),
    # Near misses: the finding is still there.
    ("FINDINGS: The right pleural effusion has not resolved.", [("60046008", "present")]),
    ("FINDINGS: Partially resolved left lower lobe pneumonia.", [("233604007", "present")]),
    ("IMPRESSION: Unresolved right pneumothorax.", [("36118008", "present")]),
    ("FINDINGS: Resolving right lower lobe consolidation.", [("95436008", "present")]),
    ("FINDINGS: Near-complete resolution of the left pleural effusion.", [("60046008", "present")]),
    ("IMPRESSION: No resolution of the small bowel obstruction.", [("81060008", "present")]),
    ("FINDINGS: The right upper lobe nodule is no longer growing, measuring 7 mm.",
     [("27925004", "present")]),
    ("IMPRESSION: Pneumonia. Recommend a radiograph in 6 weeks to confirm resolution of the pneumonia.",
     [("233604007", "present"), ("233604007", "present")]),
])
def test_a_resolved_finding_is_reported_as_resolved(text: str, expected: list) -> None:
    assert statuses(text) == expected


def test_a_resolved_finding_carries_resolved_alone_of_the_absence_codes() -> None:
    (observation,) = findings_of("FINDINGS: The previously seen right pneumothorax has resolved.")
    codes = [c["code"] for i in observation["interpretation"] for c in i["coding"]]
    assert RESOLVED in codes and NONE not in codes


@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: Resolved small bowel obstruction.", []),
    ("FINDINGS: The subdural hematoma has completely resolved.", []),
    ("IMPRESSION: Resolution of the previously seen left femoral deep vein thrombosis.", []),
    ("FINDINGS: The previously seen right pneumothorax is no longer visualized.", []),
    # Near misses: still there, still critical.
    ("FINDINGS: Partially resolved left lower lobe pneumonia.", ["PNEUMONIA"]),
    ("IMPRESSION: Unresolved right pneumothorax.", ["PNEUMOTHORAX, NO EVIDENCE OF TENSION"]),
    ("IMPRESSION: No resolution of the small bowel obstruction.", ["BOWEL OBSTRUCTION"]),
])
def test_a_resolved_finding_is_no_critical_result(text: str, expected: list[str]) -> None:
    assert critical_descriptions(text) == expected


def test_a_resolved_nodule_gets_no_guidance_and_no_nodule_measure() -> None:
    text = ("FINDINGS: The previously described 8 mm right upper lobe nodule has resolved. "
            "No new pulmonary nodules.\n\nIMPRESSION: Resolution of right upper lobe nodule.")
    request = build_request(text, birth_date="1960-05-01", procedures=[CT_CHEST],
                            inference_options={"qualityMeasureOptions": {"measureTypes": ["mips364"]}})
    assert analyse(request, "guidance") == []
    assert [(q.quality_measure_denominator, q.compliance_type)
            for q in analyse(request, "qualityMeasure")] == [
        ("INCIDENTAL PULMONARY NODULE", "notEligible")]


def test_a_resolved_finding_motivates_no_recommendation() -> None:
    text = "IMPRESSION: Resolved right pneumothorax; recommend chest CT in 3 months for the 7 mm nodule."
    (recommendation,) = analyse(build_request(text), "followupRecommendation")
    assert [finding_subject(f.finding.to_json()) for f in recommendation.findings or []] == ["27925004"]


# --- the exam title is compared with the body ---------------------------------------------------

def order(display: str, code: str = "x", system: str = "http://loinc.org") -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


@pytest.mark.parametrize(("text", "procedure", "expected"), [
    # A title alone says nothing of the body: the side is missing (qa-lat-14/15).
    ("Exam: US LT BREAST TARGETED\r\n\r\nFindings:\r\nAt the 6:00 position there is a 4 mm cyst.\r\n",
     order("US BREAST - LEFT LIMITED", "26688-1"), ["textLateralityMissing|-"]),
    ("EXAM: XR RIGHT WRIST 3 VIEWS\n\nFINDINGS: No fracture. Alignment normal.",
     order("XR WRIST RT 3 VIEWS", "73110", CPT), ["textLateralityMissing|-"]),
    # A title on the other side from the order, the body part before the side.
    ("EXAM: XR KNEE LEFT 2 VIEWS\n\nFINDINGS: No fracture. Small joint effusion.",
     order("XR KNEE RIGHT 2 VIEWS", "73560", CPT), ["orderLateralityMismatch|7771000"]),
    ("EXAM: XR KNEE L\n\nFINDINGS: No fracture.", order("XR KNEE RIGHT 2 VIEWS", "73560", CPT),
     ["orderLateralityMismatch|7771000"]),
    # Without a sided order the title names the exam.
    ("EXAM: XR KNEE LEFT 2 VIEWS\n\nFINDINGS: Small right knee joint effusion.", None,
     ["orderLateralityMismatch|24028007"]),
    ("EXAM: XR KNEE LEFT 2 VIEWS\n\nFINDINGS: Small left knee joint effusion.", None, []),
    ("EXAM: XR KNEE 2 VIEWS\n\nFINDINGS: Small right knee joint effusion.", None, []),
    ("EXAM: XR CHEST PA/L\n\nFINDINGS: Lungs are clear.", order("XR CHEST 2 VIEWS"), []),
    # Title and body agree with the order; a bilateral title.
    ("Exam: CT RT WRIST WO\nFindings: Nondisplaced fracture of the right scaphoid waist.",
     order("CT WRIST RIGHT WO CONTRAST"), []),
    ("EXAM: MG DIAGNOSTIC BILATERAL\n\nFINDINGS: Irregular mass in the left breast at 2 o'clock.",
     order("MG DIAGNOSTIC LEFT"), []),
    # Text after the title line, without a header of its own, is the body; a bilateral
    # order is sided, so a title does not stand in for it.
    ("Exam: XR KNEE RIGHT 2 VIEWS\nSmall right knee joint effusion.",
     order("XR KNEE RIGHT 2 VIEWS", "73560", CPT), []),
    ("EXAM: MG DIAGNOSTIC LEFT\n\nFINDINGS: Cyst in the right breast.",
     order("MG DIAGNOSTIC BILATERAL"), []),
    # The veins of a limb are part of it.
    ("EXAM: US RIGHT LOWER EXTREMITY VENOUS DOPPLER\n\nFINDINGS: Occlusive thrombus in the left "
     "common femoral vein.", order("US VENOUS DOPPLER RIGHT LOWER EXTREMITY"),
     ["orderLateralityMismatch|7771000"]),
    ("FINDINGS: No thrombus in the left popliteal vein. The right common femoral vein is patent "
     "for comparison.", order("US VENOUS DOPPLER LEFT LOWER EXTREMITY"), []),
])
def test_the_exam_title_is_compared_with_the_body(text: str, procedure: dict | None,
                                                  expected: list[str]) -> None:
    request = build_request(text, sex="female", procedures=[procedure] if procedure else None)
    assert laterality_keys(request) == expected


# --- a connector after a denial of what is no finding -------------------------------------------

@pytest.mark.parametrize(("text", "expected", "critical"), [
    # The absence of flow or cardiac activity is the sign: the finding stands.
    ("FINDINGS: No flow in the left testis consistent with torsion.",
     [("129256008", "present")], ["TESTICULAR TORSION"]),
    ("FINDINGS: Absent arterial flow to the right ovary consistent with ovarian torsion.",
     [("129256008", "present")], ["OVARIAN TORSION"]),
    ("FINDINGS: No fetal cardiac activity, consistent with fetal demise.",
     [("276507005", "present")], ["FETAL DEMISE"]),
    # Near misses: the denied thing is an abnormality, or no sign at all.
    ("FINDINGS: No abnormal flow in the left testis consistent with torsion.",
     [("129256008", "absent")], []),
    ("FINDINGS: No decreased flow in the right testis consistent with torsion.",
     [("129256008", "absent")], []),
    ("FINDINGS: No pericholecystic fluid consistent with cholecystitis.",
     [("76581006", "absent")], []),
    ("FINDINGS: No fluid collection consistent with abscess.", [("44132006", "absent")], []),
    ("FINDINGS: No air-fluid levels consistent with bowel obstruction.", [("81060008", "absent")], []),
])
def test_a_connector_after_a_denied_sign(text: str, expected: list, critical: list[str]) -> None:
    assert statuses(text) == expected
    assert critical_descriptions(text) == critical


# --- scores --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: Lung-RADS 2. No findings to suggest a Lung-RADS 4 category.", ["LUNG-RADS|2"]),
    ("IMPRESSION: The lesion does not meet criteria for PI-RADS 4; overall PI-RADS 3.", ["PI-RADS|3"]),
    ("IMPRESSION: This is not a LI-RADS 5 observation; LR-4.", ["LI-RADS|4"]),
    ("IMPRESSION: 1.6 cm observation in segment 6, LR-3 versus LR-4.", ["LI-RADS|3-4"]),
    ("IMPRESSION: BI-RADS 3 versus 4.", ["BIRADS|3-4"]),
    ("IMPRESSION: Right thyroid nodule, TI-RADS 3 or TI-RADS 4.", ["TI-RADS|3-4"]),
    # Near misses: two scores, not alternatives.
    ("IMPRESSION: LR-3 observation in segment 2. LR-4 observation in segment 8.",
     ["LI-RADS|3", "LI-RADS|4"]),
    ("IMPRESSION: BI-RADS 2 and BI-RADS 4.", ["BIRADS|2", "BIRADS|4"]),
])
def test_denied_and_alternative_scores(text: str, expected: list[str]) -> None:
    assert score_keys(text) == expected


# --- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: Multiple hepatic cysts ranging from 4 to 6 mm.", ["4m"]),
    ("FINDINGS: Pulmonary nodules ranging in size from 3 to 5 mm.", ["3m"]),
    # Near miss: growth from an earlier size.
    ("FINDINGS: The nodule has grown from 4 mm to 6 mm.", ["prev:4m", "6m"]),
])
def test_a_range_after_ranging_from_is_current(text: str, expected: list[str]) -> None:
    (observation,) = findings_of(text)
    assert finding_sizes(observation) == expected


# --- recommendations -----------------------------------------------------------------------------

def modalities(text: str) -> list[str]:
    return [r.recommended_procedure.to_json()["imagingProcedures"][0]["modality"]["coding"][0]["code"]
            for r in analyse(build_request(text), "followupRecommendation")]


@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: Possible small left adnexal cyst. If symptoms persist, pelvic ultrasound in "
     "6-8 weeks.", ["16310003"]),
    ("IMPRESSION: 7 mm right upper lobe nodule. Chest CT in 3 months.", ["77477000"]),
    ("IMPRESSION: Solitary solid 5 mm nodule in the right middle lobe. Per Fleischner Society "
     "2017 guidelines, no routine follow-up is needed if the patient is low risk; if high risk, CT "
     "at 12 months is recommended.", ["77477000"]),
    ("IMPRESSION: 5 mm solid nodule in the right upper lobe. Per Fleischner Society guidelines, no "
     "routine follow-up is needed if low risk; otherwise, CT at 12 months.", ["77477000"]),
    # Near misses: a time in the past, a citation that advises nothing, a refusal.
    ("IMPRESSION: Stable nodule compared to the CT from 6 months ago.", []),
    ("IMPRESSION: 1.5 cm left adrenal nodule measuring 5 HU. Per the ACR white paper, this is "
     "consistent with a benign adenoma.", []),
    ("IMPRESSION: 4 mm right lower lobe nodule. According to Fleischner guidelines, a nodule of "
     "this size in a low-risk patient requires no follow-up.", []),
    ("IMPRESSION: No pulmonary nodules.\n\nRECOMMENDATION:\nFleischner Society 2017 reference for "
     "incidental solid nodules: <6 mm no routine follow-up; 6-8 mm CT at 6-12 months.", []),
])
def test_advice_without_a_recommending_word_or_after_a_citation(text: str, expected: list[str]) -> None:
    assert modalities(text) == expected


# --- sex and age joined by a slash ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "sex", "expected"), [
    ("HISTORY: F/64, shortness of breath.", "male", [FEMALE]),
    ("HISTORY: M/58 with hematuria.", "female", ["ageMismatch", MALE]),
    ("HISTORY: 30/F with cough.", "male", ["ageMismatch", FEMALE]),
    # Near misses: a ratio, an age and sex that agree.
    ("FINDINGS: M/F ratio of uptake 2/1 in the striatum.", "female", []),
    ("HISTORY: 64/F, cough.", "female", []),
])
def test_sex_and_age_joined_by_a_slash(text: str, sex: str, expected: list[str]) -> None:
    request = build_request(text, sex=sex, birth_date="1959-10-01")
    got = ["ageMismatch" for _ in analyse(request, "ageMismatch")]
    got += [i.sex_indication.coding[0].code for i in analyse(request, "sexMismatch")]
    assert got == expected
