"""The sixth review (eval/corpus/review_probe6.jsonl, review_probe6_near.jsonl,
size_changes_order_views.jsonl): a change between two sizes ("increased from 4 to 6 mm")
against a range, and the lateral view of an order ("XR CHEST PA/L") against a side."""

from __future__ import annotations

import pytest

from request_builder import build_request, finding_sizes, finding_subject, findings_of, laterality_keys

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
