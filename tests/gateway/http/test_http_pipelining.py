"""HTTP/1.1 pipelining against ``ri-gateway serve`` on a real loopback socket: requests
sent back to back on one connection, before any answer, are all answered, in order."""

from __future__ import annotations

import json
import re
import socket
import time

from rest_harness import job_body
from test_http_serve import KEY, WAIT, Serve

JOB = "/health-insights/radiology-insights/jobs/{}?api-version=2024-10-01"


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: h\r\nOcp-Apim-Subscription-Key: {KEY}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` responses read off ``sock``: (status, body) each, by Content-Length."""
    data, out = b"", []
    deadline = time.monotonic() + WAIT
    while len(out) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1")
            length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
            if len(data) >= head_end + 4 + length:
                out.append((int(head.split()[1]), data[head_end + 4:head_end + 4 + length]))
                data = data[head_end + 4 + length:]
                continue
        assert time.monotonic() < deadline, f"only {len(out)} of {count} answered"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} of {count} answers"
        data += chunk
    return out


def test_pipelined_requests_are_all_answered_in_order(tmp_path) -> None:
    server = Serve(tmp_path / "audit.sqlite3")
    try:
        body = json.dumps(job_body("FINDINGS: Large right pneumothorax.")).encode()
        requests = [
            _request("GET", "/health"),
            _request("PUT", JOB.format("pipe-1"), body),  # answered at once, analysed later
            _request("GET", JOB.format("pipe-1")),
            _request("GET", JOB.format("no-such-job")),
            _request("GET", "/metrics"),
        ]
        with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=WAIT) as sock:
            sock.sendall(b"".join(requests))  # one write: nothing answered yet
            answers = _responses(sock, len(requests))
        statuses = [status for status, _ in answers]
        assert statuses[1:] == [201, 200, 404, 200]
        assert statuses[0] in (200, 503)  # 503 while the engine is still loading
        assert json.loads(answers[1][1])["id"] == json.loads(answers[2][1])["id"] == "pipe-1"
        assert json.loads(answers[3][1])["error"]["code"] == "NotFound"
        assert b"ri_gateway_" in answers[4][1]
    finally:
        server.stop()
