"""``ri-gateway serve`` with its real engine, as a real process: MLLP in, REST and metrics out.

One gateway process serves both listeners, as it does in production: an ORU^R01 sent over
MLLP moves the counters of ``/metrics`` (read with prometheus_client's own parser),
``/health`` reports the database, the engine and the MLLP listener, and the Azure SDK runs a
documentation example through the same process and engine.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import twisted.test
from azure.core.credentials import AzureKeyCredential
from azure.healthinsights.radiologyinsights import RadiologyInsightsClient
from prometheus_client.parser import text_string_to_metric_families

from rest_harness import job_body, load_samples, sample_job

ROOT = Path(__file__).resolve().parents[3]
KEY = "serve-test-key"
WAIT = 120.0  # an upper bound for a slow machine, never a sleep

ORU = "\r".join([
    "MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115101500||ORU^R01^ORU_R01|SERVE1|P|2.5.1",
    "PID|1||MRN4242^^^HOSP^MR||TESTPATIENT^ROBIN||19700101|M",
    "PV1|1|E",
    "ORC|RE|PL4242|FL4242",
    "OBR|1|PL4242|FL4242|71045^XR CHEST 1 VIEW^CPT|||20240115100000|||||||||||ACC4242"
    "||||20240115101000|||F",
    "OBX|1|TX|18782-3^Study observation^LN||FINDINGS: Large right pneumothorax.||||||F",
    "OBX|2|TX|19005-8^Impression^LN||IMPRESSION: Large right pneumothorax.||||||F",
]) + "\r"


class Serve:
    """``python -m gateway.cli serve`` on free loopback ports, with the real engine."""

    def __init__(self, db: Path, *, open_files: int | None = None,
                 http: str = "tcp:0:interface=127.0.0.1") -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RI_GATEWAY_")}
        env.update(RI_GATEWAY_API_KEYS=KEY, RI_GATEWAY_ANALYSIS_WORKERS="1",
                   RI_GATEWAY_ANALYSIS_EXECUTOR="thread", PYTHONPATH=str(ROOT))

        def limit_open_files() -> None:  # in the child, before exec
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--db", str(db),
             "--mllp", "tcp:0:interface=127.0.0.1", "--http", http],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=limit_open_files)
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        deadline = time.monotonic() + WAIT
        while not ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                break
        if not ready.is_set():
            self.stop()
            raise AssertionError("gateway did not start:\n" + "".join(self.lines))

    def _read(self, ready: threading.Event) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                self.ports[event["service"]] = event["port"]
                if {"mllp", "http"} <= self.ports.keys():
                    ready.set()

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ports['http']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=WAIT) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def mllp(self, message: str) -> str:
        with socket.create_connection(("127.0.0.1", self.ports["mllp"]), timeout=WAIT) as sock:
            sock.sendall(b"\x0b" + message.encode() + b"\x1c\r")
            data = b""
            while not data.endswith(b"\x1c\r"):
                chunk = sock.recv(65536)
                assert chunk, "connection closed before the ACK"
                data += chunk
        return data[1:-2].decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=WAIT)


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator[Serve]:
    server = Serve(tmp_path_factory.mktemp("serve") / "audit.sqlite3")
    yield server
    server.stop()


def _until(condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {WAIT}s: {what}")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_health_reports_database_engine_and_listener(serve: Serve) -> None:
    status, body = _until(lambda: (lambda r: r if r[0] == 200 else None)(serve.get("/health")),
                          "/health passes once the engine is loaded")
    assert json.loads(body) == {"status": "pass", "checks": {
        "database": "pass", "engine": "pass", "message_store": "pass", "mllp_listener": "pass"}}


def test_an_mllp_message_moves_the_metrics(serve: Serve) -> None:
    ack = serve.mllp(ORU)
    assert ack.split("\r")[1].startswith("MSA|AA|SERVE1")

    def analysed():
        samples = _samples(serve.get("/metrics")[1])
        return samples if samples.get(("ri_gateway_analysis_seconds_count", ())) else None

    samples = _until(analysed, "the analysis shows in /metrics")
    assert samples[("ri_gateway_messages_total",
                    (("ack_code", "AA"), ("message_type", "ORU^R01")))] == 1
    assert samples[("ri_gateway_frames_total", ())] >= 1
    assert samples[("ri_gateway_connections_total", ())] >= 1
    assert samples[("ri_gateway_inferences_total", (("kind", "criticalResult"),))] >= 1


def test_the_sdk_runs_a_documentation_example_through_serve(serve: Serve) -> None:
    sample = next(s for s in load_samples() if s["name"] == "docs_critical_result")
    client = RadiologyInsightsClient(f"http://127.0.0.1:{serve.ports['http']}",
                                     AzureKeyCredential(KEY), polling_interval=0.05,
                                     retry_total=0)
    with client:
        result = client.begin_infer_radiology_insights("serve-critical", sample_job(sample)).result()
    kinds = [i.kind for i in result.patient_results[0].inferences]
    assert kinds and set(kinds) == {"criticalResult"}
    assert result.model_version


def test_idle_http_connections_cannot_starve_the_mllp_listener(tmp_path) -> None:
    # 256 descriptors: room for the gateway and its 100 REST connections, not for 300 more.
    server = Serve(tmp_path / "audit.sqlite3", open_files=256)
    idle: list[socket.socket] = []
    closed: list[socket.socket] = []

    def closed_by_gateway() -> int:
        readable, _, _ = select.select(idle, [], [], 0.1)
        for sock in readable:
            if sock.recv(1) == b"":
                idle.remove(sock)
                closed.append(sock)
        return len(closed) >= 200

    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", server.ports["http"]),
                                                 timeout=WAIT))
        ack = server.mllp(ORU.replace("SERVE1", "STARVE1"))
        assert ack.split("\r")[1].startswith("MSA|AA|STARVE1")
        # Those over [http] max_connections were closed by the gateway on arrival; the rest
        # stay open (for the 60-second idle timeout).
        _until(closed_by_gateway, "200 connections closed by the gateway")
        assert (len(closed), len(idle)) == (200, 100)
    finally:
        for sock in idle + closed:
            sock.close()
        server.stop()


# The test certificate names another host; the handshake, not the verification, is tested.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_sdk_runs_a_job_over_tls(tmp_path) -> None:
    # urllib3, under the SDK, offers ALPN; Twisted's TLS layer asks the factory it serves
    # which protocols it speaks, and one that named none failed every such handshake.
    pem = Path(twisted.test.__file__).with_name("server.pem")  # Twisted's own test key pair
    server = Serve(tmp_path / "audit.sqlite3",
                   http=f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}")
    try:
        client = RadiologyInsightsClient(
            f"https://127.0.0.1:{server.ports['http']}", AzureKeyCredential(KEY),
            polling_interval=0.05, retry_total=0, connection_verify=False)
        with client:
            result = client.begin_infer_radiology_insights(
                "over-tls", job_body("IMPRESSION: Large right pneumothorax.")).result()
        assert [i.kind for i in result.patient_results[0].inferences].count(
            "criticalResult") == 1
    finally:
        server.stop()
