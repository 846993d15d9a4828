"""The RI job endpoints: create, poll, replace, expand, failures, versions, restart, retention."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterator

from twisted.internet.address import IPv6Address
from twisted.internet.defer import fail, maybeDeferred
from twisted.internet.testing import StringTransport

from gateway.analysis import WorkerDied
from gateway.audit import AuditLog
from gateway.commit import GroupCommitter
from gateway.http import JobStore
from ri_engine.errors import AnalysisFailure, RequestError
from ri_engine.models import INFERENCE_TYPES, AgeMismatchInference

from rest_harness import (
    JOB_URL, START, FakeAnalysis, Harness, job_body, make_harness, parse_response,
)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def test_put_creates_a_job_and_get_follows_it_to_its_result(harness: Harness) -> None:
    created = harness.put_job("job-1", job_body())

    assert created.status == 201
    assert created.header("Operation-Location") == (
        "http://127.0.0.1:8080/health-insights/radiology-insights/jobs/job-1?api-version=2024-10-01")
    assert created.header("Retry-After") == "1"
    assert len(created.header("x-ms-request-id") or "") == 36
    assert created.json() == {
        "id": "job-1", "status": "notStarted", "createdAt": _iso(START),
        "updatedAt": _iso(START), "expiresAt": _iso(START + 24 * 3600)}

    harness.clock.advance(2)
    running = harness.get_job("job-1")
    assert (running.status, running.json()["status"]) == (200, "running")
    assert running.header("Retry-After") == "1"

    harness.clock.advance(3)
    inference = AgeMismatchInference()
    harness.analysis.finish(inferences=[inference])
    done = harness.get_job("job-1")
    assert done.header("Retry-After") is None
    assert done.json() == {
        "id": "job-1", "status": "succeeded", "createdAt": _iso(START),
        "updatedAt": _iso(START + 5), "expiresAt": _iso(START + 24 * 3600),
        "result": {"patientResults": [{"patientId": "patient-1",
                                       "inferences": [{"kind": "ageMismatch"}]}],
                   "modelVersion": "test-model"}}


def test_the_analysis_receives_the_request_as_parsed(harness: Harness) -> None:
    harness.put_job("job-1", job_body("Impression: small nodule."))
    (data, _), = harness.analysis.calls
    assert data.patients[0].patient_documents[0].content.value == "Impression: small nodule."
    assert data.configuration.locale == "en-US"


def test_put_on_an_existing_id_replaces_the_job(harness: Harness) -> None:
    harness.put_job("job-1", job_body("first report"))
    harness.clock.advance(10)
    replaced = harness.put_job("job-1", job_body("second report"))

    assert replaced.status == 200
    assert replaced.json()["status"] == "notStarted"
    assert replaced.json()["createdAt"] == _iso(START + 10)
    # The first analysis ends late: its result must not land on the replaced job.
    harness.analysis.finish(0, inferences=[AgeMismatchInference()])
    assert harness.get_job("job-1").json()["status"] == "running"
    harness.analysis.finish(1)
    job = harness.get_job("job-1").json()
    assert job["status"] == "succeeded"
    assert job["result"]["patientResults"][0]["inferences"] == []


def test_expand_job_data_echoes_the_request(harness: Harness) -> None:
    body = job_body(inferenceTypes=["finding"])
    put = harness.request("PUT", JOB_URL.format("job-2", "2024-10-01") + "&expand=jobData", body)
    assert put.json()["jobData"] == body["jobData"]
    get = harness.request("GET", JOB_URL.format("job-2", "2024-10-01") + "&expand=jobData")
    assert get.json()["jobData"] == body["jobData"]
    assert "jobData" not in harness.get_job("job-2").json()


def test_a_request_error_during_analysis_fails_the_job_with_its_error(harness: Harness) -> None:
    harness.put_job("job-1", job_body())
    harness.analysis.calls[0][1].errback(
        RequestError("The report has no text the engine can read.", code="UnreadableText",
                     target="jobData.patients[0].patientDocuments[0].content"))
    job = harness.get_job("job-1").json()
    assert (job["status"], job["error"]) == ("failed", {
        "code": "UnreadableText", "message": "The report has no text the engine can read.",
        "target": "jobData.patients[0].patientDocuments[0].content"})


def test_an_internal_failure_fails_the_job_without_leaking_details(harness: Harness) -> None:
    harness.put_job("job-1", job_body())
    harness.analysis.calls[0][1].errback(AnalysisFailure("boom near 'patient text'"))
    job = harness.get_job("job-1").json()
    assert (job["status"], job["error"]) == ("failed", {
        "code": "InternalError",
        "message": "The server failed to analyse the request; the error has been logged."})


def test_api_version_2024_04_01_is_accepted_and_limited_to_its_kinds(harness: Harness) -> None:
    response = harness.put_job("old-client", job_body(), api_version="2024-04-01")
    assert response.status == 201
    assert response.header("Operation-Location").endswith("?api-version=2024-04-01")
    (data, _), = harness.analysis.calls
    assert data.configuration.inference_types == [
        k for k in INFERENCE_TYPES
        if k not in ("scoringAndAssessment", "guidance", "qualityMeasure")]


def test_api_version_2024_04_01_refuses_kinds_added_later(harness: Harness) -> None:
    response = harness.put_job("old-client", job_body(inferenceTypes=["finding", "guidance"]),
                               api_version="2024-04-01")
    assert response.status == 400
    assert response.json() == {"error": {
        "code": "InvalidRequestBody",
        "message": "Inference type(s) guidance need api-version 2024-10-01.",
        "target": "jobData.configuration.inferenceTypes"}}


def test_both_spellings_of_the_option_keys_are_understood(harness: Harness) -> None:
    for job_id, key in (("capital", "QualityMeasureOptions"), ("camel", "qualityMeasureOptions")):
        body = job_body(inferenceTypes=["qualityMeasure"],
                        inferenceOptions={key: {"measureTypes": ["mips364", "mips436"]},
                                          "GuidanceOptions": {"showGuidanceInHistory": True}})
        assert harness.put_job(job_id, body).status == 201
    options = [data.configuration.inference_options for data, _ in harness.analysis.calls]
    assert options[0] == options[1]
    assert options[0].quality_measure_options.measure_types == ["mips364", "mips436"]
    assert options[0].guidance_options.show_guidance_in_history is True


def test_a_job_in_progress_is_run_again_after_a_restart(tmp_path) -> None:
    db = tmp_path / "gateway.db"
    first = make_harness(db)
    first.put_job("survivor", job_body("kept across restarts"))
    first.put_job("finished", job_body())
    first.analysis.finish(1)
    assert [d.patients[0].patient_documents[0].content.value for d, _ in first.analysis.calls] == [
        "kept across restarts", "FINDINGS: No acute abnormality."]

    # A new process on the same database: listening resumes the unfinished job only.
    second = make_harness(db, clock=first.clock)
    assert second.get_job("survivor").json()["status"] == "running"
    second.site.startFactory()
    try:
        (data, _), = second.analysis.calls
        assert data.patients[0].patient_documents[0].content.value == "kept across restarts"
        second.analysis.finish()
        assert second.get_job("survivor").json()["status"] == "succeeded"
        assert second.get_job("finished").json()["status"] == "succeeded"
    finally:
        second.site.stopFactory()


def test_jobs_expire_after_24_hours_and_are_purged(tmp_path) -> None:
    harness = make_harness(tmp_path / "gateway.db")
    harness.site.startFactory()
    try:
        harness.put_job("short-lived", job_body())
        harness.analysis.finish()
        harness.clock.advance(24 * 3600 - 1)
        assert harness.get_job("short-lived").status == 200
        harness.clock.advance(1)
        gone = harness.get_job("short-lived")
        assert gone.status == 404
        assert gone.json()["error"]["code"] == "NotFound"
        harness.clock.advance(300)  # the periodic purge runs
        store = harness.site.runner.store
        assert store._db.execute("SELECT COUNT(*) FROM http_jobs").fetchone() == (0,)
    finally:
        harness.site.stopFactory()


def test_an_expired_id_can_be_created_again(harness: Harness) -> None:
    harness.put_job("reused", job_body())
    harness.clock.advance(25 * 3600)
    assert harness.put_job("reused", job_body()).status == 201


def test_the_database_file_is_private(tmp_path) -> None:
    make_harness(tmp_path / "jobs.db")
    assert (tmp_path / "jobs.db").stat().st_mode & 0o777 == 0o600


def test_the_response_body_is_json_in_utf8(harness: Harness) -> None:
    response = harness.put_job("job-1", job_body("Befund: Knöchel unauffällig."))
    assert response.header("Content-Type") == "application/json; charset=utf-8"
    json.loads(response.body.decode("utf-8"))


def test_operation_location_without_a_host_header_on_ipv6_is_a_valid_url(
        harness: Harness) -> None:
    # An HTTP/1.0 client need not send Host; the URL is then built from the listening address,
    # and an IPv6 address needs brackets there (RFC 3986), or the port reads as part of it.
    body = json.dumps(job_body()).encode()
    request = (f"PUT {JOB_URL.format('job-6', '2024-10-01')} HTTP/1.0\r\n"
               f"Ocp-Apim-Subscription-Key: {harness.key}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    protocol = harness.site.buildProtocol(IPv6Address("TCP", "::1", 40000))
    transport = StringTransport(hostAddress=IPv6Address("TCP", "::1", 8080))
    protocol.makeConnection(transport)
    protocol.dataReceived(request)
    response = parse_response(transport.value(), transport.disconnecting)
    assert (response.status, response.header("Operation-Location")) == (
        201,
        "http://[::1]:8080/health-insights/radiology-insights/jobs/job-6?api-version=2024-10-01")


def test_a_job_beyond_the_unfinished_limit_is_refused_with_429() -> None:
    harness = make_harness(max_unfinished_jobs=2)
    assert harness.put_job("job-1", job_body()).status == 201
    assert harness.put_job("job-2", job_body()).status == 201
    refused = harness.put_job("job-3", job_body())
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert refused.header("x-ms-error-code") == "TooManyRequests"
    assert refused.header("Retry-After") == "1"
    assert harness.get_job("job-3").status == 404  # nothing was stored
    assert len(harness.analysis.calls) == 2  # nor analysed
    assert harness.put_job("job-2", job_body("Replaced.")).status == 200  # takes no room
    harness.analysis.finish(0)  # job-1 is done: room for one more
    assert harness.put_job("job-3", job_body()).status == 201
    assert harness.put_job("job-4", job_body()).status == 429


def test_jobs_beyond_max_running_wait_not_started_and_a_replaced_one_is_analysed_once() -> None:
    # Every job went to the analysis pool on arrival: a client's burst held every MLLP
    # report behind it, and replacing a waiting job queued one more analysis per PUT.
    harness = make_harness(max_running_jobs=1)
    assert harness.put_job("job-1", job_body("first")).status == 201
    assert harness.put_job("job-2", job_body("second")).status == 201
    for n in range(3):
        assert harness.put_job("job-3", job_body(f"third, version {n}")).status in (200, 201)
    assert len(harness.analysis.calls) == 1
    assert [harness.get_job(j).json()["status"] for j in ("job-1", "job-2", "job-3")] == [
        "running", "notStarted", "notStarted"]
    harness.analysis.finish()
    assert len(harness.analysis.calls) == 2
    assert harness.get_job("job-2").json()["status"] == "running"
    harness.analysis.finish()
    texts = [d.patients[0].patient_documents[0].content.value for d, _ in harness.analysis.calls]
    assert texts == ["first", "second", "third, version 2"]  # the replaced versions skipped
    harness.analysis.finish()
    assert [harness.get_job(j).json()["status"] for j in ("job-1", "job-2", "job-3")] == [
        "succeeded"] * 3


def test_a_stored_job_that_no_longer_reads_fails_and_the_others_resume(tmp_path) -> None:
    # A job stored by an earlier version whose request the parser now refuses: resume()
    # raised (the failure was recorded with its arguments swapped), so the REST API did
    # not start and no later unfinished job was resumed.
    db = tmp_path / "gateway.db"
    first = make_harness(db)
    first.put_job("stale", job_body("stored long ago"))
    first.put_job("kept", job_body("kept across restarts"))
    first.site.runner.store._db.execute(
        "UPDATE http_jobs SET request = '{}' WHERE id = 'stale'")

    second = make_harness(db, clock=first.clock)
    second.site.startFactory()
    try:
        stale = second.get_job("stale").json()
        assert stale["status"] == "failed" and stale["error"]["code"] == "InvalidRequestBody"
        (data, _), = second.analysis.calls
        assert data.patients[0].patient_documents[0].content.value == "kept across restarts"
        second.analysis.finish()
        assert second.get_job("kept").json()["status"] == "succeeded"
    finally:
        second.site.stopFactory()


@contextlib.contextmanager
def _write_lock_held(db, seconds: float) -> Iterator[None]:
    """Another connection (the audit writer, in the gateway) holding the write lock for
    ``seconds`` from now, on a thread; the block runs meanwhile."""
    holder = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def test_a_put_waits_out_another_connections_write_lock(tmp_path) -> None:
    # A store of its own (no audit writer) commits on its connection, which waits for a
    # lock another connection holds (up to LOCK_WAIT).
    db = tmp_path / "gateway.db"
    harness = make_harness(db)
    with _write_lock_held(db, 0.05):
        response = harness.put_job("while-locked", job_body())
    assert response.status == 201
    assert harness.get_job("while-locked").json()["status"] in ("notStarted", "running")


def test_a_put_against_a_lock_held_past_the_wait_fails_with_a_500(tmp_path, monkeypatch) -> None:
    from gateway.http import job_store

    db = tmp_path / "gateway.db"
    monkeypatch.setattr(job_store, "LOCK_WAIT", 0.02)
    harness = make_harness(db)
    with _write_lock_held(db, 0.5):
        response = harness.put_job("never-stored", job_body())
    assert response.status == 500
    assert response.json()["error"] == {
        "code": "InternalError",
        "message": "The job could not be stored; the error has been logged. Send the job "
                   "again later."}
    assert harness.get_job("never-stored").status == 404


def _through_the_audit_writer(db) -> tuple[JobStore, AuditLog]:
    """A job store writing through the gateway's group committer on an audit database
    (the writer run at once here, on the test's thread)."""
    writer = AuditLog(str(db))
    committer = GroupCommitter(writer, lambda fn: maybeDeferred(fn))
    return JobStore(db, write=committer.submit), writer


def test_jobs_written_through_the_audit_writer_follow_their_course(tmp_path) -> None:
    db = tmp_path / "audit.sqlite3"
    store, writer = _through_the_audit_writer(db)
    harness = make_harness(store)
    assert harness.put_job("job-1", job_body()).status == 201
    assert harness.get_job("job-1").json()["status"] == "running"
    harness.analysis.finish()
    assert harness.get_job("job-1").json()["status"] == "succeeded"
    assert harness.put_job("job-1", job_body()).status == 200
    # The rows are the audit writer's, in the audit database.
    assert writer.conn.execute("SELECT revision, status FROM http_jobs").fetchall() == [
        (2, "running")]


def test_a_put_the_audit_writer_cannot_commit_fails_with_a_500(tmp_path) -> None:
    db = tmp_path / "audit.sqlite3"
    store, writer = _through_the_audit_writer(db)
    writer.conn.execute("PRAGMA busy_timeout = 20")
    harness = make_harness(store)
    with _write_lock_held(db, 0.5):
        response = harness.put_job("never-stored", job_body())
    assert (response.status, response.json()["error"]["code"]) == (500, "InternalError")
    assert response.header("x-ms-error-code") == "InternalError"
    assert harness.get_job("never-stored").status == 404
    assert harness.analysis.calls == []


def test_jobs_cut_short_by_a_restart_wait_not_started_until_their_turn(tmp_path) -> None:
    # Jobs running when the gateway stopped were still "running" after the restart while
    # they waited behind max_running_jobs for their turn: a client polling saw them run.
    db = tmp_path / "gateway.db"
    first = make_harness(db)
    for n in range(3):
        first.put_job(f"job-{n}", job_body(f"report {n}"))
    assert len(first.analysis.calls) == 3  # all three running when it stops

    second = make_harness(db, clock=first.clock, max_running_jobs=1)
    second.site.startFactory()
    try:
        assert [second.get_job(f"job-{n}").json()["status"] for n in range(3)] == [
            "running", "notStarted", "notStarted"]
        second.analysis.finish()
        assert [second.get_job(f"job-{n}").json()["status"] for n in range(3)] == [
            "succeeded", "running", "notStarted"]
    finally:
        second.site.stopFactory()


class _FailingAtOnce(FakeAnalysis):
    """The first analysis waits for the test; every later one fails before it returns."""

    def analyze(self, data):  # type: ignore[no-untyped-def]
        if not self.calls:
            return super().analyze(data)
        d = fail(AnalysisFailure("engine down"))
        self.calls.append((data, d))
        return d


def test_thousands_of_waiting_jobs_failing_at_once_are_each_recorded_failed() -> None:
    # Each failure recorded handed the next job over from inside the previous one's
    # callbacks: with an engine failing at once, one nested call per waiting job, until
    # Python's recursion limit ended the chain and the rest stayed notStarted for ever.
    harness = make_harness(max_running_jobs=1, analysis=_FailingAtOnce())
    waiting = 1500
    for n in range(waiting + 1):
        assert harness.put_job(f"job-{n}", job_body()).status == 201
    harness.analysis.calls[0][1].errback(AnalysisFailure("engine down"))
    assert len(harness.analysis.calls) == waiting + 1
    assert harness.site.runner.store.unfinished(harness.clock.seconds()) == []
    for n in (0, 1, waiting // 2, waiting):
        job = harness.get_job(f"job-{n}").json()
        assert (job["status"], job["error"]["code"]) == ("failed", "InternalError")


class _DyingAnalysis(FakeAnalysis):
    """Records the ``alone`` key of every analysis, as the analysis pool takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.alone: list[object] = []

    def analyze(self, data, alone=None):  # type: ignore[no-untyped-def]
        self.alone.append(alone)
        return super().analyze(data)


def test_a_replaced_job_whose_worker_died_is_not_tried_again_alone() -> None:
    # A job replaced while it ran, whose worker then died, was still tried again alone: an
    # analysis of a request nobody waits for, holding every other analysis meanwhile.
    harness = make_harness(analysis=_DyingAnalysis())
    harness.put_job("job-1", job_body("first version"))
    assert harness.put_job("job-1", job_body("second version")).status == 200
    harness.analysis.calls[0][1].errback(WorkerDied("analysis worker died"))
    texts = [d.patients[0].patient_documents[0].content.value for d, _ in harness.analysis.calls]
    assert texts == ["first version", "second version"]
    assert harness.analysis.alone == [None, None]
    harness.analysis.finish(1)
    assert harness.get_job("job-1").json()["status"] == "succeeded"


def test_a_job_whose_worker_died_is_tried_again_alone_then_failed() -> None:
    harness = make_harness(analysis=_DyingAnalysis())
    harness.put_job("job-1", job_body("kills its worker"))
    harness.analysis.calls[0][1].errback(WorkerDied("analysis worker died"))
    assert harness.analysis.alone == [None, ("job", "job-1", 1)]
    assert harness.get_job("job-1").json()["status"] == "running"
    harness.analysis.calls[1][1].errback(WorkerDied("analysis worker died"))
    job = harness.get_job("job-1").json()
    assert job["status"] == "failed"
    assert "analysis worker process" in job["error"]["message"]
