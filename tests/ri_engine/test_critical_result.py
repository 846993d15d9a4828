"""criticalResult: which description a finding gets, and what keeps it from being critical."""

from __future__ import annotations

import pytest

from request_builder import analyse, build_request


def descriptions(text: str, procedures: list[dict[str, str]] | None = None) -> list[str]:
    produced = analyse(build_request(text, procedures=procedures), "criticalResult")
    return [i.result.description for i in produced]


FREE_AIR = "FREE AIR IN ABDOMEN (WITHOUT RECENT SURGERY)"


@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: Expected postoperative pneumoperitoneum following laparoscopic cholecystectomy.", []),
    ("IMPRESSION: Small amount of post-op free air, as expected.", []),
    ("FINDINGS: Small volume free air in the upper abdomen. No recent surgery.", [FREE_AIR]),
    ("IMPRESSION: Pneumoperitoneum, concerning for perforated viscus.", [FREE_AIR]),
    ("IMPRESSION: Free air, more than expected for postoperative day 10.", [FREE_AIR]),
    ("IMPRESSION: Increasing postoperative pneumoperitoneum.", [FREE_AIR]),
])
def test_free_air_after_surgery_is_expected(text: str, expected: list[str]) -> None:
    assert descriptions(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    # Stanford and DeBakey types name the aorta.
    ("IMPRESSION: Stanford type A dissection.", "AORTIC DISSECTION"),
    ("IMPRESSION: Type B dissection beginning distal to the left subclavian artery.", "AORTIC DISSECTION"),
    ("IMPRESSION: DeBakey type III dissection.", "AORTIC DISSECTION"),
    # A named brain region or vascular territory is brain anatomy without a head order.
    ("FINDINGS: Large right MCA territory infarct.", "ACUTE STROKE"),
    ("FINDINGS: Acute infarct in the left thalamus.", "ACUTE STROKE"),
    ("FINDINGS: Acute pontine infarct.", "ACUTE STROKE"),
])
def test_description_from_a_named_type_or_region(text: str, expected: str) -> None:
    assert descriptions(text) == [expected]
