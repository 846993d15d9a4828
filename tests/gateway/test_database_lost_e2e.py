"""A real ``serve`` whose audit database file is deleted under it: the outbox and the REST
jobs stop with the receive path, rather than writing on into a file no restart opens."""

from __future__ import annotations

import http.client
import json
import os

from test_pipeline_e2e import (  # noqa: F401 - rig is a fixture
    BASE, CRITICAL_TEXT, free_port, oru, port_open, rig, wait_for,
)
from test_report_critical_e2e import pager

KEY = "test-key-0123456789"
JOB = "/health-insights/radiology-insights/jobs/{}?api-version=2024-10-01"


def job_body() -> dict:
    return {"jobData": {
        "patients": [{
            "id": "patient-1", "details": {"sex": "female", "birthDate": "1970-01-01"},
            "patientDocuments": [{
                "type": "note", "clinicalType": "radiologyReport", "id": "doc-1",
                "language": "en", "createdAt": "2024-05-01T10:00:00",
                "content": {"sourceType": "inline", "value": "FINDINGS: No acute abnormality."},
            }],
        }],
        "configuration": {"locale": "en-US"},
    }}


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Ocp-Apim-Subscription-Key": KEY}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def logged(rig, event: str) -> list[dict]:  # noqa: F811
    lines = (rig.tmp / "serve.log").read_text(errors="replace").splitlines()
    return [e for e in (json.loads(line) for line in lines if line.startswith("{"))
            if e.get("event") == event]


def test_a_deleted_database_stops_delivery_and_rest_jobs(rig):  # noqa: F811
    pager_port, mllp, http_port = free_port(), free_port(), free_port()
    config = BASE.replace("enabled = false", f"""enabled = true
endpoint = "tcp:{http_port}:interface=127.0.0.1"
api_keys = ["{KEY}"]""") + pager("pager", pager_port) + """
[routes.critical-to-pager]
type = "alerts"
destinations = ["pager"]
alert_on = ["critical"]
"""
    rig.serve(config, mllp)
    wait_for("the REST API listening", lambda: port_open(http_port))
    assert call(http_port, "PUT", JOB.format("before"), job_body())[0] == 201
    # The pager is down: its alert waits in the outbox, tried again every second at most.
    sent = rig.send(mllp, "crit", oru("LOST0001", "ACC9101", "MRN9101", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the alert failing", lambda: rig.events("LOST0001", "delivery_failed"))

    os.unlink(rig.db)
    rig.sink("pager", pager_port)
    # Before, the alert went out and was marked delivered in the deleted file: after a
    # restart on a restored database it was pending again, the page sent twice.
    wait_for("delivery to stop, or the alert to be sent",
             lambda: logged(rig, "outbox.delivery_stopped") or rig.received("pager"))
    assert rig.received("pager") == []
    (stopped,) = logged(rig, "outbox.delivery_stopped")
    assert (stopped["destination"], stopped["level"]) == ("pager", "error")
    assert stopped["reason"].startswith(f"audit database {rig.db} was deleted")

    message = ("The gateway's database was deleted or replaced while it ran; no job can be "
               "stored or read until the gateway is restarted.")
    assert call(http_port, "PUT", JOB.format("after"), job_body()) == (
        503, {"error": {"code": "ServiceUnavailable", "message": message}})
    assert call(http_port, "GET", JOB.format("before")) == (
        503, {"error": {"code": "ServiceUnavailable", "message": message}})
    status, health = call(http_port, "GET", "/health")
    assert (status, health["checks"]["database"]) == (503, "fail")
    # Found once, by whichever part wrote or read first; each refusal since says so itself.
    assert [e["reason"] for e in logged(rig, "audit.database_lost")] == [stopped["reason"]]
