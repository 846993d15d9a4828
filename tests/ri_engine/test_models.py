"""The RI models read and write the documented JSON unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ri_engine.models import InferenceResult, ModelError, RadiologyInsightsData

SHARED = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ri_doc_samples.json"
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "ri_quality_measure.md"


def _samples() -> list[dict]:
    if not SHARED.exists():
        pytest.skip("shared reference samples not present")
    return json.loads(SHARED.read_text())


def _without_annotations(value):
    """Drop the sample file's own notes (objects whose keys start with "_")."""
    if isinstance(value, list):
        return [_without_annotations(v) for v in value
                if not (isinstance(v, dict) and v and all(k.startswith("_") for k in v))]
    if isinstance(value, dict):
        return {k: _without_annotations(v) for k, v in value.items() if not k.startswith("_")}
    return value


def test_every_documented_inference_round_trips() -> None:
    for sample in _samples():
        expected = _without_annotations(sample["expected"])
        result = InferenceResult.from_json(
            {"patientResults": [{"patientId": "p", "inferences": expected}], "modelVersion": "x"})
        dumped = result.to_json()["patientResults"][0]["inferences"]
        assert expected == dumped, sample["name"]


def test_request_accepts_both_option_spellings() -> None:
    base = {"patients": [{"id": "p", "patientDocuments": [
        {"id": "d", "content": {"sourceType": "inline", "value": "x"}}]}]}
    for key in ("QualityMeasureOptions", "qualityMeasureOptions"):
        data = dict(base, configuration={"inferenceOptions": {key: {"measureTypes": ["mips364"]}}})
        parsed = RadiologyInsightsData.from_request_json({"jobData": data})
        assert ["mips364"] == parsed.configuration.inference_options.quality_measure_options.measure_types


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ModelError) as info:
        InferenceResult.from_json(
            {"patientResults": [{"patientId": "p", "inferences": [{"kind": "nonsense"}]}],
             "modelVersion": "x"})
    assert "patientResults[0].inferences[0]" in str(info.value)


def test_missing_required_field_names_the_path() -> None:
    with pytest.raises(ModelError) as info:
        RadiologyInsightsData.from_json({"patients": [{"patientDocuments": []}]})
    assert "patients[0]" in str(info.value) and "'id'" in str(info.value)


def test_evidence_token_built_positionally_matches_the_keyword_form() -> None:
    # Hot-path values are built positionally: the field order is part of their contract.
    from ri_engine.models import Extension, Reference, document_reference, document_token

    reference = document_reference("doc")
    expected = Extension(url="http://hl7.org/fhir/StructureDefinition/derivation-reference", extension=[
        Extension(url="reference", value_reference=Reference(reference="doc", type="documentId")),
        Extension(url="offset", value_integer=12),
        Extension(url="length", value_integer=4)])
    assert expected.to_json() == document_token(reference, 12, 4).to_json()


def test_coded_values_built_positionally_match_the_keyword_form() -> None:
    from ri_engine.models import CodeableConcept, Coding, ObservationComponent, concept

    keyword = ObservationComponent(code=CodeableConcept(coding=[Coding(system="s", code="c")]),
                                   value_codeable_concept=CodeableConcept(
                                       coding=[Coding(system="s", code="v", display="V")]))
    positional = ObservationComponent(concept("s", "c"), None, concept("s", "v", "V"))
    assert keyword == positional
