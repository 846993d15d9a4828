"""Every RI documentation example for the five quality-check kinds reproduces exactly."""

from __future__ import annotations

import pytest

from ri_engine.models import token_spans

from request_builder import analyse, doc_sample, request_from_sample, stripped

QUALITY_SAMPLES = {
    "docs_age_mismatch": "ageMismatch",
    "docs_sex_mismatch": "sexMismatch",
    "docs_laterality_discrepancy": "lateralityDiscrepancy",
    "docs_complete_order_discrepancy": "completeOrderDiscrepancy",
    "docs_limited_order_discrepancy": "limitedOrderDiscrepancy",
}


@pytest.mark.parametrize("name", sorted(QUALITY_SAMPLES))
def test_documentation_example(name: str) -> None:
    sample = doc_sample(name)
    kind = QUALITY_SAMPLES[name]
    produced = analyse(request_from_sample(sample), kind)
    assert [stripped(i) for i in produced] == sample["expected"]


def test_age_evidence_is_one_token_per_piece_of_the_hyphenated_age() -> None:
    sample = doc_sample("docs_complete_order_discrepancy")
    data = request_from_sample(sample)
    assert data.configuration is not None
    data.configuration.include_evidence = True
    data.configuration.inference_types = ["ageMismatch"]
    (inference,) = analyse(data, "ageMismatch")
    text = sample["request"]["text"]
    start = text.index("20-year-old")
    assert token_spans(inference.extension) == [
        (start, 2), (start + 2, 1), (start + 3, 4), (start + 7, 1), (start + 8, 3)]


def test_sex_evidence_sits_on_the_indication_and_the_inference() -> None:
    sample = doc_sample("docs_sex_mismatch")
    data = request_from_sample(sample)
    assert data.configuration is not None
    data.configuration.include_evidence = True
    (inference,) = analyse(data, "sexMismatch")
    offset = sample["request"]["text"].index("man.")
    assert token_spans(inference.extension) == [(offset, 3)]
    assert token_spans(inference.sex_indication.extension) == [(offset, 3)]
