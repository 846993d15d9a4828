"""``ri-gateway serve`` stopped (SIGTERM) while analyses never return: one given up at
``[analysis] timeout`` and one still running.  Python waits for analysis threads and
process workers at exit, so the gateway used to outlive SIGTERM for as long as they hung;
it ends within a bounded time now, saying what it abandoned, and loses nothing ACKed."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from gateway_process import GatewayProcess, exchange, json_event
from gateway_samples import oru
from test_resume_e2e import query

STOPPED_WITHIN = 30.0  # seconds: the grace for stragglers is 5; far below the hang


def outcome(db, control_id: str) -> list[str]:
    return [row[0] for row in query(db, "SELECT event FROM events WHERE control_id = ? AND "
                                        "event IN ('analysed', 'analysis_failed') ORDER BY id",
                                    control_id)]


def wait(what: str, check) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"not within 60 s: {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_stop_with_analyses_that_never_return_ends_in_bounded_time(tmp_path, executor):
    db, never, later = tmp_path / "audit.sqlite3", tmp_path / "never", tmp_path / "later"
    env = {"RI_GATEWAY_ANALYSIS_EXECUTOR": executor, "RI_GATEWAY_ANALYSIS_TIMEOUT": "3",
           "RI_GATEWAY_ANALYSIS_QUIET_PERIOD": "0"}
    gateway = GatewayProcess(db, **env).start()
    try:
        gateway.output.wait_for(json_event("analysis.ready"))
        assert b"MSA|AA" in exchange(gateway.port, oru("HUNG1", report=f"WAITFOR:{never};"))
        gateway.output.wait_for(json_event("analysis.timed_out", control_id="HUNG1"))
        assert b"MSA|AA" in exchange(gateway.port, oru("LATE1", report=f"WAITFOR:{later};"))
        wait("the second analysis running", (tmp_path / "later.started").exists)
        started = time.monotonic()
        gateway.proc.terminate()
        try:
            code = gateway.proc.wait(timeout=STOPPED_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve still running {STOPPED_WITHIN:g} s after SIGTERM")
        assert code == 0 and time.monotonic() - started < STOPPED_WITHIN
        if executor == "thread":
            line = gateway.output.wait_for(json_event("analysis.abandoned"), timeout=5)
            assert {k: json.loads(line)[k] for k in ("threads", "messages")} == {
                "threads": 2, "messages": ["LATE1"]}
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
        later.touch()
        never.touch()
    # Nothing ACKed is lost: the one given up was recorded failed at its timeout, the one
    # cut short by the stop is analysed at the next start.
    assert outcome(db, "HUNG1") == ["analysis_failed"] and outcome(db, "LATE1") == []
    restarted = GatewayProcess(db, **env).start()
    try:
        wait("the cut-short report resumed and analysed",
             lambda: outcome(db, "LATE1") == ["analysed"])
    finally:
        assert restarted.stop() == 0
    assert outcome(db, "HUNG1") == ["analysis_failed"]


def test_rest_jobs_cut_short_by_a_stop_are_resumed_not_failed(tmp_path):
    # A job waiting in the pool behind a report was cancelled at the stop and recorded
    # failed (InternalError) instead of being left for the next start.
    from test_worker_blame_e2e import KEY, call, finished, job

    db, held = tmp_path / "audit.sqlite3", tmp_path / "held"
    env = {"RI_GATEWAY_HTTP_ENABLED": "true", "RI_GATEWAY_API_KEYS": KEY,
           "RI_GATEWAY_HTTP_ENDPOINT": "tcp:0:interface=127.0.0.1",
           "RI_GATEWAY_ANALYSIS_QUIET_PERIOD": "0"}
    gateway = GatewayProcess(db, **env).start()
    try:
        http = json.loads(gateway.output.wait_for(json_event("listening", service="http")))["port"]
        gateway.output.wait_for(json_event("analysis.ready"))
        assert b"MSA|AA" in exchange(gateway.port, oru("HELD1", report=f"WAITFOR:{held};"))
        wait("the report's analysis running", (tmp_path / "held.started").exists)
        # One worker thread: the first job waits in the pool behind the report, the second
        # (one job per worker in the pool) in the REST API.
        for job_id in ("queued-1", "queued-2"):
            assert call(http, "PUT", job_id, job("No acute finding."))[0] == 201
        gateway.proc.terminate()
        assert gateway.proc.wait(timeout=STOPPED_WITHIN) == 0
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
        held.touch()
    stored = dict(query(db, "SELECT id, status FROM http_jobs"))
    assert stored == {"queued-1": "running", "queued-2": "notStarted"}
    restarted = GatewayProcess(db, **env).start()
    try:
        http = json.loads(restarted.output.wait_for(json_event("listening", service="http")))["port"]
        for job_id in stored:
            wait(f"{job_id} resumed", lambda j=job_id: finished(http, j))
            assert finished(http, job_id)["status"] == "succeeded"
        wait("the report resumed", lambda: outcome(db, "HELD1") == ["analysed"])
    finally:
        assert restarted.stop() == 0
