"""The sixth review (eval/corpus/review_probe6.jsonl, review_probe6_near.jsonl,
size_changes_order_views.jsonl): a change between two sizes ("increased from 4 to 6 mm")
against a range, the lateral view of an order ("XR CHEST PA/L") against a side, a hedge
stated as an opinion ("is considered unlikely"), a part that was not imaged, and a refusal
or earlier advice that covers its own clause only."""

from __future__ import annotations

import pytest

from request_builder import (
    analyse, build_request, critical_descriptions, finding_sizes, finding_subject, findings_of,
    laterality_keys,
)

LEFT, RIGHT = "7771000", "24028007"


def sized(text: str) -> list[tuple[str, list[str], bool]]:
    """(SUBJECT OF INFORMATION, sizes, whether a size is a range) per finding."""
    return [(finding_subject(o), finding_sizes(o),
             any("valueRange" in c for c in o["component"])) for o in findings_of(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: The right upper lobe nodule has increased from 4 to 6 mm.",
     [("27925004", ["prev:4m", "6m"], False)]),
    ("FINDINGS: The hepatic cyst has decreased from 9 to 7 mm.",
     [("367643001", ["prev:9m", "7m"], False)]),
    ("FINDINGS: The pancreatic mass has increased in size from 2.1 to 2.8 cm.",
     [("4147007", ["prev:2.1c", "2.8c"], False)]),
    ("FINDINGS: The renal cyst has shrunk from 12 to 9 mm.",
     [("367643001", ["prev:12m", "9m"], False)]),
    # Already two sizes, each with its unit.
    ("FINDINGS: The left lower lobe nodule has grown from 4 mm to 6 mm.",
     [("27925004", ["prev:4m", "6m"], False)]),
    ("FINDINGS: Right middle lobe nodule, now 6 mm, previously 4 mm.",
     [("27925004", ["6m", "prev:4m"], False)]),
    # Near misses: a range of sizes now.
    ("FINDINGS: Multiple 4-6 mm nodules in both lungs.", [("27925004", ["4m"], True)]),
    ("FINDINGS: Several pulmonary nodules measuring 4 to 6 mm.", [("27925004", ["4m"], True)]),
    ("FINDINGS: Pulmonary nodules measuring from 4 to 6 mm.", [("27925004", ["4m"], True)]),
    ("FINDINGS: Innumerable pulmonary nodules, increased in number, measuring 4 to 6 mm.",
     [("27925004", ["4m"], True)]),
    ("FINDINGS: The cyst has increased. Other cysts range from 4 to 6 mm.",
     [("367643001", [], False), ("367643001", ["4m"], True)]),
    # A denied change is none.
    ("FINDINGS: No significant change in the pulmonary nodules, measuring from 4 to 6 mm.",
     [("27925004", ["4m"], True)]),
    ("FINDINGS: The right upper lobe nodule has grown. Other nodules measure from 3 to 5 mm.",
     [("27925004", [], False), ("27925004", ["3m"], True)]),
    # The change word nearest the sizes decides.
    ("FINDINGS: The nodule did not change for two years, then increased from 4 to 6 mm.",
     [("27925004", ["prev:4m", "6m"], False)]),
])
def test_a_change_between_two_sizes_is_the_earlier_size_and_the_size_now(
        text: str, expected: list) -> None:
    assert sized(text) == expected


def order(display: str) -> list[dict[str, str]]:
    return [{"system": "http://loinc.org", "code": "x", "display": display}]


@pytest.mark.parametrize(("display", "text", "expected"), [
    ("XR CHEST PA/L", "FINDINGS: Lungs are clear. No pneumothorax.", []),
    ("XR CHEST AP/L", "FINDINGS: Lungs are clear. No pneumothorax.", []),
    ("CHEST 2V PA/LAT", "FINDINGS: Small right pleural effusion.", []),
    ("XR CHEST PA & L", "FINDINGS: Heart size is normal.", []),
    # A side in the order still counts, lone letters included.
    ("XR KNEE LT 3V", "FINDINGS: Moderate right knee joint effusion.",
     [f"orderLateralityMismatch|{RIGHT}"]),
    ("XR KNEE LT 3V", "FINDINGS: No fracture or effusion.", ["textLateralityMissing|-"]),
    ("US BREAST LEFT", "FINDINGS: Simple cyst in the right breast at 10 o'clock.",
     [f"orderLateralityMismatch|{RIGHT}"]),
    ("XR WRIST L PA/LAT", "FINDINGS: Nondisplaced fracture of the right distal radius.",
     [f"orderLateralityMismatch|{RIGHT}"]),
    ("XR FOOT L 3V", "FINDINGS: Fracture of the right fifth metatarsal base.",
     [f"orderLateralityMismatch|{RIGHT}"]),
    ("XR KNEE R", "FINDINGS: Small left knee joint effusion.", [f"orderLateralityMismatch|{LEFT}"]),
    # A letter that is part of a name, not after a part: no side.
    ("XR L SPINE 2 VIEWS", "FINDINGS: Mild degenerative disc disease.", []),
])
def test_the_lateral_view_of_an_order_is_no_side(display: str, text: str, expected: list) -> None:
    assert laterality_keys(build_request(text, procedures=order(display))) == expected


def test_an_exam_title_with_a_lateral_view_names_no_side() -> None:
    request = build_request("EXAM: XR CHEST PA/L\n\nFINDINGS: Right upper lobe opacity.")
    assert laterality_keys(request) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: Small pericardial effusion. Pneumonia is considered unlikely.", []),
    ("IMPRESSION: Pulmonary embolism is deemed unlikely on this non-contrast study.", []),
    ("IMPRESSION: Appendicitis is felt to be doubtful.", []),
    # Near misses: the opinion is of another finding, or it favours the finding.
    ("IMPRESSION: Right lower lobe pneumonia. Malignancy is considered unlikely.", ["PNEUMONIA"]),
    ("IMPRESSION: Right lower lobe consolidation; pneumonia is thought likely.", ["PNEUMONIA"]),
])
def test_a_hedge_stated_as_an_opinion_qualifies_the_finding_before_it(
        text: str, expected: list[str]) -> None:
    assert critical_descriptions(text) == expected


def cpt(display: str) -> list[dict[str, str]]:
    return [{"system": "http://www.ama-assn.org/go/cpt", "code": "x", "display": display}]


@pytest.mark.parametrize(("display", "text", "expected"), [
    ("XR KNEE RIGHT 3 VIEWS", "FINDINGS: Right knee: small joint effusion. The left knee was not imaged.",
     []),
    ("XR HIP LEFT 2 VIEWS", "FINDINGS: No fracture of the left hip. The right hip is not included.", []),
    # Near misses: "not ..." of something else, or in another sentence.
    ("US BREAST RIGHT LIMITED",
     "FINDINGS: Simple cyst in the left breast at 2 o'clock, not evaluated with elastography.",
     [f"orderLateralityMismatch|{LEFT}"]),
    ("XR KNEE RIGHT 3 VIEWS",
     "FINDINGS: Small left knee joint effusion. The patella is not included on the lateral view.",
     [f"orderLateralityMismatch|{LEFT}"]),
    ("MG DIAG MAMMO L", "FINDINGS: Irregular mass in the right breast at 10 o'clock.",
     [f"orderLateralityMismatch|{RIGHT}"]),
])
def test_a_part_that_was_not_imaged_is_no_side_of_the_exam(
        display: str, text: str, expected: list[str]) -> None:
    assert laterality_keys(build_request(text, procedures=cpt(display))) == expected


def recommended(text: str) -> list[str]:
    out = []
    for i in analyse(build_request(text), "followupRecommendation"):
        procedure = i.to_json()["recommendedProcedure"]
        out.append(procedure["imagingProcedures"][0]["modality"]["coding"][0]["code"])
    return out


@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: Incidental 6 mm solid nodule. If the patient is at high risk, recommend CT chest "
     "in 12 months; otherwise no follow-up is needed.", ["77477000"]),
    ("IMPRESSION: 4 mm solid nodule. CT at 12 months if high risk; otherwise no follow-up is needed.",
     ["77477000"]),
    ("IMPRESSION: Recommend MRI of the pelvis, but no further imaging is needed if the MRI is normal.",
     ["113091000"]),
    ("IMPRESSION: No CT follow-up is needed, but pelvic ultrasound in 6 weeks is recommended.",
     ["16310003"]),
    # Near misses: both clauses refuse, the advice was an earlier report's.
    ("IMPRESSION: Follow-up CT is not needed; no further imaging is required.", []),
    ("IMPRESSION: No further imaging is needed; however, clinical follow-up is advised.", []),
    ("IMPRESSION: Ultrasound in 6 months was previously recommended; no further imaging is needed now.",
     []),
    ("IMPRESSION: MRI was recommended on the prior report.", []),
    # Advice restated ("as was recommended") is advice now; "as" before a refusal is not.
    ("IMPRESSION: Follow-up CT in 3 months is recommended, as was recommended on the prior study.",
     ["77477000"]),
    ("IMPRESSION: The cyst is benign on this CT, as no further imaging is recommended.", []),
])
def test_a_refusal_covers_its_own_clause(text: str, expected: list[str]) -> None:
    assert recommended(text) == expected
