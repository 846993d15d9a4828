"""Helpers for the REST tests: a site on a fake clock, driven over an in-memory transport."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.http import JobStore, make_site
from gateway.metrics import Metrics
from ri_engine.models import InferenceResult, PatientResult, RadiologyInsightsData

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "ri_doc_samples.json"
KEY = "test-key-0123456789"
START = 1_717_243_200.0  # 2024-06-01T12:00:00Z
JOB_URL = "/health-insights/radiology-insights/jobs/{}?api-version={}"


class FakeAnalysis:
    """Records every request; each returns a Deferred the test fires."""

    def __init__(self) -> None:
        self.calls: list[tuple[RadiologyInsightsData, Deferred[InferenceResult]]] = []

    def analyze(self, data: RadiologyInsightsData) -> Deferred[InferenceResult]:
        d: Deferred[InferenceResult] = Deferred()
        self.calls.append((data, d))
        return d

    def finish(self, index: int = -1, inferences: list[Any] | None = None) -> InferenceResult:
        data, d = self.calls[index]
        result = InferenceResult(
            patient_results=[PatientResult(patient_id=data.patients[0].id,
                                           inferences=list(inferences or []))],
            model_version="test-model")
        d.callback(result)
        return result


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_response(raw: bytes, closed: bool) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(status, headers, body, closed)


@dataclass
class Harness:
    site: Any
    analysis: FakeAnalysis
    clock: Clock
    metrics: Metrics
    key: str | None = KEY
    checks: dict[str, Any] = field(default_factory=dict)

    def raw(self, data: bytes) -> Response:
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return parse_response(transport.value(), transport.disconnecting)

    def request(self, method: str, path: str, body: Any = None, *,
                headers: dict[str, str] | None = None, key: str | None = "default") -> Response:
        all_headers = {"Host": "127.0.0.1:8080"}
        key = self.key if key == "default" else key
        if key is not None:
            all_headers["Ocp-Apim-Subscription-Key"] = key
        payload = b""
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
            all_headers["Content-Length"] = str(len(payload))
        all_headers.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
        return self.raw(head.encode("latin-1") + payload)

    def put_job(self, job_id: str, body: Any, api_version: str = "2024-10-01",
                **kwargs: Any) -> Response:
        return self.request("PUT", JOB_URL.format(job_id, api_version), body, **kwargs)

    def get_job(self, job_id: str, api_version: str = "2024-10-01", **kwargs: Any) -> Response:
        return self.request("GET", JOB_URL.format(job_id, api_version), **kwargs)


def make_harness(db: Path | str | JobStore = ":memory:", *, keys: tuple[str, ...] = (KEY,),
                 max_body_bytes: int = 200_000, checks: dict[str, Any] | None = None,
                 clock: Clock | None = None, max_unfinished_jobs: int | None = None,
                 max_running_jobs: int | None = None,
                 analysis: FakeAnalysis | None = None) -> Harness:
    if clock is None:
        clock = Clock()
        clock.advance(START)
    analysis = analysis or FakeAnalysis()
    metrics = Metrics()
    site = make_site(analysis=analysis, job_store=db, api_keys=keys, metrics=metrics,
                     health_checks=checks or {}, max_body_bytes=max_body_bytes, clock=clock,
                     max_unfinished_jobs=max_unfinished_jobs, max_running_jobs=max_running_jobs)
    return Harness(site, analysis, clock, metrics, keys[0] if keys else None, checks or {})


def job_body(text: str = "FINDINGS: No acute abnormality.", **configuration: Any) -> dict[str, Any]:
    """A small synthetic RI request."""
    return {"jobData": {
        "patients": [{
            "id": "patient-1",
            "details": {"sex": "female", "birthDate": "1970-01-01"},
            "encounters": [{"id": "enc-1", "class": "inpatient"}],
            "patientDocuments": [{
                "type": "note", "clinicalType": "radiologyReport", "id": "doc-1",
                "language": "en", "createdAt": "2024-05-01T10:00:00",
                "content": {"sourceType": "inline", "value": text},
            }],
        }],
        "configuration": {"locale": "en-US", "includeEvidence": True, **configuration},
    }}


def load_samples() -> list[dict[str, Any]]:
    if not SAMPLES.exists():
        pytest.skip("shared reference samples not present")
    return json.loads(SAMPLES.read_text())


def sample_job(sample: dict[str, Any]) -> dict[str, Any]:
    """The RI request a documentation example describes (its text, metadata and options)."""
    req = sample["request"]
    encounter = {"id": "encounterid1", "class": req["encounter"]["class"],
                 "period": {"start": req["encounter"]["start"], "end": req["encounter"]["start"]}}
    document: dict[str, Any] = {
        "type": "note", "clinicalType": "radiologyReport", "id": "docid1", "language": "en",
        "authors": [{"id": "authorid1", "fullName": "authorname1"}],
        "specialtyType": "radiology", "createdAt": req["createdAt"],
        "administrativeMetadata": {
            "orderedProcedures": [
                {"code": {"coding": [{"system": p["system"], "code": p["code"],
                                      "display": p["display"]}]},
                 "description": p["description"]}
                for p in req.get("orderedProcedures", [])],
            "encounterId": "encounterid1"},
        "content": {"sourceType": "inline", "value": req["text"]},
    }
    configuration: dict[str, Any] = {
        "inferenceTypes": req["inferenceTypes"], "locale": req.get("locale", "en-US"),
        "verbose": False, "includeEvidence": req.get("includeEvidence", False)}
    if "inferenceOptions" in req:
        configuration["inferenceOptions"] = req["inferenceOptions"]
    return {"jobData": {
        "patients": [{"id": "Sharona", "details": {"sex": req["sex"], "birthDate": req["birthDate"]},
                      "encounters": [encounter], "patientDocuments": [document]}],
        "configuration": configuration}}
