"""``ri-gateway serve`` with process workers, the REST API and reports over MLLP sharing the
pool, when REST jobs kill their workers (the fake engine's "DIE" ends its worker process,
as the kernel's OOM killer would; "SLOW" takes three seconds).

A report tried alone after a death must not be blamed for a REST job that kills the worker
beside it: it used to be, and two such jobs got the report recorded ``failed``.  The job
itself fails with RI's error object once its worker has died under it alone.
"""

from __future__ import annotations

import json
import queue
import time
import urllib.error
import urllib.request

from gateway_process import WAIT, GatewayProcess, exchange, json_event
from gateway_samples import oru
from test_resume_e2e import query, wait_until

KEY = "blame-test-key"
JOBS = "/health-insights/radiology-insights/jobs/{}?api-version=2024-10-01"


def job(text: str) -> bytes:
    return json.dumps({"jobData": {
        "patients": [{"id": "p1", "patientDocuments": [{
            "type": "note", "clinicalType": "radiologyReport", "id": "d1", "language": "en",
            "createdAt": "2024-05-01T10:00:00", "content": {"sourceType": "inline", "value": text}}]}],
        "configuration": {"locale": "en-US"}}}).encode()


def call(port: int, method: str, job_id: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{JOBS.format(job_id)}", data=body,
                                     method=method, headers={"Ocp-Apim-Subscription-Key": KEY,
                                                             "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def lines(gateway: GatewayProcess) -> list[dict]:
    """Every JSON log line the gateway wrote so far."""
    while True:
        try:
            gateway.output.seen.append(gateway.output.lines.get_nowait())
        except queue.Empty:
            break
    found = []
    for line in gateway.output.seen:
        try:
            found.append(json.loads(line))
        except ValueError:
            pass
    return found


def outcome(db, control_id: str) -> str | None:
    rows = query(db, "SELECT event FROM events WHERE control_id = ? AND event IN "
                     "('analysed', 'analysis_failed')", control_id)
    return rows[0][0] if rows else None


def finished(port: int, job_id: str) -> dict | None:
    status, body = call(port, "GET", job_id)
    assert status == 200, body
    return body if body["status"] in ("succeeded", "failed") else None


def blamed(gateway: GatewayProcess) -> bool:
    """Whether the report was blamed for a death while it ran alone."""
    return any(e.get("event") == "analysis.retry_alone" and e.get("control_id") == "HELD1"
               and e.get("deaths", 0) > 0 for e in lines(gateway))


def test_a_rest_job_that_kills_its_worker_is_not_blamed_on_a_report_tried_alone(tmp_path):
    db, release = tmp_path / "audit.sqlite3", tmp_path / "release"
    gateway = GatewayProcess(
        db, RI_GATEWAY_HTTP_ENABLED="true", RI_GATEWAY_HTTP_ENDPOINT="tcp:0:interface=127.0.0.1",
        RI_GATEWAY_API_KEYS=KEY, RI_GATEWAY_ANALYSIS_EXECUTOR="process",
        RI_GATEWAY_ANALYSIS_WORKERS="2", RI_GATEWAY_ANALYSIS_QUIET_PERIOD="0").start()
    try:
        http = json.loads(gateway.output.wait_for(json_event("listening", service="http")))["port"]
        gateway.output.wait_for(json_event("analysis.ready"))
        # The report's analysis lasts until the test creates ``release``.
        ack = exchange(gateway.port, oru("HELD1", report=f"WAITFOR:{release}; no acute finding."))
        assert ack is not None and b"MSA|AA|HELD1" in ack
        # A job that kills its worker while the report is analysed beside it: both are
        # victims of the death, and the report is tried again alone.
        assert call(http, "PUT", "die-1", job("DIE"))[0] == 201
        wait_until("the report tried again alone", lambda: any(
            e.get("event") == "analysis.retry_alone" and e.get("control_id") == "HELD1"
            for e in lines(gateway)))
        # A job that kills its worker while the report runs alone.  It used to run beside
        # the report (a second worker starts for it within a few seconds) and the report
        # took the blame; now it waits until the report is done.
        assert call(http, "PUT", "die-2", job("DIE"))[0] == 201
        sent = ["die-1", "die-2"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not blamed(gateway):
            time.sleep(0.05)
        if blamed(gateway):
            # Blamed once alone (forgiven); a third job gets the report recorded failed.
            assert call(http, "PUT", "die-3", job("DIE"))[0] == 201
            sent.append("die-3")
            wait_until("the report blamed twice", lambda: outcome(db, "HELD1"))
        release.touch()
        assert wait_until("the report's outcome", lambda: outcome(db, "HELD1")) == "analysed"
        assert not blamed(gateway) and sent == ["die-1", "die-2"]
        for job_id in sent:
            body = wait_until(f"job {job_id} finished", lambda j=job_id: finished(http, j))
            assert body["status"] == "failed"
            assert body["error"]["code"] == "InternalError"
            assert "analysis worker process" in body["error"]["message"]
        # Each job is tried again alone before it is failed.
        retried = [e["job_id"] for e in lines(gateway)
                   if e.get("event") == "REST job tried again alone"]
        assert sorted(retried) == ["die-1", "die-2"]
        # A job that does not kill its worker is analysed as before.
        assert call(http, "PUT", "fine-1", job("No acute finding."))[0] == 201
        assert wait_until("job fine-1", lambda: finished(http, "fine-1"))["status"] == "succeeded"
    finally:
        release.touch()
        assert gateway.stop() == 0
