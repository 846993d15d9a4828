"""RI requests built from the documentation samples, and summaries of inferences for comparison."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ri_engine import Engine
from ri_engine.models import RadiologyInsightsData

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ri_doc_samples.json"
SNOMED = "http://snomed.info/sct"
SOI, ANATOMY, LATERALITY, CHANGE, SEVERITY, CHRONICITY, FEATURE, MULTIPLE, DATE, SIZE = (
    "131195008", "722871000000108", "45651917", "288533004", "272141005", "246452003",
    "362981000", "46150521", "46083823", "246115007")


@lru_cache(maxsize=1)
def engine() -> Engine:
    return Engine()


def sample(name: str) -> dict[str, Any]:
    for item in json.loads(SAMPLES.read_text(encoding="utf-8")):
        if item["name"] == name:
            return item
    raise KeyError(name)


def request(item: dict[str, Any], **overrides: Any) -> RadiologyInsightsData:
    r = dict(item["request"], **overrides)
    encounter = r.get("encounter") or {}
    configuration = {"inferenceTypes": r["inferenceTypes"], "includeEvidence": r["includeEvidence"],
                     "locale": r["locale"]}
    if r.get("inferenceOptions"):
        configuration["inferenceOptions"] = r["inferenceOptions"]
    return RadiologyInsightsData.from_json({
        "patients": [{
            "id": "patient1",
            "details": {"sex": r["sex"], "birthDate": r["birthDate"]},
            "encounters": [{"id": "encounter1", "period": {"start": encounter.get("start")},
                            "class": encounter.get("class")}],
            "patientDocuments": [{
                "id": "docid1", "type": "note", "clinicalType": "radiologyReport",
                "language": "EN", "createdAt": r["createdAt"],
                "administrativeMetadata": {"orderedProcedures": [
                    {"code": {"coding": [{"system": o["system"], "code": o["code"],
                                          "display": o["display"]}]},
                     "description": o["description"]} for o in r["orderedProcedures"]]},
                "content": {"sourceType": "inline", "value": r["text"]},
            }],
        }],
        "configuration": configuration,
    })


def analyse(name: str, **overrides: Any) -> list[dict[str, Any]]:
    result = engine().analyze(request(sample(name), **overrides))
    return [i.to_json() for i in result.patient_results[0].inferences]


def finding_summary(observation: dict[str, Any], section: str | None = None) -> dict[str, Any]:
    """The key codes and values of a finding Observation, order-free where RI's order varies."""
    by_code: dict[str, list[Any]] = {}
    for comp in observation.get("component", []):
        code = comp["code"]["coding"][0]["code"]
        if "valueCodeableConcept" in comp:
            coding = comp["valueCodeableConcept"]["coding"][0]
            if code == ANATOMY and coding["system"] != SNOMED:
                continue  # RI's RadLex synonyms vary between model versions
            value: Any = coding["code"]
        elif "valueQuantity" in comp:
            q = comp["valueQuantity"]
            value = (float(q["value"]), q["unit"], q.get("comparator"),
                     comp["interpretation"][0]["coding"][0]["display"])
        elif "valueRange" in comp:
            value = (comp["valueRange"]["low"]["value"], comp["valueRange"]["high"]["value"])
        else:
            value = comp.get("valueBoolean", comp.get("valueString", comp.get("valueDateTime")))
        by_code.setdefault(code, []).append(value)
    return {
        "interpretation": sorted(i["coding"][0]["code"] for i in observation.get("interpretation", [])),
        "components": {k: sorted(v, key=repr) for k, v in by_code.items()},
        "section": section,
    }


def section_of(inference: dict[str, Any]) -> str | None:
    for ext in inference.get("extension") or []:
        if ext.get("url") == "section":
            return next(e["valueString"] for e in ext["extension"] if e["url"] == "code")
    return None


def without_reference_type(value: Any) -> Any:
    """RI's samples omit ``type: documentId`` in evidence references; recordings include it."""
    if isinstance(value, dict):
        return {k: without_reference_type(v) for k, v in value.items()
                if not (k == "type" and value.get(k) == "documentId")}
    if isinstance(value, list):
        return [without_reference_type(v) for v in value]
    return value


def canonical(value: Any) -> str:
    """Order-insensitive JSON text for multiset comparison of inferences."""
    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            items = [norm(x) for x in v]
            return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
        return v
    return json.dumps(norm(without_reference_type(value)), sort_keys=True)
