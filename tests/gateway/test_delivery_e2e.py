"""What a downstream EHR receives from a real ``serve`` (fake engine) over loopback MLLP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway_process import GatewayProcess, exchange, run_cli
from test_pipeline_e2e import LoopbackPager

sys.path.insert(0, str(Path(__file__).parents[1] / "mllp"))
from test_mllp_loopback import make_self_signed_certificate  # noqa: E402

WAIT = 60.0


def arrived(peer: LoopbackPager, count: int, timeout: float = WAIT) -> list[bytes]:
    """The messages ``peer`` has read once it has ``count`` (or ``timeout`` is over)."""
    deadline = time.monotonic() + timeout
    while len(peer.payloads) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(peer.payloads)


def oru(control_id: str, text: str, status: str = "F", mrn: str = "MRN1",
        accession: str = "ACC1") -> bytes:
    return ("\r".join([
        f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115101500||ORU^R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19700101|F",
        f"ORC|RE|PL{accession}|FI{accession}",
        f"OBR|1|PL{accession}|FI{accession}|71045^XR CHEST^C4|||20240115100000|||||||||"
        f"1234^WELBY||{accession}|||||||{status}",
        f"OBX|1|TX|18782-3^Findings^LN||{text}||||||{status}",
    ]) + "\r").encode()


def obr_25(payload: bytes) -> str:
    obr = next(s for s in payload.split(b"\r") if s.startswith(b"OBR|"))
    return obr.split(b"|")[25].decode()


def test_a_correction_reaches_the_ehr_after_the_report_it_corrects(tmp_path):
    # Two workers: the correction was analysed while the report it corrects still ran,
    # recorded first, and so sent first; the EHR filed the original last and showed it.
    ehr = LoopbackPager()
    gate = tmp_path / "gate"
    gateway = GatewayProcess(
        tmp_path / "audit.sqlite3", RI_GATEWAY_ANALYSIS_WORKERS="2",
        RI_GATEWAY_DESTINATIONS_EHR_ENDPOINT=f"tcp:host=127.0.0.1:port={ehr.port}",
        RI_GATEWAY_ROUTES_RESULTS_DESTINATIONS="ehr").start()
    try:
        assert b"MSA|AA|ORIG1" in exchange(gateway.port, oru(
            "ORIG1", f"Large pneumothorax. WAITFOR:{gate};"))
        deadline = time.monotonic() + WAIT
        while not os.path.exists(f"{gate}.started") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"MSA|AA|CORR1" in exchange(gateway.port, oru(
            "CORR1", "Corrected: no pneumothorax.", status="C"))
        # Another patient's report does not wait for this one's.
        assert b"MSA|AA|OTHER1" in exchange(gateway.port, oru(
            "OTHER1", "No pneumothorax.", mrn="MRN2", accession="ACC2"))
        # Before the fix the correction, analysed before it by the same worker, came first.
        early = arrived(ehr, 1)
        gate.touch()
        delivered = arrived(ehr, 3)
    finally:
        gateway.stop()
        ehr.close()
    assert [b"PID|1||MRN2" in p for p in early] == [True]
    assert [obr_25(p) for p in delivered if b"PID|1||MRN1" in p] == ["F", "C"]


def tls_receiver(directory: Path) -> tuple[int, socket.socket]:
    """An EHR behind TLS on loopback (a certificate for 127.0.0.1 made here) that answers
    every message AA; its port and listening socket."""
    key, cert = make_self_signed_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))

    def connection(raw: socket.socket) -> None:
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                buffer = b""
                while chunk := conn.recv(65536):
                    buffer += chunk
                    while b"\x1c\r" in buffer:
                        frame, buffer = buffer.split(b"\x1c\r", 1)
                        control_id = frame.split(b"\r")[0].split(b"|")[9].decode()
                        conn.sendall(b"\x0bMSH|^~\\&|EHR|H|RIGW|RIGW|20240115||ACK|E1|P|2.5.1"
                                     b"\rMSA|AA|" + control_id.encode() + b"\r\x1c\r")
        except (OSError, ssl.SSLError):
            pass  # the gateway refused our certificate, or reset a connection

    def serve() -> None:
        while True:
            try:
                raw, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=connection, args=(raw,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], server


def test_a_tls_peer_whose_certificate_is_not_trusted_is_named_in_the_outbox(tmp_path):
    # The outbox said "connection lost before the reply arrived (Error)" for every TLS
    # failure: the interface analyst could not tell a certificate problem from a peer
    # that hung up.
    port, server = tls_receiver(tmp_path)
    trusted, other, foreign = tmp_path / "trusted", tmp_path / "other", tmp_path / "foreign"
    for directory in (trusted, other, foreign):
        directory.mkdir()
    shutil.copy(tmp_path / "server-cert.pem", trusted / "ca.pem")
    shutil.copy(make_self_signed_certificate(foreign)[1], other / "ca.pem")
    db = tmp_path / "audit.sqlite3"
    endpoint = f"tls:host=127.0.0.1:port={port}:trustRoots="
    gateway = GatewayProcess(
        db, RI_GATEWAY_DESTINATIONS_EHR_ENDPOINT=endpoint + str(trusted),
        RI_GATEWAY_DESTINATIONS_WRONG_ENDPOINT=endpoint + str(other),
        RI_GATEWAY_DESTINATIONS_WRONG_MAX_ATTEMPTS="1",
        # A certificate for 127.0.0.1, reached as localhost.
        RI_GATEWAY_DESTINATIONS_BYNAME_ENDPOINT=endpoint.replace("127.0.0.1", "localhost")
        + str(trusted),
        RI_GATEWAY_DESTINATIONS_BYNAME_MAX_ATTEMPTS="1",
        RI_GATEWAY_ROUTES_RESULTS_DESTINATIONS="ehr,wrong,byname").start()
    try:
        assert b"MSA|AA|TLS1" in exchange(gateway.port, oru("TLS1", "Large pneumothorax."))
        rows = outbox_rows(db, 3)
    finally:
        gateway.stop()
        server.close()
    status = {r["destination"]: (r["status"], r["last_error"]) for r in rows}
    assert status["ehr"] == ("delivered", None)
    assert status["wrong"][0] == "dead"
    assert "certificate verify failed" in status["wrong"][1]
    assert status["byname"][0] == "dead"
    assert "DNSMismatch" in status["byname"][1] and "localhost" in status["byname"][1]


def test_a_stop_does_not_wait_for_a_tls_peer_that_never_answers_the_handshake(tmp_path):
    # The worker closed its connection cleanly at the stop, and TLS keeps a clean close
    # open until the handshake is over: the gateway exited only at the ACK timeout.
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    gateway = GatewayProcess(
        tmp_path / "audit.sqlite3",
        RI_GATEWAY_DESTINATIONS_EHR_ENDPOINT=f"tls:host=127.0.0.1:port={server.getsockname()[1]}",
        RI_GATEWAY_DESTINATIONS_EHR_ACK_TIMEOUT="120",
        RI_GATEWAY_ROUTES_RESULTS_DESTINATIONS="ehr").start()
    try:
        assert b"MSA|AA|HUSH1" in exchange(gateway.port, oru("HUSH1", "Large pneumothorax."))
        server.settimeout(WAIT)
        conn, _ = server.accept()
        accepted.append(conn)
        conn.settimeout(WAIT)
        # The TLS client hello: the message is written (into TLS) by then.
        assert conn.recv(1)
        started = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        try:
            code = gateway.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        waited = time.monotonic() - started
    finally:
        if gateway.proc.poll() is None:
            gateway.kill()
        for conn in accepted:
            conn.close()
        server.close()
    assert code == 0 and waited < 20


def outbox_rows(db: Path, count: int) -> list[dict]:
    """The outbox rows once there are ``count``, none of them pending (or ``WAIT`` is over)."""
    deadline = time.monotonic() + WAIT
    while True:
        rows = [json.loads(line) for line in run_cli(
            "outbox", "list", "--json", "--db", str(db)).stdout.splitlines()]
        done = len(rows) == count and all(r["status"] != "pending" for r in rows)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_an_ack_ending_with_fs_alone_is_named_when_it_times_out(tmp_path):
    # The EHR answered every message, with frames ending in FS and no CR: the outbox said
    # only "no ACK within 1 s", as if the peer had sent nothing.
    ehr = LoopbackPager(trailer=b"\x1c")
    db = tmp_path / "audit.sqlite3"
    gateway = GatewayProcess(
        db, RI_GATEWAY_DESTINATIONS_EHR_ENDPOINT=f"tcp:host=127.0.0.1:port={ehr.port}",
        RI_GATEWAY_DESTINATIONS_EHR_ACK_TIMEOUT="1", RI_GATEWAY_DESTINATIONS_EHR_MAX_ATTEMPTS="1",
        RI_GATEWAY_ROUTES_RESULTS_DESTINATIONS="ehr").start()
    try:
        assert b"MSA|AA|FS1" in exchange(gateway.port, oru("FS1", "Large pneumothorax."))
        (row,) = outbox_rows(db, 1)
    finally:
        gateway.stop()
        ehr.close()
    assert row["status"] == "dead" and row["last_error"].startswith("no ACK within 1 s (")
    assert "ended with FS and no CR" in row["last_error"] and "lenient_end" in row["last_error"]
