"""Build RI requests for the quality-check tests and run them through the engine."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ri_engine import Engine
from ri_engine.models import (
    CodeableConcept, Coding, DocumentAdministrativeMetadata, DocumentContent, Inference,
    ModelConfiguration, OrderedProcedure, Period, PatientDetails, PatientDocument,
    PatientEncounter, PatientRecord, RadiologyInsightsData,
)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ri_doc_samples.json"


def doc_sample(name: str) -> dict[str, Any]:
    for sample in json.loads(SAMPLES.read_text(encoding="utf-8")):
        if sample["name"] == name:
            return sample
    raise KeyError(name)


def build_request(text: str, *, sex: str | None = None, birth_date: str | None = None,
                  encounter_start: str | None = "2024-01-15T00:00:00",
                  created_at: str = "2024-01-15T00:00:00",
                  procedures: list[dict[str, str]] | None = None,
                  inference_types: list[str] | None = None,
                  include_evidence: bool = False) -> RadiologyInsightsData:
    ordered = [
        OrderedProcedure(
            code=CodeableConcept(coding=[Coding(system=p.get("system"), code=p.get("code"),
                                                display=p.get("display"))]),
            description=p.get("description", p.get("display")),
        )
        for p in procedures or []
    ]
    document = PatientDocument(
        id="doc1", type="note", clinical_type="radiologyReport", language="EN",
        created_at=created_at, specialty_type="radiology",
        administrative_metadata=DocumentAdministrativeMetadata(
            ordered_procedures=ordered or None, encounter_id="enc1"),
        content=DocumentContent(source_type="inline", value=text),
    )
    patient = PatientRecord(
        id="p1",
        details=PatientDetails(sex=sex, birth_date=birth_date),
        encounters=[PatientEncounter(
            id="enc1", class_="inpatient",
            period=Period(start=encounter_start) if encounter_start else None)],
        patient_documents=[document],
    )
    return RadiologyInsightsData(
        patients=[patient],
        configuration=ModelConfiguration(
            include_evidence=include_evidence, inference_types=inference_types,
            locale="en-US", verbose=False),
    )


def request_from_sample(sample: dict[str, Any]) -> RadiologyInsightsData:
    req = sample["request"]
    encounter = req.get("encounter") or {}
    return build_request(
        req["text"], sex=req.get("sex"), birth_date=req.get("birthDate"),
        encounter_start=encounter.get("start"), created_at=req["createdAt"],
        procedures=req.get("orderedProcedures"), inference_types=req.get("inferenceTypes"),
        include_evidence=bool(req.get("includeEvidence")),
    )


@functools.cache
def engine() -> Engine:
    """One engine for the whole test session (it loads the pipeline once)."""
    return Engine()


def analyse(data: RadiologyInsightsData, kind: str) -> list[Inference]:
    """The inferences of ``kind`` the engine produces for ``data``."""
    result = engine().analyze(data)
    return [i for r in result.patient_results for i in r.inferences if i.kind == kind]


def stripped(inference: Inference) -> dict[str, Any]:
    """Wire JSON without evidence extensions (documentation samples carry none)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "extension"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(inference.to_json())

