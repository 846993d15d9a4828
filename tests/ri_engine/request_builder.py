"""Build RI requests for the engine tests, run them through one shared engine, compare them.

Used by the quality-check, score, guidance and quality-measure tests.  The documentation
examples and the product seed are read from ``../shared/`` beside the repository.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from ri_engine import Engine
from ri_engine.models import (
    CodeableConcept, Coding, DocumentAdministrativeMetadata, DocumentContent, Inference,
    InferenceOptions, ModelConfiguration, OrderedProcedure, PatientDetails, PatientDocument,
    PatientEncounter, PatientRecord, Period, RadiologyInsightsData,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
SAMPLES = SHARED / "reference" / "ri_doc_samples.json"
SEED = SHARED / "seeds" / "ri_quality_measure.md"


def _shared_text(path: Path) -> str:
    """A file of ``../shared/``; the test skips in a clone without it (as the README says)."""
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path.read_text(encoding="utf-8")


def doc_sample(name: str) -> dict[str, Any]:
    for sample in json.loads(_shared_text(SAMPLES)):
        if sample["name"] == name:
            return sample
    raise KeyError(name)


def build_request(text: str, *, sex: str | None = None, birth_date: str | None = None,
                  encounter_start: str | None = "2024-01-15T00:00:00",
                  created_at: str = "2024-01-15T00:00:00",
                  procedures: list[dict[str, str]] | None = None,
                  inference_types: list[str] | None = None,
                  inference_options: dict[str, Any] | None = None,
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
    options = InferenceOptions.from_json(inference_options) if inference_options else None
    return RadiologyInsightsData(
        patients=[patient],
        configuration=ModelConfiguration(
            include_evidence=include_evidence, inference_types=inference_types,
            inference_options=options, locale="en-US", verbose=False),
    )


def request_from_sample(sample: dict[str, Any]) -> RadiologyInsightsData:
    req = sample["request"]
    encounter = req.get("encounter") or {}
    return build_request(
        req["text"], sex=req.get("sex"), birth_date=req.get("birthDate"),
        encounter_start=encounter.get("start"), created_at=req["createdAt"],
        procedures=req.get("orderedProcedures"), inference_types=req.get("inferenceTypes"),
        inference_options=req.get("inferenceOptions"),
        include_evidence=bool(req.get("includeEvidence")),
    )


def seed_request() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request and the response JSON of the product seed (in that order)."""
    text = _shared_text(SEED)
    decoder = json.JSONDecoder()
    objects, pos = [], text.index("Examples Request/Response JSON:")
    while len(objects) < 2:
        pos = text.index("{", pos)
        obj, end = decoder.raw_decode(text, pos)
        objects.append(obj)
        pos = end
    return objects[0], objects[1]


@functools.cache
def engine() -> Engine:
    """One engine for the whole test session (it loads the pipeline once)."""
    return Engine()


def analyse(data: RadiologyInsightsData, kind: str) -> list[Inference]:
    """The inferences of ``kind`` the engine produces for ``data``."""
    result = engine().analyze(data)
    return [i for r in result.patient_results for i in r.inferences if i.kind == kind]


def stripped(value: Any) -> Any:
    """Wire JSON without extensions (evidence tokens, sections), as most documentation
    samples are written."""
    if hasattr(value, "to_json"):
        value = value.to_json()
    if isinstance(value, dict):
        return {k: stripped(v) for k, v in value.items() if k != "extension"}
    if isinstance(value, list):
        return [stripped(v) for v in value]
    return value


# --- reading finding observations -------------------------------------------------------------

SIZE, PREVIOUS = "246115007", "9130008"


def finding_subject(observation: dict) -> str:
    """The first SUBJECT OF INFORMATION code of a finding, "-" without one."""
    return next((c["valueCodeableConcept"]["coding"][0]["code"] for c in observation["component"]
                 if c["code"]["coding"][0]["code"] == "131195008"), "-")


def finding_sizes(observation: dict) -> list[str]:
    """The SIZE components in order, as "8m" / "1.2c", "prev:" before a previous size."""
    out = []
    for c in observation["component"]:
        if c["code"]["coding"][0]["code"] != SIZE:
            continue
        prior = c["interpretation"][0]["coding"][0]["code"] == PREVIOUS
        q = c.get("valueQuantity") or c["valueRange"]["low"]
        out.append(f"{'prev:' if prior else ''}{q['value']:g}{q['unit'][:1].lower()}")
    return out


NONE = "260413007"


def findings_of(text: str) -> list[dict]:
    """The finding observations the engine produces for ``text`` alone."""
    return [i.to_json()["finding"] for i in analyse(build_request(text), "finding")]


def is_absent(observation: dict) -> bool:
    """The finding is denied (interpretation NONE)."""
    return any(coding["code"] == NONE for i in observation.get("interpretation", [])
               for coding in i["coding"])


def critical_descriptions(text: str) -> list[str]:
    """The criticalResult descriptions the engine produces for ``text`` alone."""
    return [i.to_json()["result"]["description"] for i in analyse(build_request(text), "criticalResult")]


def laterality_keys(request: RadiologyInsightsData) -> list[str]:
    """Each lateralityDiscrepancy as "<discrepancyType>|<laterality code or ->"."""
    got = []
    for i in analyse(request, "lateralityDiscrepancy"):
        side = i.laterality_indication.coding[0].code if i.laterality_indication else "-"
        got.append(f"{i.discrepancy_type}|{side}")
    return got


def score_keys(text: str) -> list[str]:
    """The scoringAndAssessment inferences of ``text`` as "<category>|<value or min-max>"."""
    out = []
    for i in analyse(build_request(text), "scoringAndAssessment"):
        j = i.to_json()
        value = j.get("singleValue") or "{minimum}-{maximum}".format(**j["rangeValue"])
        out.append(f"{j['category']}|{value}")
    return out
