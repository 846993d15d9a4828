"""Build RI requests for the quality-check tests and run them through the engine."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from pathlib import Path
from typing import Any

from ri_engine.context import AnalysisContext
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


def analyse(data: RadiologyInsightsData, kind: str) -> list[Inference]:
    """The inferences of ``kind`` the engine produces for ``data``.

    Until the engine package exposes ``Engine`` the builder runs on a context built here.
    """
    try:
        from ri_engine import Engine  # type: ignore[attr-defined]
    except ImportError:
        return run_builder(data, kind)
    result = Engine().analyze(data)
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


_BUILDERS = {
    "ageMismatch": "age_mismatch", "sexMismatch": "sex_mismatch",
    "lateralityDiscrepancy": "laterality", "completeOrderDiscrepancy": "order_discrepancy",
    "limitedOrderDiscrepancy": "order_discrepancy",
}


def _date(value: str | None) -> dt.date | None:
    m = re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})", value or "")
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def context_for(data: RadiologyInsightsData) -> AnalysisContext:
    """The context for the request's single document, before any NLP layer is filled."""
    patient = data.patients[0]
    document = (patient.patient_documents or [])[0]
    encounter = (patient.encounters or [None])[0]
    reference = _date(encounter.period.start) if encounter and encounter.period else None
    metadata = document.administrative_metadata
    return AnalysisContext(
        text=document.content.value, patient=patient, document=document,
        configuration=data.configuration or ModelConfiguration(),
        document_date=_date(document.created_at),
        reference_date=reference or _date(document.created_at),
        ordered_procedures=list(metadata.ordered_procedures or []) if metadata else [],
    )


def run_builder(data: RadiologyInsightsData, kind: str) -> list[Inference]:
    """The inferences of ``kind`` its quality-check builder produces for ``data``."""
    module = importlib.import_module(f"ri_engine.inferences.{_BUILDERS[kind]}")
    return [i for i in module.infer(context_for(data)) if i.kind == kind]
