"""REST job writes in ``ri-gateway serve`` go through the audit writer, off the listener's
thread: while the audit database's write lock is held elsewhere, a PUT waits for it without
holding up any other request, and is answered once its job is committed."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rest_harness import job_body
from test_http_serve import KEY, ORU, WAIT, Serve

JOBS = "/health-insights/radiology-insights/jobs/{}?api-version=2024-10-01"


class Http:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: dict | None = None,
             timeout: float = WAIT) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Ocp-Apim-Subscription-Key": KEY, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[tuple[Serve, Http, Path]]:
    db = tmp_path_factory.mktemp("writes") / "audit.sqlite3"
    server = Serve(db)
    try:
        yield server, Http(server.ports["http"]), db
    finally:
        server.stop()


class _Put(threading.Thread):
    """A PUT on its own thread, so the test can act while it waits for its answer."""

    def __init__(self, http: Http, job_id: str) -> None:
        super().__init__(daemon=True)
        self.http, self.job_id = http, job_id
        self.answer: tuple[int, dict] | None = None
        self.start()

    def run(self) -> None:
        self.answer = self.http.call("PUT", JOBS.format(self.job_id), job_body())


def test_a_put_waiting_for_the_write_lock_holds_up_no_other_request(gateway) -> None:
    _, http, db = gateway
    assert http.call("PUT", JOBS.format("before"), job_body())[0] == 201
    # Another connection holds the write lock (as a long audit transaction would): the
    # job's "accepted" row cannot be committed until it lets go.
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        put = _Put(http, "while-locked")
        time.sleep(0.5)  # the PUT reaches the gateway (its answer cannot come yet)
        started = time.monotonic()
        # The listener answers meanwhile: the PUT used to hold its thread, looking for the
        # lock again every 0.2 ms for up to 5 s, and every other connection waited with it.
        assert http.call("GET", "/health/live", timeout=2.0) == (200, {"status": "pass"})
        status, job = http.call("GET", JOBS.format("before"), timeout=2.0)
        assert (status, job["id"]) == (200, "before")
        assert time.monotonic() - started < 2.0
        # No 201 before the job is committed: a crash now would lose it.
        assert put.is_alive() and put.answer is None
    finally:
        holder.execute("COMMIT")
        holder.close()
    put.join(WAIT)
    assert put.answer is not None and put.answer[0] == 201
    assert put.answer[1]["id"] == "while-locked"
    assert http.call("GET", JOBS.format("while-locked"))[0] == 200


def test_job_writes_and_mllp_commits_share_the_writer(gateway) -> None:
    server, http, _ = gateway
    ack = server.mllp(ORU.replace("SERVE1", "WRITES1"))
    assert ack.split("\r")[1].startswith("MSA|AA|WRITES1")
    status, job = http.call("PUT", JOBS.format("beside-mllp"), job_body())
    assert (status, job["status"]) == (201, "notStarted")
    deadline = time.monotonic() + WAIT
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = http.call("GET", JOBS.format("beside-mllp"))[1]
    assert job["status"] == "succeeded"
    ack = server.mllp(ORU.replace("SERVE1", "WRITES2"))
    assert ack.split("\r")[1].startswith("MSA|AA|WRITES2")
