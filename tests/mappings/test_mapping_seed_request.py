"""An ORU^R01 carrying the RI quality-measure example maps to that example's request.

tests/mappings/data/ri_quality_measure_oru.hl7 holds the example's patient, encounter,
order, author and report text as HL7 fields (one OBX TX per report line). The comparison
covers patient, encounter, document metadata, procedure and text; whitespace is
normalised, and dates are compared as dates because the example writes "2014-2-20".
``details.clinicalInfo`` (an Observation resource) has no ORU^R01 source and is left out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mappings.decoding import decode_message
from mappings.inbound import map_oru

DATA = Path(__file__).parent / "data" / "ri_quality_measure_oru.hl7"
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "ri_quality_measure.md"


def seed_request() -> dict[str, Any]:
    if not SEED.exists():
        pytest.skip("shared seed not present")
    text = SEED.read_text(encoding="utf-8")
    start = text.index("{", text.index("Examples Request/Response JSON:"))
    request, _ = json.JSONDecoder().raw_decode(text[start:])
    return request["jobData"]


def ws(value: str) -> str:
    return " ".join(value.split())


def when(value: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", value))


def comparable(patient: dict[str, Any]) -> dict[str, Any]:
    details = patient["details"]
    encounter = patient["encounters"][0]
    doc = patient["patientDocuments"][0]
    procedures = doc["administrativeMetadata"]["orderedProcedures"]
    return {
        "id": patient["id"],
        "sex": details["sex"],
        "birthDate": when(details["birthDate"]),
        "encounter": (encounter["id"], encounter["class"], when(encounter["period"]["start"]),
                      when(encounter["period"]["end"])),
        "document": (doc["type"], doc["clinicalType"], doc["id"], doc["language"].lower(),
                     doc["specialtyType"], when(doc["createdAt"]), doc["administrativeMetadata"]["encounterId"]),
        "authors": [(a["id"], a.get("fullName", a.get("name"))) for a in doc["authors"]],
        "procedures": [([(c["system"], c["code"], ws(c["display"])) for c in p["code"]["coding"]],
                        ws(p["description"])) for p in procedures],
        "text": ws(doc["content"]["value"]),
        "sourceType": doc["content"]["sourceType"],
    }


def test_seed_oru_maps_to_the_seed_request() -> None:
    expected = seed_request()["patients"][0]
    decoded = decode_message(DATA.read_bytes())
    (report,) = map_oru(decoded.text)
    actual = report.request.to_json()["patients"][0]
    assert comparable(actual) == comparable(expected)
    assert (report.accession, report.analyse, report.modality_hint) == ("docid1", True, "CT")
