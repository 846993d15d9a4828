"""The REST listener's connection limits, driven as ``serve`` wires them: the site wrapped
in ConnectionLimit, over an in-memory transport, on a fake clock."""

from __future__ import annotations

import json

from rest_harness import JOB_URL, Harness, job_body, make_harness, parse_response
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from gateway.http import ConnectionLimit


class _Connection:
    def __init__(self, limit: ConnectionLimit) -> None:
        self.protocol = limit.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)


def _limit(harness: Harness, max_connections: int = 100) -> ConnectionLimit:
    return ConnectionLimit(harness.site, max_connections, request_timeout=60,
                           clock=harness.clock)


def _put_request(harness: Harness) -> bytes:
    body = json.dumps(job_body()).encode()
    return (f"PUT {JOB_URL.format('job-1', '2024-10-01')} HTTP/1.1\r\nHost: h\r\n"
            f"Ocp-Apim-Subscription-Key: {harness.key}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_request_trickling_in_is_cut_off_with_408() -> None:
    # One byte every 10 s keeps twisted.web's idle timeout from ever firing; the request
    # deadline does not move.
    harness = make_harness()
    connection = _Connection(_limit(harness))
    request = _put_request(harness)
    for byte in request[:6]:
        connection.send(bytes([byte]))
        harness.clock.advance(9.9)
    assert connection.transport.value() == b""
    harness.clock.advance(0.6)  # 60 s after the connection opened
    response = parse_response(connection.transport.value(), connection.transport.disconnecting)
    assert (response.status, response.json(), response.header("x-ms-error-code"),
            response.closed) == (
        408, {"error": {"code": "RequestTimeout",
                        "message": "The request did not arrive within 60 seconds."}},
        "RequestTimeout", True)
    assert harness.analysis.calls == []
    assert harness.metrics.get("ri_gateway_http_requests_total", {"status": "408"}) == 1


def test_a_request_that_arrives_in_time_is_answered_and_the_clock_restarts() -> None:
    harness = make_harness()
    connection = _Connection(_limit(harness))
    request = _put_request(harness)
    connection.send(request[:20])
    harness.clock.advance(59)
    connection.send(request[20:])
    assert parse_response(connection.transport.value(), False).status == 201
    connection.transport.clear()
    # The next request on the same connection has its own 60 s from the response.
    connection.send(request[:20])
    harness.clock.advance(59)
    connection.send(request[20:])
    assert parse_response(connection.transport.value(), False).status == 200


def test_an_idle_connection_is_closed_without_an_answer() -> None:
    harness = make_harness()
    connection = _Connection(_limit(harness))
    harness.clock.advance(61)
    assert (connection.transport.value(), connection.transport.disconnecting) == (b"", True)


def test_connections_over_the_limit_are_refused() -> None:
    harness = make_harness()
    limit = _limit(harness, max_connections=2)
    first, second = _Connection(limit), _Connection(limit)
    assert limit.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001)) is None
    first.protocol.connectionLost(None)
    assert limit.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40002)) is not None
    assert second.transport.disconnecting is False
