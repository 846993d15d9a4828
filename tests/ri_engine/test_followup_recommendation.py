"""followupRecommendation: which procedures a sentence recommends, with the timing, condition
and option of each."""

from __future__ import annotations

import pytest

from request_builder import analyse, build_request


def recommendations(text: str) -> list[tuple]:
    produced = analyse(build_request(text), "followupRecommendation")
    out = []
    for r in produced:
        modality = r.recommended_procedure.imaging_procedures[0].modality.coding[0].code
        period = (r.effective_period.start, r.effective_period.end) if r.effective_period else None
        out.append((modality, r.effective_at or period, r.is_conditional, r.is_option))
    return out


CT, MRI, US, BIOPSY = "77477000", "113091000", "16310003", "277590007"


@pytest.mark.parametrize(("text", "expected"), [
    # Each procedure takes the timing and condition of its own clause.
    ("IMPRESSION: Recommend FNA if it measures 1.5 cm or greater; otherwise follow-up "
     "ultrasound in one year.", [(BIOPSY, None, True, False), (US, "2025-01-15", True, False)]),
    ("IMPRESSION: Recommend follow-up CT in 3 months; if stable, MRI in 12 months.",
     [(CT, "2024-04-15", False, False), (MRI, "2025-01-15", True, False)]),
    ("IMPRESSION: Recommend ultrasound in 6 weeks, and then MRI if the cyst persists.",
     [(US, "2024-02-26", False, False), (MRI, None, True, False)]),
    # Alternatives in one clause share it.
    ("IMPRESSION: Recommend CT or MRI in 6 months.",
     [(CT, "2024-07-15", False, True), (MRI, "2024-07-15", False, True)]),
    ("IMPRESSION: If symptoms persist, MRI or CT in 4-6 weeks is recommended.",
     [(MRI, ("2024-02-12", "2024-02-26"), True, True), (CT, ("2024-02-12", "2024-02-26"), True, True)]),
    # The screening statements of Lung-RADS 1-2 and BI-RADS 1-2.
    ("IMPRESSION: Lung-RADS 2. Continue annual screening with LDCT in 12 months.",
     [(CT, "2025-01-15", False, False)]),
    ("IMPRESSION: BI-RADS 1. Return to annual screening mammography.",
     [("71651007", "2025-01-15", False, False)]),
    ("IMPRESSION: The common bile duct has returned to normal caliber since the CT.", []),
    # Refusals, and studies already done, recommend nothing.
    ("IMPRESSION: We do not recommend MRI at this time.", []),
    ("IMPRESSION: Follow-up CT is not advised.", []),
    ("IMPRESSION: Recommend correlation with prior outside CT, if available.", []),
    ("IMPRESSION: Comparison with the previous MRI would be helpful.", []),
    ("IMPRESSION: Recommend comparison with the prior outside CT and follow-up CT in 3 months.",
     [(CT, "2024-04-15", False, False)]),
])
def test_recommended_procedures(text: str, expected: list[tuple]) -> None:
    assert recommendations(text) == expected

