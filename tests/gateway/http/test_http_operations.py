"""API keys, /health and /metrics."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_harness import KEY, Harness, job_body, make_harness
from structlog.testing import capture_logs

from gateway.http import ApiKeys


def _error(response) -> tuple[int, dict]:
    assert response.header("x-ms-error-code") == response.json()["error"]["code"]
    return response.status, response.json()["error"]


# -- API keys ----------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, "", "wrong-key", KEY + "x", KEY[:-1]])
def test_a_missing_or_wrong_key_gets_401(harness: Harness, key) -> None:
    for response in (harness.put_job("job-1", job_body(), key=key),
                     harness.get_job("job-1", key=key)):
        assert _error(response) == (401, {
            "code": "Unauthorized",
            "message": "Access denied: a valid key is required in the "
                       "Ocp-Apim-Subscription-Key header."})
    assert harness.analysis.calls == []


def test_any_configured_key_is_accepted() -> None:
    harness = make_harness(keys=("first-key", "second-key"))
    assert harness.put_job("job-1", job_body(), key="first-key").status == 201
    assert harness.get_job("job-1", key="second-key").status == 200


def test_without_any_key_configured_every_job_request_is_refused() -> None:
    with capture_logs() as logs:
        harness = make_harness(keys=())
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "REST job endpoints refuse every request: no API key is configured; set [http] "
        "api_keys in the configuration file or the environment variable RI_GATEWAY_API_KEYS "
        "(comma-separated)"]
    for key in (None, "anything"):
        status, error = _error(harness.put_job("job-1", job_body(), key=key))
        assert (status, error["code"]) == (403, "ApiKeyNotConfigured")
        assert "RI_GATEWAY_API_KEYS" in error["message"]
    # Operations endpoints stay open for probes and scrapers.
    assert harness.request("GET", "/health").status == 200
    assert harness.request("GET", "/metrics").status == 200


def test_keys_never_reach_the_log(harness: Harness) -> None:
    with capture_logs() as logs:
        harness.put_job("job-1", job_body())
        harness.put_job("job-2", job_body(), key="a-guessed-key")
        harness.analysis.finish(0)
    assert logs  # requests are logged...
    text = repr(logs)
    assert KEY not in text and "a-guessed-key" not in text  # ...but never the keys
    assert "No acute abnormality" not in text


def test_keys_come_from_the_environment_over_the_configuration() -> None:
    from_env = ApiKeys.from_sources(["file-key"], {"RI_GATEWAY_API_KEYS": " env-1 , env-2 ,"})
    assert (from_env.matches("env-1"), from_env.matches("env-2"),
            from_env.matches("file-key"), len(from_env)) == (True, True, False, 2)
    from_file = ApiKeys.from_sources(["file-key"], {})
    assert (from_file.matches("file-key"), from_file.matches("")) == (True, False)
    assert repr(from_env) == "ApiKeys(<2 key(s)>)"
    assert not ApiKeys.from_sources([], {"RI_GATEWAY_API_KEYS": " , "}).configured


# -- /health -----------------------------------------------------------------------

def test_health_reports_every_check() -> None:
    state = {"engine": True}

    def broken() -> bool:
        raise OSError("listener gone")

    harness = make_harness(checks={"engine": lambda: state["engine"], "listener": lambda: True})
    ok = harness.request("GET", "/health", key=None)
    assert (ok.status, ok.json()) == (200, {"status": "pass", "checks": {
        "database": "pass", "engine": "pass", "listener": "pass"}})

    state["engine"] = False
    down = harness.request("GET", "/health", key=None)
    assert (down.status, down.json()) == (503, {"status": "fail", "checks": {
        "database": "pass", "engine": "fail", "listener": "pass"}})
    assert harness.request("GET", "/health/ready", key=None).status == 503
    assert harness.request("GET", "/health/live", key=None).json() == {"status": "pass"}
    assert harness.request("GET", "/health/other", key=None).status == 404

    harness = make_harness(checks={"listener": broken})
    assert harness.request("GET", "/health", key=None).json()["checks"]["listener"] == "fail"


def test_health_fails_when_the_database_is_not_writable(harness: Harness) -> None:
    harness.site.runner.store.close()
    response = harness.request("GET", "/health", key=None)
    assert (response.status, response.json()["checks"]["database"]) == (503, "fail")


def test_a_check_that_never_answers_fails_after_its_timeout() -> None:
    # The database check is a write through the audit writer: behind a hung disk it never
    # fired, and /health gave no answer at all (a probe saw its own timeout, not a 503).
    from twisted.internet.address import IPv4Address
    from twisted.internet.defer import Deferred
    from twisted.internet.testing import StringTransport

    from gateway.http.health import CHECK_TIMEOUT

    harness = make_harness(checks={"engine": lambda: True, "stuck": Deferred})
    protocol = harness.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
    assert transport.value() == b""  # still waiting for the stuck check
    with capture_logs() as logs:
        harness.clock.advance(CHECK_TIMEOUT + 0.1)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    assert json.loads(body) == {"status": "fail", "checks": {
        "database": "pass", "engine": "pass", "stuck": "fail"}}
    assert [(e["check"], e["error_type"]) for e in logs
            if e["event"] == "health check raised"] == [("stuck", "TimeoutError")]


# -- /metrics ----------------------------------------------------------------------

def _http_counts(harness: Harness) -> dict[str, float]:
    response = harness.request("GET", "/metrics", key=None)
    assert response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    family = families.get("ri_gateway_http_requests")
    if family is None:
        return {}
    assert family.type == "counter"
    return {s.labels["status"]: s.value for s in family.samples if s.name.endswith("_total")}


def test_metrics_count_requests_by_status_as_they_flow(harness: Harness) -> None:
    assert _http_counts(harness) == {}
    harness.put_job("job-1", job_body())
    harness.get_job("job-1")
    harness.get_job("job-1")
    harness.get_job("job-1", key="bad")
    harness.put_job("x", job_body())
    # A scrape is counted once it has been answered: the first one shows in the second.
    assert _http_counts(harness) == {"201": 1, "200": 3, "401": 1, "400": 1}
    assert _http_counts(harness) == {"201": 1, "200": 4, "401": 1, "400": 1}


def test_metrics_show_what_other_parts_record(harness: Harness) -> None:
    harness.metrics.inc("ri_gateway_messages_total", {"message_type": "ORU^R01", "ack_code": "AA"})
    harness.metrics.observe("ri_gateway_analysis_seconds", 0.2)
    body = harness.request("GET", "/metrics", key=None).body.decode()
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"ri_gateway_messages", "ri_gateway_analysis_seconds"} <= names


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready", "/metrics"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_operations_endpoints_get_405_in_ri_shape(
        harness: Harness, path: str, method: str) -> None:
    response = harness.request(method, path, b"{}", key=None)
    assert _error(response) == (405, {
        "code": "MethodNotAllowed", "message": "Only GET and HEAD are supported here."})
    assert (response.header("Allow"), response.header("Content-Type")) == (
        "GET, HEAD", "application/json; charset=utf-8")


@pytest.mark.parametrize("path", ["/health", "/metrics"])
def test_head_on_operations_endpoints_answers_like_get_without_a_body(
        harness: Harness, path: str) -> None:
    get = harness.request("GET", path, key=None)
    head = harness.request("HEAD", path, key=None)
    assert (head.status, head.header("Content-Type"), head.body) == (
        get.status, get.header("Content-Type"), b"")
