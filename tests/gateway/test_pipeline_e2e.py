"""End to end on loopback: ``ri-gateway serve``, two ``ri-gateway sink``s, ``ri-gateway send``.

Every process is the real command line; the test only waits for files and the audit log
to show what it expects (polling, with a generous deadline; nothing asserts a duration).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import hl7
import pytest

from gateway_process import exchange

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0

CRITICAL_TEXT = ["FINDINGS: Large right pneumothorax with mediastinal shift.",
                 "IMPRESSION: Large right pneumothorax."]
NEGATIVE_TEXT = ["FINDINGS: The lungs are clear. No pneumothorax.",
                 "IMPRESSION: No acute cardiopulmonary abnormality."]
# Alerts on BI-RADS 4-5 by configuration (alert_on = ["scores"]).
BIRADS5_TEXT = ["FINDINGS: Irregular spiculated mass in the right breast at 10 o'clock.",
                "IMPRESSION: BI-RADS 5: Highly suggestive of malignancy."]


def oru(control_id: str, accession: str, mrn: str, lines: list[str]) -> str:
    segments = [
        f"MSH|^~\\&|RIS|GENHOSP|RIGW|GENHOSP|20240115101500||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^GENHOSP^MR||TESTPATIENT^ALEX||19700101|M",
        "PV1|1|E|ED^01^01",
        f"ORC|RE|PL-{accession}|{accession}",
        f"OBR|1|PL-{accession}|{accession}|71045^XR CHEST 1 VIEW^C4|||20240115100000|||||||||"
        f"1234^ORDERING^OLIVIA^^^DR||{accession}|||||||F|||||||5678&READER&RANDALL",
    ]
    for n, line in enumerate(lines, start=1):
        segments.append(f"OBX|{n}|TX|18782-3^Radiology Study observation^LN||{line}||||||F")
    return "\r".join(segments) + "\r"


_given_ports: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this run: the kernel may give the
    same free port twice, and a gateway told to listen where a sink of its own test already
    listens cannot start (while the test, talking to the sink, took it for the gateway)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def wait_for(what: str, check: Callable[[], object]) -> object:
    deadline = time.monotonic() + DEADLINE
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _listening(log: Path, start: int, port: int) -> bool:
    """Whether ``serve`` logged, after byte ``start`` of its log, its MLLP listener
    listening on ``port``."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        if '"listening"' in line:
            event = json.loads(line)
            if (event.get("event"), event.get("service"), event.get("port")) == (
                    "listening", "mllp", port):
                return True
    return False


class Rig:
    """The processes of one scenario, all killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = str(tmp / "audit.sqlite3")
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env = {k: v for k, v in self.env.items() if not k.startswith("RI_GATEWAY_")}

    def cli(self, *args: str, log: str | None = None) -> subprocess.Popen:
        out = open(self.tmp / log, "ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT,
                                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=DEADLINE)

    def sink(self, name: str, port: int) -> subprocess.Popen:
        proc = self.cli("sink", "--port", str(port), "--out", str(self.tmp / f"{name}.hl7"),
                        log=f"{name}.log")
        wait_for(f"sink {name} listening", lambda: port_open(port))
        return proc

    def received(self, name: str) -> list[list[str]]:
        path = self.tmp / f"{name}.hl7"
        if not path.exists():
            return []
        blocks = path.read_text(encoding="utf-8").split("\n\n")
        return [b.split("\n") for b in blocks if b.strip()]

    def serve(self, config: str, mllp_port: int) -> subprocess.Popen:
        path = self.tmp / "gateway.toml"
        path.write_text(config)
        log = self.tmp / "serve.log"
        start = log.stat().st_size if log.exists() else 0  # a restart appends to the log
        proc = self.cli("serve", "--config", str(path), "--db", self.db,
                        "--mllp", f"tcp:{mllp_port}:interface=127.0.0.1", log="serve.log")
        # Its own word that it listens, not an open port: another process may hold it.
        wait_for("the gateway listening",
                 lambda: _listening(log, start, mllp_port) or proc.poll() is not None)
        assert proc.poll() is None, log.read_text()
        return proc

    def send(self, mllp_port: int, name: str, message: str) -> subprocess.CompletedProcess:
        path = self.tmp / f"{name}.hl7in"
        path.write_text(message)
        return self.run("send", "--port", str(mllp_port), str(path))

    def audit(self, control_id: str) -> list[dict]:
        result = self.run("audit", "show", control_id, "--db", self.db)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def events(self, control_id: str, *names: str) -> list[dict]:
        return [e for e in self.audit(control_id) if e["event"] in names]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


# One analysis thread, no REST API: the part of every configuration below that is not routing.
BASE = """
[analysis]
workers = 1
executor = "thread"

[http]
enabled = false
"""


def config(pager: int, ehr: int) -> str:
    return BASE + f"""
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port={pager}"
receiving_application = "PAGER"
ack_timeout = 10.0
backoff_initial = 0.2
backoff_max = 1.0
max_attempts = 1000

[destinations.ehr]
endpoint = "tcp:host=127.0.0.1:port={ehr}"
receiving_application = "EHR"
ack_timeout = 10.0
backoff_initial = 0.2
backoff_max = 1.0

[routes.results-to-ehr]
type = "results"
destinations = ["ehr"]

[routes.critical-to-pager]
type = "alerts"
destinations = ["pager"]
alert_on = ["critical", "scores"]
"""


def obx(message: list[str]) -> list[list[str]]:
    return [s.split("|") for s in message if s.startswith("OBX|")]


def test_critical_report_pages_once_and_the_ehr_gets_every_inference(rig):
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("pager", pager)
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr), mllp)

    sent = rig.send(mllp, "crit", oru("CRIT0001", "ACC1001", "MRN5001", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the alert and the result", lambda: rig.received("pager") and rig.received("ehr"))
    wait_for("both deliveries audited",
             lambda: len(rig.events("CRIT0001", "delivered")) == 2)

    (alert,) = rig.received("pager")
    assert alert[0].split("|")[4] == "PAGER"
    assert [s for s in alert if s.startswith("PID|")][0].split("|")[3].startswith("MRN5001")
    obr = [s for s in alert if s.startswith("OBR|")][0].split("|")
    assert (obr[3], obr[16].split("^")[0], obr[32].split("&")[0]) == ("ACC1001", "1234", "5678")
    rows = obx(alert)
    assert rows[0][3] == "RI-CRIT^Critical result^RIGW" and rows[0][8] == "AA"
    assert "PNEUMOTHORAX" in rows[0][5].upper()
    assert {r[3] for r in rows} <= {"RI-CRIT^Critical result^RIGW", "RI-SIDE^Laterality^RIGW",
                                   "RI-ANAT^Anatomy^RIGW", "RI-SIZE^Size^RIGW",
                                   "RI-EVID^Evidence^RIGW", "RI-SRC^Source observation^RIGW"}
    # Evidence is asked for by default: the pager sees the words and the source OBX.
    evidence = [r for r in rows if r[3] == "RI-EVID^Evidence^RIGW"]
    assert evidence and "pneumothorax" in evidence[0][5].lower()
    assert any(r[3] == "RI-SRC^Source observation^RIGW" for r in rows)

    (result,) = rig.received("ehr")
    inference_rows = [r for r in obx(result) if r[3].split("^")[0] in ("RI-FIND", "RI-CRIT")]
    stored = [e for e in rig.audit("CRIT0001") if e["event"] == "inference"]
    main_rows = {r[4] for r in obx(result)}  # one OBX-4 group per inference
    assert len(main_rows) == len(stored) and inference_rows
    assert [s for s in result if s.startswith("OBR|")][0].split("|")[3] == "ACC1001"

    steps = [e["event"] for e in rig.audit("CRIT0001")]
    for step in ("received", "analysed", "enqueued", "delivered"):
        assert step in steps, steps
    assert sorted(e["destination"] for e in rig.events("CRIT0001", "delivered")) == ["ehr", "pager"]

    sent = rig.send(mllp, "neg", oru("NEG0001", "ACC1002", "MRN5002", NEGATIVE_TEXT))
    assert sent.returncode == 0
    wait_for("the negative result delivered", lambda: rig.events("NEG0001", "delivered"))
    assert [e["destination"] for e in rig.events("NEG0001", "enqueued", "delivered")] == ["ehr", "ehr"]
    assert len(rig.received("pager")) == 1 and len(rig.received("ehr")) == 2


def alert_accessions(rig: Rig) -> list[str]:
    return [[s for s in m if s.startswith("OBR|")][0].split("|")[3] for m in rig.received("pager")]


def test_pager_outage_then_recovery_delivers_every_alert_once_in_order(rig):
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr), mllp)
    ids = [f"OUT{n:04d}" for n in range(1, 5)]
    for n, cid in enumerate(ids, start=1):
        assert rig.send(mllp, cid, oru(cid, f"ACC20{n:02d}", f"MRN60{n:02d}", BIRADS5_TEXT)).returncode == 0
    wait_for("pager deliveries failing",
             lambda: all(rig.events(cid, "delivery_failed") for cid in ids[:1]))
    rig.sink("pager", pager)
    wait_for("four alerts", lambda: len(rig.received("pager")) >= 4)
    wait_for("all delivered", lambda: all(
        [e for e in rig.events(cid, "delivered") if e["destination"] == "pager"] for cid in ids))
    assert alert_accessions(rig) == ["ACC2001", "ACC2002", "ACC2003", "ACC2004"]


def test_sigkill_with_undelivered_alerts_loses_none(rig):
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("ehr", ehr)
    gateway = rig.serve(config(pager, ehr), mllp)
    ids = [f"KIL{n:04d}" for n in range(1, 4)]
    for n, cid in enumerate(ids, start=1):
        assert rig.send(mllp, cid, oru(cid, f"ACC30{n:02d}", f"MRN70{n:02d}", BIRADS5_TEXT)).returncode == 0
    wait_for("alerts queued", lambda: all(
        [e for e in rig.events(cid, "enqueued") if e["destination"] == "pager"] for cid in ids))
    gateway.send_signal(signal.SIGKILL)
    gateway.wait(timeout=20)

    rig.sink("pager", pager)
    rig.serve(config(pager, ehr), mllp)
    wait_for("three alerts after the restart", lambda: len(rig.received("pager")) >= 3)
    wait_for("all delivered", lambda: all(
        [e for e in rig.events(cid, "delivered") if e["destination"] == "pager"] for cid in ids))
    assert alert_accessions(rig) == ["ACC3001", "ACC3002", "ACC3003"]


def test_application_ack_declares_the_charset_it_is_encoded_in(rig):
    # The sender writes 8859/1 and asks for application ACKs (MSH-15/16 AL). The ACK
    # echoes its MSH-4 into MSH-6; it was encoded in UTF-8 while MSH-18 still said 8859/1,
    # so the return route read "HÃ\x94PITAL" and could not route it back by MSH-6.
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr).replace(
        "[destinations.pager]", '[outbound]\napplication_ack_destination = "ehr"\n\n[destinations.pager]'),
        mllp)
    message = oru("APP0001", "ACC4001", "MRN8001", NEGATIVE_TEXT)
    message = message.replace("|RIS|GENHOSP|", "|RIS|HÔPITAL|", 1).replace(
        "|P|2.5.1\r", "|P|2.5.1|||AL|AL||8859/1\r", 1)
    path = rig.tmp / "latin1.hl7in"
    path.write_bytes(message.encode("latin-1"))
    sent = rig.run("send", "--port", str(mllp), str(path))
    assert sent.returncode == 0, sent.stdout + sent.stderr

    def app_ack():
        return [m for m in rig.received("ehr") if m[0].split("|")[8].startswith("ACK")]

    (ack,) = wait_for("the application ACK", app_ack)
    msh = ack[0].split("|")
    assert (msh[4], msh[5], msh[17]) == ("RIS", "HÔPITAL", "UNICODE UTF-8")
    assert ack[1] == "MSA|AA|APP0001"


def test_two_alert_routes_to_one_pager_send_one_alert_with_both(rig):
    # One route pages critical results, another BI-RADS 4-5, both to the pager. A report
    # with both paged once, as documented, but with the critical result only: the BI-RADS 5
    # the second route alerts on never reached the pager.
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("pager", pager)
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr).replace('alert_on = ["critical", "scores"]', 'alert_on = ["critical"]')
              + '\n[routes.scores-to-pager]\ntype = "alerts"\ndestinations = ["pager"]\n'
                'alert_on = ["scores"]\n', mllp)
    text = ["FINDINGS: Large right pneumothorax. Irregular spiculated mass in the right breast.",
            "IMPRESSION: Large right pneumothorax. BI-RADS 5: Highly suggestive of malignancy."]
    assert rig.send(mllp, "both", oru("TWO0001", "ACC5001", "MRN9001", text)).returncode == 0
    wait_for("both deliveries audited", lambda: len(rig.events("TWO0001", "delivered")) == 2)

    (alert,) = rig.received("pager")
    kinds = [r[3].split("^")[0] for r in obx(alert)]
    assert "RI-CRIT" in kinds and "RI-SCORE" in kinds, kinds
    assert [e["route"] for e in rig.events("TWO0001", "enqueued")
            if e["destination"] == "pager"] == ["critical-to-pager"]


def test_an_endpoint_that_fails_before_connecting_is_a_failed_attempt(rig):
    # A TLS destination whose caCertsDir disappears after start: building the endpoint
    # raises at once. That ended the delivery loop as a "database error" every second:
    # the alert stayed pending with no attempt, no audit event and no last_error, for ever.
    cadir = rig.tmp / "cadir"
    cadir.mkdir()
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.serve(config(pager, ehr).replace(
        f'"tcp:host=127.0.0.1:port={pager}"', f'"ssl:host=127.0.0.1:port={pager}:hostname=127.0.0.1:caCertsDir={cadir}"'
    ).replace("max_attempts = 1000", "max_attempts = 2"), mllp)
    cadir.rmdir()
    assert rig.send(mllp, "crit", oru("TLS0001", "ACC6001", "MRN9101", CRITICAL_TEXT)).returncode == 0
    wait_for("the alert dead-lettered", lambda: [
        e for e in rig.events("TLS0001", "dead_lettered") if e["destination"] == "pager"])
    failed = [e for e in rig.events("TLS0001", "delivery_failed") if e["destination"] == "pager"]
    assert [e["attempt"] for e in failed] == [1, 2]
    assert all(e["error"] == "UnlistableError" for e in failed), failed
    listed = rig.run("outbox", "list", "--db", rig.db, "--json", "--destination", "pager")
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["status"], row["attempts"], row["last_error"]) == ("dead", 2, "UnlistableError")


class LoopbackPager:
    """A peer on loopback that records the MSH-10 of every message it reads and answers
    AA, except that it closes the connection without answering on message number
    ``hang_up_on`` (1-based), answers nothing at all when ``silent``, and, as HL7 has
    receivers do, answers an acknowledgement (MSH-9 ACK) only when its MSH-15 is AL.
    ``trailer`` ends its frames (FS alone for a system that leaves out the CR)."""

    def __init__(self, hang_up_on: int = 0, silent: bool = False,
                 trailer: bytes = b"\x1c\r") -> None:
        self.hang_up_on = hang_up_on
        self.trailer = trailer
        self.silent = silent
        self.received: list[str] = []
        self.payloads: list[bytes] = []  # each message as read, in order
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        with conn, contextlib.suppress(OSError):  # the gateway resets a connection it gave up on
            while chunk := conn.recv(65536):
                buffer += chunk
                while b"\x1c\r" in buffer:
                    frame, buffer = buffer.split(b"\x1c\r", 1)
                    msh = frame.lstrip(b"\x0b").split(b"\r")[0].split(b"|")
                    control_id = msh[9].decode()
                    self.payloads.append(frame.lstrip(b"\x0b"))
                    self.received.append(control_id)
                    if len(self.received) == self.hang_up_on:
                        return
                    if self.silent or (msh[8].startswith(b"ACK") and msh[14:15] != [b"AL"]):
                        continue
                    ack = (f"MSH|^~\\&|PAGER|H|RIGW|RIGW|20240115101600||ACK^R01^ACK|P{len(self.received)}"
                           f"|P|2.5.1\rMSA|AA|{control_id}\r")
                    conn.sendall(b"\x0b" + ack.encode() + self.trailer)

    def close(self) -> None:
        self.server.close()


def test_a_send_on_a_kept_connection_that_is_lost_is_an_audited_attempt(rig):
    # The connection kept after the first alert is lost after the second alert was
    # written to it. That send was taken for an idle connection closed by the peer: the
    # alert went out again at once and the audit showed one attempt for two sends.
    pager = LoopbackPager(hang_up_on=2)
    ehr, mllp = free_port(), free_port()
    rig.sink("ehr", ehr)
    rig.serve(config(pager.port, ehr), mllp)
    try:
        for n, cid in enumerate(["KEEP0001", "KEEP0002"], start=1):
            assert rig.send(mllp, cid, oru(cid, f"ACC70{n:02d}", f"MRN71{n:02d}", CRITICAL_TEXT)).returncode == 0
            wait_for(f"{cid} delivered to the pager", lambda cid=cid: [
                e for e in rig.events(cid, "delivered") if e["destination"] == "pager"])
    finally:
        pager.close()
    (second,) = [e for e in rig.events("KEEP0002", "enqueued") if e["destination"] == "pager"]
    assert pager.received.count(second["outbound_control_id"]) == 2
    pager_events = [(e["event"], e.get("attempt")) for e in rig.events("KEEP0002", "delivery_failed", "delivered")
                    if e["destination"] == "pager"]
    assert pager_events == [("delivery_failed", 1), ("delivered", 2)]


def test_sigterm_with_a_delivery_in_flight_audits_the_attempt_and_resumes(rig):
    # The alert was written to the pager, which had not answered when the gateway was
    # stopped: the attempt left no trace (no event, attempts 0), yet the pager may have
    # read it and got it again after the restart.
    pager = LoopbackPager(silent=True)
    ehr, mllp = free_port(), free_port()
    rig.sink("ehr", ehr)
    gateway = rig.serve(config(pager.port, ehr), mllp)
    try:
        assert rig.send(mllp, "crit", oru("STOP0001", "ACC8001", "MRN8101", CRITICAL_TEXT)).returncode == 0
        wait_for("the alert read by the pager", lambda: pager.received)
        gateway.terminate()
        assert gateway.wait(timeout=DEADLINE) == 0
    finally:
        pager.close()
    (failed,) = [e for e in rig.events("STOP0001", "delivery_failed") if e["destination"] == "pager"]
    assert (failed["attempt"], failed["error"]) == (1, "gateway stopped before the ACK")
    listed = rig.run("outbox", "list", "--db", rig.db, "--json", "--destination", "pager")
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["status"], row["attempts"]) == ("pending", 1)

    rig.sink("pager", pager.port)
    rig.serve(config(pager.port, ehr), mllp)
    wait_for("the alert delivered after the restart", lambda: [
        e for e in rig.events("STOP0001", "delivered") if e["destination"] == "pager"])
    assert len(rig.received("pager")) == 1


def test_a_destination_retried_past_a_thousand_attempts_is_still_dead_lettered(rig):
    # backoff_multiplier ** (attempt - 1) overflowed a float from attempt 1025 on: each
    # failed attempt after that raised in the backoff, was logged as a database error and
    # was never recorded, so a generous max_attempts (retry for days) never dead-lettered
    # and the audit stopped at attempt 1024.
    pager, ehr, mllp = free_port(), free_port(), free_port()  # nothing listens on pager
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr).replace(
        "backoff_initial = 0.2\nbackoff_max = 1.0\nmax_attempts = 1000",
        "backoff_initial = 0.001\nbackoff_max = 0.001\njitter = 0.0\nmax_attempts = 1030"), mllp)
    assert rig.send(mllp, "crit", oru("MANY0001", "ACC9001", "MRN9201", CRITICAL_TEXT)).returncode == 0

    def pager_row():
        listed = rig.run("outbox", "list", "--db", rig.db, "--json", "--destination", "pager")
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        return rows[0] if rows and rows[0]["status"] == "dead" else None

    row = wait_for("the alert dead-lettered", pager_row)
    assert row["attempts"] == 1030 and row["last_error"].startswith("ConnectionRefusedError")


def test_pending_messages_of_a_destination_no_longer_configured_are_logged_at_start(rig):
    # Renaming or removing a destination left its queued alerts waiting with no worker, no
    # metric and no log line: nothing said they would never leave.
    pager, ehr, mllp = free_port(), free_port(), free_port()  # the pager is down
    rig.sink("ehr", ehr)
    gateway = rig.serve(config(pager, ehr), mllp)
    assert rig.send(mllp, "crit", oru("GONE0001", "ACC9301", "MRN9301", CRITICAL_TEXT)).returncode == 0
    wait_for("the alert failing", lambda: [
        e for e in rig.events("GONE0001", "delivery_failed") if e["destination"] == "pager"])
    gateway.terminate()
    assert gateway.wait(timeout=DEADLINE) == 0

    def warned(count: int) -> list[dict]:
        lines = (rig.tmp / "serve.log").read_text().splitlines()
        events = [json.loads(line) for line in lines if "outbox.unknown_destination" in line]
        return events if len(events) >= count else []

    renamed = config(pager, ehr).replace("[destinations.pager]", "[destinations.pager2]").replace(
        'destinations = ["pager"]', 'destinations = ["pager2"]')
    gateway = rig.serve(renamed, mllp)
    (event,) = wait_for("the warning", lambda: warned(1))
    assert (event["destination"], event["pending"], event["level"]) == ("pager", 1, "warning")
    gateway.terminate()
    assert gateway.wait(timeout=DEADLINE) == 0

    rig.serve(BASE, mllp)  # no destination at all
    assert [e["destination"] for e in wait_for("the warning again", lambda: warned(2))] == ["pager"] * 2


def test_a_result_routed_back_to_the_gateway_does_not_page_again(rig):
    # An interface engine that routes every ORU to the gateway sends it its own results
    # too (here the EHR destination is the gateway itself). Each came back as a new ORU
    # whose evidence OBX still held "Large right pneumothorax": analysed, it paged again
    # and sent another result, which came back in turn: one report, a page every few
    # seconds.
    pager, mllp = free_port(), free_port()
    rig.sink("pager", pager)
    rig.serve(config(pager, mllp), mllp)  # the "ehr" destination is the gateway's listener
    assert rig.send(mllp, "crit", oru("LOOP0001", "ACC9401", "MRN9401", CRITICAL_TEXT)).returncode == 0
    (result,) = wait_for("the result enqueued", lambda: [
        e for e in rig.events("LOOP0001", "enqueued") if e["destination"] == "ehr"])
    echoed = result["outbound_control_id"]
    (skipped,) = wait_for("the result received back and not routed",
                          lambda: rig.events(echoed, "outbound_skipped"))
    assert skipped["reason"] == "own message"
    steps = [e["event"] for e in rig.audit(echoed)]
    assert "analysed" in steps and "enqueued" not in steps, steps
    wait_for("the one alert", lambda: rig.received("pager"))
    assert len(rig.received("pager")) == 1


def test_a_line_break_inside_a_copied_field_keeps_the_rest_of_the_segment(rig):
    # Segments end with CR; a free-text field holds a line feed (OBR-13 relevant clinical
    # information, a PID-11 address). The gateway reads it as part of the field, but the
    # outbound copy split segments at LF too: the OBR sent on was cut at OBR-13, without
    # OBR-16, the accession in OBR-18, OBR-25 and OBR-32, and the PID without PID-11 on.
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("pager", pager)
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr), mllp)
    message = oru("WRAP0001", "ACC9501", "MRN9501", CRITICAL_TEXT).replace(
        "||19700101|M\r", "||19700101|M|||1 MAIN ST\nAPT 2^^TOWN\r", 1).replace(
        "|||20240115100000|||||||||", "|||20240115100000||||||History: chest pain\nshort of breath|||", 1)
    ack = exchange(mllp, message.encode())
    assert ack is not None and b"MSA|AA|WRAP0001" in ack
    wait_for("the result and the alert", lambda: rig.received("ehr") and rig.received("pager"))
    for name in ("ehr", "pager"):
        (sent,) = rig.received(name)
        pid = [s for s in sent if s.startswith("PID|")][0].split("|")
        obr = [s for s in sent if s.startswith("OBR|")][0].split("|")
        assert pid[11] == "1 MAIN ST APT 2^^TOWN", sent
        assert (obr[13], obr[16].split("^")[0], obr[18], obr[25], obr[32].split("&")[0]) == (
            "History: chest pain short of breath", "1234", "ACC9501", "F", "5678"), sent


def serve_with_pager_and_ehr(rig: Rig, extra_config: str = "") -> int:
    """A pager and an EHR sink, and the gateway routing to them; its MLLP port."""
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("pager", pager)
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr) + extra_config, mllp)
    return mllp


def test_a_control_character_in_a_copied_field_is_escaped_so_the_alert_can_be_framed(rig):
    # MLLP ends a frame only at FS CR, so a lone FS inside a field reaches the gateway as
    # data and the message is accepted. Copied as is into the result and the alert, it made
    # them impossible to frame: every attempt failed (InvalidPayload) until the critical
    # alert was dead-lettered, and no one was paged.
    mllp = serve_with_pager_and_ehr(rig)
    message = oru("CTRL0001", "ACC9601", "MRN9601", CRITICAL_TEXT).replace(
        "|TESTPATIENT^ALEX|", "|TEST\x1cPATIENT^ALEX\x01|", 1)
    ack = exchange(mllp, message.encode())
    assert ack is not None and b"MSA|AA|CTRL0001" in ack
    outcomes = wait_for("both messages delivered or failed", lambda: (
        rig.events("CTRL0001", "delivery_failed")
        or len(rig.events("CTRL0001", "delivered")) == 2 and rig.events("CTRL0001", "delivered")))
    assert all(e["event"] == "delivered" for e in outcomes), outcomes
    for name in ("ehr", "pager"):
        (sent,) = rig.received(name)
        pid = [s for s in sent if s.startswith("PID|")][0]
        assert pid.split("|")[5] == "TEST\\X1C\\PATIENT^ALEX\\X01\\", sent
        assert str(hl7.parse("\r".join(sent)).segment("PID")[5][0][0]) == "TEST\\X1C\\PATIENT"


@pytest.mark.parametrize("version", ["2.7", "2.8.2"])
def test_results_and_alerts_validate_against_the_later_version_they_declare(rig, version):
    # Written to v2.5.1, declared as [outbound] version: the copied PID/ORC/OBR kept fields
    # that v2.7 withdrew (PID-19 SSN, ORC-7 quantity/timing, OBR-5 priority, OBR-6 requested
    # date/time), and the messages failed strict validation of the version in their MSH-12.
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_segment

    mllp = serve_with_pager_and_ehr(rig, f'\n[outbound]\nversion = "{version}"\n')
    message = oru("VERS0001", "ACC9701", "MRN9701", CRITICAL_TEXT).replace(
        "||19700101|M\r", "||19700101|M|||||||||||123-45-6789\r", 1).replace(
        "ORC|RE|PL-ACC9701|ACC9701", "ORC|RE|PL-ACC9701|ACC9701||CM||^^^^^S", 1).replace(
        "^XR CHEST 1 VIEW^C4|||2", "^XR CHEST 1 VIEW^C4|S|20240115095500|2", 1)
    ack = exchange(mllp, message.encode())
    assert ack is not None and b"MSA|AA|VERS0001" in ack
    wait_for("the result and the alert", lambda: rig.received("ehr") and rig.received("pager"))
    for name in ("ehr", "pager"):
        (sent,) = rig.received(name)
        assert sent[0].split("|")[11] == version
        # Segment by segment: hl7apy's v2.8 ORU_R01 refuses any ORC (its group table),
        # which says nothing about the fields.
        for segment in sent[1:]:
            if segment:
                assert parse_segment(segment, version=version,
                                     validation_level=VALIDATION_LEVEL.STRICT).validate()
        obr = [s for s in sent if s.startswith("OBR|")][0].split("|")
        pid = [s for s in sent if s.startswith("PID|")][0].split("|")
        # What the version keeps is still copied: order numbers, accession, times, people.
        assert (obr[2], obr[3], obr[5], obr[6], obr[7], obr[18]) == (
            "PL-ACC9701", "ACC9701", "", "", "20240115100000", "ACC9701"), sent
        assert pid[3].startswith("MRN9701") and pid[19:] in ([], [""]), sent


def test_one_report_filed_under_two_orders_pages_once_and_results_each_order(rig):
    # A CT of the chest and one of the abdomen read together: one report, its text under
    # each OBR. Each order group is analysed and gets its result, but the pager was paged
    # once per order group with the same finding, alike but for the OBR.
    mllp = serve_with_pager_and_ehr(rig)
    single = oru("TWIN0001", "ACC9801", "MRN9801", CRITICAL_TEXT).split("\r")
    second = [s.replace("ACC9801", "ACC9802").replace("71045^XR CHEST 1 VIEW", "74176^CT ABD")
              for s in single if s.startswith(("ORC|", "OBR|", "OBX|"))]
    ack = exchange(mllp, "\r".join(single[:-1] + second).encode() + b"\r")
    assert ack is not None and b"MSA|AA|TWIN0001" in ack
    wait_for("both order groups analysed and routed", lambda: len(
        [e for e in rig.events("TWIN0001", "enqueued") if e["destination"] == "ehr"]) == 2)
    enqueued = rig.events("TWIN0001", "enqueued")
    assert sorted(e["destination"] for e in enqueued) == ["ehr", "ehr", "pager"], enqueued
    wait_for("the results and the alert", lambda: len(rig.received("ehr")) == 2
             and rig.received("pager"))
    assert [[s for s in m if s.startswith("OBR|")][0].split("|")[3]
            for m in rig.received("ehr")] == ["ACC9801", "ACC9802"]
    (alert,) = rig.received("pager")
    assert any(row[8] == "AA" for row in obx(alert))


def test_the_same_finding_for_two_patients_of_one_message_pages_each(rig):
    # Alerts alike but for the order are sent once; alike but for the patient, never.
    mllp = serve_with_pager_and_ehr(rig)
    single = oru("PAIR0001", "ACC9901", "MRN9901", CRITICAL_TEXT).split("\r")
    second = [s.replace("ACC9901", "ACC9902").replace("MRN9901", "MRN9902")
              for s in single if s.startswith(("PID|", "PV1|", "ORC|", "OBR|", "OBX|"))]
    ack = exchange(mllp, "\r".join(single[:-1] + second).encode() + b"\r")
    assert ack is not None and b"MSA|AA|PAIR0001" in ack
    wait_for("two alerts", lambda: len(rig.received("pager")) == 2)
    assert [[s for s in m if s.startswith("PID|")][0].split("|")[3].split("^")[0]
            for m in rig.received("pager")] == ["MRN9901", "MRN9902"]


def test_an_application_ack_asks_the_return_route_for_the_accept_ack_it_waits_for(rig):
    # HL7 receivers do not acknowledge an acknowledgement unless its MSH-15 asks them to.
    # The application ACK asked for nothing while the outbox waited for an answer: each
    # ack_timeout the sender got the same application ACK again, until it was dead-lettered.
    ris = LoopbackPager()
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr).replace("[destinations.pager]", f"""[outbound]
application_ack_destination = "ris"

[destinations.ris]
endpoint = "tcp:host=127.0.0.1:port={ris.port}"
ack_timeout = 2.0
backoff_initial = 0.2
max_attempts = 3

[destinations.pager]"""), mllp)
    try:
        message = oru("ENH0001", "ACC9601", "MRN9601", NEGATIVE_TEXT).replace(
            "|P|2.5.1\r", "|P|2.5.1|||AL|AL\r", 1)
        assert rig.send(mllp, "enhanced", message).returncode == 0
        (delivered,) = wait_for("the application ACK delivered", lambda: [
            e for e in rig.events("ENH0001", "delivered", "dead_lettered") if e["destination"] == "ris"])
    finally:
        ris.close()
    assert (delivered["event"], delivered.get("attempt")) == ("delivered", 1)
    assert ris.received == [delivered["outbound_control_id"]]


def test_destinations_and_routes_set_from_the_environment(rig):
    # RI_GATEWAY_DESTINATIONS_<NAME>_<KEY> stopped the gateway ("destinations.pager_endpoint:
    # must be a table"). Here the file's pager (its name in mixed case, with underscores) is
    # pointed at the sink from the environment, and the EHR and both routes exist only there.
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("pager", pager)
    rig.sink("ehr", ehr)
    rig.env.update({
        "RI_GATEWAY_DESTINATIONS_ON_CALL_PAGER_ENDPOINT": f"tcp:host=127.0.0.1:port={pager}",
        "RI_GATEWAY_DESTINATIONS_ON_CALL_PAGER_RECEIVING_APPLICATION": "PAGER",
        "RI_GATEWAY_DESTINATIONS_EHR_ENDPOINT": f"tcp:host=127.0.0.1:port={ehr}",
        "RI_GATEWAY_DESTINATIONS_EHR_BACKOFF_INITIAL": "0.2",
        "RI_GATEWAY_DESTINATIONS_EHR_MAX_ATTEMPTS": "1000",
        "RI_GATEWAY_ROUTES_CRITICAL_TO_PAGER_TYPE": "alerts",
        "RI_GATEWAY_ROUTES_CRITICAL_TO_PAGER_DESTINATIONS": "On_Call_Pager",
        "RI_GATEWAY_ROUTES_CRITICAL_TO_PAGER_ALERT_ON": "critical, scores",
        "RI_GATEWAY_ROUTES_RESULTS_DESTINATIONS": "ehr",
        "RI_GATEWAY_ROUTES_RESULTS_SEND_EMPTY": "false",
    })
    rig.serve(BASE + '\n[destinations.On_Call_Pager]\nendpoint = "tcp:host=127.0.0.1:port=9"\n'
              'ack_timeout = 10.0\nbackoff_initial = 0.2\n', mllp)

    sent = rig.send(mllp, "crit", oru("ENV0001", "ACC3001", "MRN7001", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("both deliveries audited", lambda: len(rig.events("ENV0001", "delivered")) == 2)
    assert sorted(e["destination"] for e in rig.events("ENV0001", "delivered")) == [
        "On_Call_Pager", "ehr"]
    (alert,) = rig.received("pager")
    assert alert[0].split("|")[4] == "PAGER"
    assert len(rig.received("ehr")) == 1


def test_a_destination_answering_with_fs_alone_is_delivered_with_lenient_end(rig):
    lenient, strict = LoopbackPager(trailer=b"\x1c"), LoopbackPager(trailer=b"\x1c")
    mllp = free_port()
    try:
        rig.serve(BASE + f"""
[destinations.lenient]
endpoint = "tcp:host=127.0.0.1:port={lenient.port}"
lenient_end = true

[destinations.strict]
endpoint = "tcp:host=127.0.0.1:port={strict.port}"
ack_timeout = 1.0
max_attempts = 1

[routes.all]
type = "results"
destinations = ["lenient", "strict"]
""", mllp)
        sent = rig.send(mllp, "neg", oru("FS0001", "ACC4001", "MRN8001", NEGATIVE_TEXT))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_for("the lenient delivery", lambda: rig.events("FS0001", "delivered"))
        wait_for("the strict one dead-lettered", lambda: rig.events("FS0001", "dead_lettered"))
        assert [e["destination"] for e in rig.events("FS0001", "delivered")] == ["lenient"]
        assert [e["destination"] for e in rig.events("FS0001", "dead_lettered")] == ["strict"]
        assert len(lenient.received) == 1 and len(strict.received) == 1  # both got it
    finally:
        lenient.close()
        strict.close()
