"""lateralityDiscrepancy: order side versus text, findings versus impression, missing side."""

from __future__ import annotations

import pytest

from ri_engine.models import token_spans
from request_builder import analyse, build_request

CPT = "http://www.ama-assn.org/go/cpt"
LEFT_BREAST = {"system": "http://loinc.org", "code": "26688-1", "display": "US BREAST - LEFT LIMITED"}


def order(display: str, code: str = "73721") -> dict[str, str]:
    return {"system": CPT, "code": code, "display": display}


def discrepancies(text: str, procedure: dict[str, str] | None) -> list[tuple[str, str | None]]:
    data = build_request(text, sex="female", procedures=[procedure] if procedure else None)
    return [(i.discrepancy_type,
             i.laterality_indication.coding[0].code if i.laterality_indication else None)
            for i in analyse(data, "lateralityDiscrepancy")]


@pytest.mark.parametrize(("text", "procedure", "side"), [
    ("FINDINGS: Small effusion in the right knee.", order("MRI KNEE LEFT WO"), "24028007"),
    ("FINDINGS: Tear of the left shoulder rotator cuff.", order("MRI SHOULDER RT"), "7771000"),
    ("FINDINGS: Effusion of the right knee.", order("MRI KNEE (L)"), "24028007"),
    ("FINDINGS: Effusion of the right knee.", {"system": CPT, "code": "73721-LT", "display": "MRI KNEE"},
     "24028007"),
    ("Technique: Imaging of the right breast.\n\nFindings: Cyst.", LEFT_BREAST, "24028007"),
])
def test_text_side_opposite_to_the_order_fires(text: str, procedure: dict[str, str], side: str) -> None:
    assert discrepancies(text, procedure) == [("orderLateralityMismatch", side)]


@pytest.mark.parametrize(("text", "procedure"), [
    ("Exam: US LT BREAST TARGETED\n\nFindings: 4 mm cyst in the left breast at 6:00.", LEFT_BREAST),
    ("EXAM: XR RIGHT WRIST\n\nFINDINGS: No fracture of the right distal radius.",
     order("XR WRIST RT", "73110")),
    ("FINDINGS: Right breast: no mass. Left breast: cyst.", order("MG SCREENING BILATERAL", "77067")),
    ("FINDINGS: Both knees show narrowing, right worse than left.", order("XR KNEES BILATERAL", "73565")),
    ("HISTORY: Prior right mastectomy.\n\nFINDINGS: The left breast is dense.", order("US BREAST LEFT", "76641")),
    ("COMPARISON: Right knee MRI 2019.\n\nFINDINGS: Left knee effusion.", order("MRI KNEE LEFT")),
    ("FINDINGS: No hemorrhage. Right maxillary sinus thickening.", order("CT HEAD WO", "70450")),
    ("FINDINGS: Left knee effusion.", order("MRI L SPINE WO", "72148")),
])
def test_near_misses_do_not_fire(text: str, procedure: dict[str, str]) -> None:
    assert discrepancies(text, procedure) == []


def test_lateralised_order_with_no_side_in_text_is_missing_without_evidence() -> None:
    data = build_request("FINDINGS: No fracture or dislocation.", procedures=[order("XR ANKLE LEFT", "73610")],
                         include_evidence=True)
    (inference,) = analyse(data, "lateralityDiscrepancy")
    assert inference.to_json() == {"kind": "lateralityDiscrepancy", "discrepancyType": "textLateralityMissing"}


def test_impression_side_contradicting_findings_fires_on_the_impression_side() -> None:
    text = ("FINDINGS:\nThere is a 6 mm nodule in the right lower lobe.\n\n"
            "IMPRESSION:\n6 mm left lower lobe nodule.")
    assert discrepancies(text, None) == [("textLateralityContradiction", "7771000")]


@pytest.mark.parametrize("text", [
    "FINDINGS:\n6 mm nodule in the right lower lobe.\n\nIMPRESSION:\n6 mm right lower lobe nodule.",
    "FINDINGS:\nNodules in the right and left lower lobes.\n\nIMPRESSION:\nLeft lower lobe nodule.",
    "FINDINGS:\nStone in the left kidney.\n\nIMPRESSION:\nNo right renal stone.",
])
def test_agreeing_or_negated_sides_are_no_contradiction(text: str) -> None:
    assert discrepancies(text, None) == []


def test_mismatch_evidence_covers_each_opposite_mention() -> None:
    text = "FINDINGS: Right knee effusion. The right knee menisci are intact."
    data = build_request(text, procedures=[order("MRI KNEE LEFT")], include_evidence=True)
    (inference,) = analyse(data, "lateralityDiscrepancy")
    first, second = text.index("Right"), text.index("right")
    assert token_spans(inference.laterality_indication.extension) == [(first, 5), (second, 5)]
    assert token_spans(inference.extension) == [(first, 5), (first + 6, 4), (second, 5), (second + 6, 4)]


def test_one_search_finds_the_part_each_part_search_would() -> None:
    from ri_engine.inferences.laterality import _vocab

    vocab = _vocab()
    text = ("Left lower lobe and right upper extremity; right kidney, left breast and hip, "
            "left ovary. Right knee effusion, left lung base, right first rib and shoulder.")
    for offset in range(len(text)):
        for limit in (offset + 12, offset + 40):
            best = None
            for group, pattern in vocab.parts:
                m = pattern.search(text, offset, limit)
                if m and (best is None or m.start() < best[1][0]):
                    best = (group, m.span())
            m = vocab.any_part.search(text, offset, limit)
            found = (vocab.parts[int(m.lastgroup[1:])][0], m.span()) if m and m.lastgroup else None
            assert best == found, (offset, limit)
