"""Engine request validation and options (ri_contract §1.1, §2.2)."""

from __future__ import annotations

from typing import Any

import pytest

from engine_samples import engine
from ri_engine import RequestError
from ri_engine.models import RadiologyInsightsData


def data(text: str = "FINDINGS: Small right pneumothorax.", **config: Any) -> dict[str, Any]:
    return {
        "patients": [{"id": "p1", "encounters": [{"id": "e1"}], "patientDocuments": [{
            "id": "d1", "type": "note", "language": "EN", "createdAt": "2024-01-15T00:00:00",
            "content": {"sourceType": "inline", "value": text}}]}],
        "configuration": {"locale": "en-US", **config},
    }


def analyse(raw: dict[str, Any]) -> list[dict[str, Any]]:
    result = engine().analyze(RadiologyInsightsData.from_json(raw))
    return [i.to_json() for i in result.patient_results[0].inferences]


def reject(raw: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as info:
        engine().analyze(RadiologyInsightsData.from_json(raw))
    return info.value


def test_two_patients_rejected() -> None:
    raw = data()
    raw["patients"].append(dict(raw["patients"][0], id="p2"))
    error = reject(raw)
    assert (error.code, error.target) == ("InvalidPatientCount", "jobData.patients")


def test_two_documents_and_two_encounters_rejected() -> None:
    raw = data()
    doc = raw["patients"][0]["patientDocuments"][0]
    raw["patients"][0]["patientDocuments"] = [doc, dict(doc, id="d2")]
    assert reject(raw).code == "InvalidDocumentCount"
    raw = data()
    raw["patients"][0]["encounters"].append({"id": "e2"})
    assert reject(raw).code == "InvalidEncounterCount"


def test_too_long_empty_and_undated_documents_rejected() -> None:
    error = reject(data("x" * 50_001))
    assert (error.code, error.target) == (
        "DocumentTooLong", "jobData.patients[0].patientDocuments[0].content.value")
    assert "50001" in error.message
    assert reject(data("   \n")).code == "EmptyDocument"
    raw = data()
    del raw["patients"][0]["patientDocuments"][0]["createdAt"]
    assert reject(raw).code == "MissingCreatedAt"


def test_exactly_50000_characters_accepted() -> None:
    text = ("No pneumothorax. " * 3000)[:50_000]
    assert len(analyse(data(text, inferenceTypes=["criticalResult"]))) == 0


def test_locale_language_and_type_checks() -> None:
    error = reject(data(locale="fr-FR"))
    assert (error.code, error.target) == ("UnsupportedLocale", "jobData.configuration.locale")
    raw = data()
    raw["patients"][0]["patientDocuments"][0]["language"] = "fr"
    assert reject(raw).code == "UnsupportedLanguage"
    raw = data()
    raw["patients"][0]["patientDocuments"][0]["type"] = "dicom"
    assert reject(raw).code == "UnsupportedDocumentType"


def test_ordered_procedure_needs_code_and_description() -> None:
    raw = data()
    raw["patients"][0]["patientDocuments"][0]["administrativeMetadata"] = {
        "orderedProcedures": [{"code": {"coding": [{"code": "71045"}]}, "description": "XR CHEST"}]}
    error = reject(raw)
    assert error.code == "InvalidOrderedProcedure"
    assert error.target.endswith("orderedProcedures[0].code")


def test_inference_types_filter_unknown_and_ignored() -> None:
    kinds = [i["kind"] for i in analyse(data(inferenceTypes=["criticalResult", "criticalRecommendation"]))]
    assert kinds == ["criticalResult"]
    error = reject(data(inferenceTypes=["finding", "nonsense"]))
    assert (error.code, error.target) == ("UnknownInferenceType", "jobData.configuration.inferenceTypes[1]")


def test_all_kinds_when_omitted_and_model_version() -> None:
    result = engine().analyze(RadiologyInsightsData.from_json(data()))
    kinds = {i.kind for i in result.patient_results[0].inferences}
    assert {"finding", "criticalResult"} <= kinds
    assert result.model_version == engine().model_version


def test_focused_sentence_and_section_extensions() -> None:
    text = "FINDINGS: Small right pneumothorax."
    raw = data(text, inferenceTypes=["finding"], inferenceOptions={
        "findingOptions": {"provideFocusedSentenceEvidence": True}})
    (finding,) = analyse(raw)
    urls = [e["url"] for e in finding["extension"]]
    assert urls == ["section", "ci_sentence"]
    assert finding["extension"][1]["valueString"] == f"10-{len(text)}"
