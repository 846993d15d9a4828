"""Outbox delivery over MLLP with a fake downstream: StringTransport + task.Clock, no sockets."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from gateway.audit import AuditLog
from gateway.delivery import DeliveryService, DestinationWorker, backoff_delay
from gateway.outbox import Outbox
from gateway.routing import Destination, PlannedMessage
from mllp.client import MLLPClientProtocol
from mllp.framing import Frame, FrameDecoder, encode_frame

DEST = Destination(name="pager", endpoint="tcp:host=127.0.0.1:port=1", ack_timeout=10.0,
                   max_attempts=4, backoff_initial=2.0, backoff_max=60.0,
                   backoff_multiplier=2.0, jitter=0.25)


def message(control_id: str) -> bytes:
    return (f"MSH|^~\\&|RI-GATEWAY|RIGW|PAGER|HOSP|20240115101500||ORU^R01^ORU_R01|{control_id}|P|2.5.1\r"
            f"PID|1||MRN1\r").encode()


def ack(control_id: str, code: str = "AA", *errors: str, version: str = "2.5.1") -> bytes:
    """An ACK with an ERR segment for each of ``errors``: a table 0357 code, or
    ``"code^SEG^seq^field^severity"`` (v2.5+ layout; ERR-1 before v2.5)."""
    segments = [f"MSH|^~\\&|PAGER|HOSP|RI-GATEWAY|RIGW|20240115101501||ACK^R01^ACK|A-{control_id}"
                f"|P|{version}", f"MSA|{code}|{control_id}"]
    for error in errors:
        err, seg, seq, field = (error.split("^") + ["", "", ""])[:4]
        severity = error.split("^")[4] if error.count("^") >= 4 else "E"
        if version >= "2.5":
            segments.append(f"ERR||{seg}^{seq}^{field}|{err}^^HL70357|{severity}")
        else:
            segments.append(f"ERR|{seg}^{seq}^{field}^{err}&&HL70357")
    return ("\r".join(segments) + "\r").encode()


class Downstream:
    """Hands out client connections over StringTransports; can be 'down' (refuses)."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.up = True
        self.connections: list[tuple[MLLPClientProtocol, StringTransport]] = []
        self.connects = 0

    def connect(self, dest: Destination) -> defer.Deferred:
        self.connects += 1
        if not self.up:
            return defer.fail(ConnectionRefusedError("connection refused"))
        proto = MLLPClientProtocol(clock=self.clock)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.connections.append((proto, transport))
        return defer.succeed(proto)

    @property
    def current(self) -> tuple[MLLPClientProtocol, StringTransport]:
        return self.connections[-1]

    def received(self, index: int = -1) -> list[bytes]:
        decoder = FrameDecoder()
        return [e.payload for e in decoder.feed(self.connections[index][1].value())
                if isinstance(e, Frame)]

    def control_ids(self, index: int = -1) -> list[str]:
        return [p.split(b"\r")[0].split(b"|")[9].decode() for p in self.received(index)]

    def reply(self, payload: bytes, index: int = -1) -> None:
        self.connections[index][0].dataReceived(encode_frame(payload))


@pytest.fixture
def clock() -> task.Clock:
    c = task.Clock()
    c.advance(1_700_000_000)
    return c


@pytest.fixture
def db_path(tmp_path):
    path = str(tmp_path / "audit.sqlite3")
    AuditLog(path).close()
    return path


@pytest.fixture
def outbox(db_path, clock) -> Outbox:
    return Outbox.open(db_path, clock=clock)


def enqueue(outbox: Outbox, *control_ids: str, destination: str = "pager") -> list[int]:
    planned = [PlannedMessage(destination, "critical", "alerts", c, message(c)) for c in control_ids]
    return outbox.enqueue(planned, source_control_id="IN-1")


def worker_for(outbox, clock, downstream, dest=DEST, rand=0.5) -> DestinationWorker:
    return DestinationWorker(dest, outbox, connect=downstream.connect, clock=clock,
                             random=lambda: rand)


def events(db_path: str) -> list[tuple[str, str | None, dict]]:
    log = AuditLog(db_path, readonly=True)
    try:
        return [(e["event"], e["control_id"], e["fields"]) for e in log.events()]
    finally:
        log.close()


def outcome_events(db_path: str) -> list[tuple[str, str]]:
    return [(name, f["outbound_control_id"]) for name, _, f in events(db_path)
            if name in ("delivered", "delivery_failed", "dead_lettered")]


def test_sends_one_message_at_a_time_in_outbox_order(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1", "M2", "M3")
    worker = worker_for(outbox, clock, down)
    worker.start()
    assert down.control_ids() == ["M1"]
    down.reply(ack("M1"))
    assert down.control_ids() == ["M1", "M2"]
    down.reply(ack("M2"))
    down.reply(ack("M3"))
    assert down.control_ids() == ["M1", "M2", "M3"]
    assert [r.status for r in outbox.list()] == ["delivered"] * 3
    assert outcome_events(db_path) == [("delivered", "M1"), ("delivered", "M2"), ("delivered", "M3")]
    assert down.connects == 1  # the connection is kept between messages


def test_audit_events_are_keyed_by_the_inbound_control_id(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1")
    worker_for(outbox, clock, down).start()
    down.reply(ack("M1"))
    assert [(name, cid) for name, cid, _ in events(db_path)] == [("enqueued", "IN-1"), ("delivered", "IN-1")]
    fields = events(db_path)[1][2]
    assert {k: fields[k] for k in ("destination", "outbound_control_id", "attempt", "ack_code")} == {
        "destination": "pager", "outbound_control_id": "M1", "attempt": 1, "ack_code": "AA"}


def test_ae_is_retried_after_backoff_then_delivered(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1", "M2")
    worker_for(outbox, clock, down).start()
    down.reply(ack("M1", "AE"))
    # rand 0.5 = no jitter: first retry after backoff_initial (2 s); M2 must wait behind M1.
    assert down.control_ids() == ["M1"]
    clock.advance(1.9)
    assert down.control_ids() == ["M1"]
    clock.advance(0.1)
    assert down.control_ids() == ["M1", "M1"]
    down.reply(ack("M1"))
    down.reply(ack("M2"))
    assert outcome_events(db_path) == [
        ("delivery_failed", "M1"), ("delivered", "M1"), ("delivered", "M2")]
    assert [(r.control_id, r.attempts, r.status) for r in outbox.list()] == [
        ("M1", 2, "delivered"), ("M2", 1, "delivered")]


def first_answered(outbox: Outbox, clock: task.Clock, reply: bytes) -> Downstream:
    """M1 and M2 queued, a worker started, and M1 answered with ``reply``."""
    down = Downstream(clock)
    enqueue(outbox, "M1", "M2")
    worker_for(outbox, clock, down).start()
    down.reply(reply)
    return down


@pytest.mark.parametrize(("code", "errors", "reason"), [
    # Content errors: every resend gets the same answer, and held the alerts behind it.
    ("AE", ["101^PID^1^5"], "AE (ERR 101 Required field missing at PID-5)"),
    ("AE", ["100"], "AE (ERR 100 Segment sequence error)"),
    ("AE", ["102^OBX^2^5"], "AE (ERR 102 Data type error at OBX[2]-5)"),
    ("CE", ["103^OBR^1^4"], "CE (ERR 103 Table value not found at OBR-4)"),
    ("AE", ["104^OBX^1^5"], "AE (ERR 104 Value too long at OBX-5)"),
    ("AE", ["199"], "AE (ERR 199 Other HL7 error)"),
    # What the destination supports.
    ("AR", ["200"], "AR (ERR 200 Unsupported message type)"),
    ("AR", ["201"], "AR (ERR 201 Unsupported event code)"),
    ("CR", ["202"], "CR (ERR 202 Unsupported processing id)"),
    ("AR", ["203^MSH^1^12"], "AR (ERR 203 Unsupported version id at MSH-12)"),
    ("AE", ["205"], "AE (ERR 205 Duplicate key identifier)"),
    # A final error among others is final; warnings are not counted.
    ("AE", ["207", "101^PID^1^3", "103^PV1^1^2^W"], "AE (ERR 101 Required field missing at PID-3)"),
])
def test_an_error_code_that_no_resend_can_change_dead_letters_at_once(
        outbox, clock, db_path, code, errors, reason):
    down = first_answered(outbox, clock, ack("M1", code, *errors))
    # The next message goes at once: before, an AE waited out every attempt in front of it.
    assert down.control_ids() == ["M1", "M2"]
    down.reply(ack("M2"))
    final = f"{reason}: final, a resend gets the same answer"
    assert [(r.control_id, r.status, r.attempts, r.ack_code, r.last_error)
            for r in outbox.list()] == [("M1", "dead", 1, code, final),
                                        ("M2", "delivered", 1, "AA", None)]
    assert outcome_events(db_path) == [
        ("delivery_failed", "M1"), ("dead_lettered", "M1"), ("delivered", "M2")]
    failed = next(f for name, _, f in events(db_path) if name == "delivery_failed")
    assert (failed["error"], failed["ack_code"]) == (final, code)


@pytest.mark.parametrize(("code", "errors", "reason"), [
    # AR is also what a receiver that is stopping or failing answers (ours: AR 207).
    ("AR", [], "AR (no error code)"),
    ("CR", [], "CR (no error code)"),
    ("AR", ["207"], "AR (ERR 207 Application internal error)"),
    ("AE", ["206^PID^1^3"], "AE (ERR 206 Application record locked at PID-3)"),
    ("AE", ["204^PID^1^3"], "AE (ERR 204 Unknown key identifier at PID-3)"),
    ("AR", ["0"], "AR (ERR 0 Message accepted)"),
    ("AR", ["Z42"], "AR (ERR Z42)"),
    ("AE", ["101^PID^1^5^W", "103^OBR^1^4^I"], "AE (only warnings)"),
    ("AE", ["207", "207^OBX^2^5"], "AE (ERR 207 Application internal error; "
                                   "ERR 207 Application internal error at OBX[2]-5)"),
])
def test_an_error_a_resend_may_not_meet_again_is_retried(
        outbox, clock, db_path, code, errors, reason):
    down = first_answered(outbox, clock, ack("M1", code, *errors))
    assert down.control_ids() == ["M1"]
    assert [(r.status, r.attempts, r.ack_code, r.last_error) for r in outbox.list()] == [
        ("pending", 1, code, reason), ("pending", 0, None, None)]
    clock.advance(DEST.backoff_initial)
    assert down.control_ids() == ["M1", "M1"]
    down.reply(ack("M1"))
    down.reply(ack("M2"))
    assert outcome_events(db_path) == [
        ("delivery_failed", "M1"), ("delivered", "M1"), ("delivered", "M2")]


def test_the_error_code_is_read_from_err_1_and_msa_6_before_v2_5(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1", "M2", "M3")
    worker_for(outbox, clock, down).start()
    down.reply(ack("M1", "AE", "101^PID^1^5", version="2.3"))
    down.reply(ack("M2", "AR", version="2.4").replace(b"MSA|AR|M2", b"MSA|AR|M2||||200"))
    down.reply(ack("M3", "AR", "207", version="2.4"))
    assert [(r.control_id, r.status, r.last_error) for r in outbox.list()] == [
        ("M1", "dead", "AE (ERR 101 Required field missing at PID-5): final, a resend gets "
                       "the same answer"),
        ("M2", "dead", "AR (ERR 200 Unsupported message type): final, a resend gets the same "
                       "answer"),
        ("M3", "pending", "AR (ERR 207 Application internal error)")]


def test_the_destinations_error_text_is_not_recorded(outbox, clock, db_path, tmp_path):
    # Receivers quote the value they refused: the outbox, the audit events and the log keep
    # the code and the place, never the text (ERR-8, MSA-3, CWE-2, a code that is text).
    from structlog.testing import capture_logs

    down = Downstream(clock)
    enqueue(outbox, "M1")
    reply = (b"MSH|^~\\&|PAGER|HOSP|RI-GATEWAY|RIGW|20240115101501||ACK|A1|P|2.5.1\r"
             b"MSA|AE|M1|DOE^JANE not found\r"
             b"ERR||PID^1^5|101^DOE JANE^HL70357|E||||Patient DOE, JANE 19700101 unknown\r"
             b"ERR||PID^1^7|DOE JANE|E\r"
             b"ERR||PID^1^8|DOE JANE^^L|E")
    with capture_logs() as logs:
        worker_for(outbox, clock, down).start()
        down.reply(reply)
    (row,) = outbox.list()
    assert row.last_error == ("AE (ERR 101 Required field missing at PID-5): final, a resend "
                              "gets the same answer")
    recorded = json.dumps([f for _, _, f in events(db_path)]) + json.dumps(logs, default=str)
    assert "DOE" not in recorded and "1970" not in recorded
    retried = Downstream(clock)
    enqueue(outbox, "M2")
    with capture_logs() as logs:
        worker_for(outbox, clock, retried).start()
        retried.reply(reply.replace(b"|M1|", b"|M2|").replace(b"101^", b"207^"))
    assert outbox.get(2).last_error == ("AE (ERR 207 Application internal error at PID-5; "
                                        "ERR with an unreadable code at PID-7; "
                                        "ERR without a table 0357 code at PID-8)")
    assert "DOE" not in json.dumps(logs, default=str)


def test_dead_lettered_after_max_attempts(outbox, clock, db_path):
    down = Downstream(clock)
    down.up = False
    enqueue(outbox, "M1")
    worker_for(outbox, clock, down).start()
    for _ in range(10):
        clock.advance(60)
    assert down.connects == DEST.max_attempts
    (row,) = outbox.list()
    assert (row.status, row.attempts) == ("dead", DEST.max_attempts)
    assert "ConnectionRefusedError" in row.last_error
    assert outcome_events(db_path)[-2:] == [("delivery_failed", "M1"), ("dead_lettered", "M1")]


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    dest = DEST
    assert [backoff_delay(dest, n, 0.5) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff_delay(dest, 1, 0.0) == 1.5   # -25 %
    assert backoff_delay(dest, 1, 1.0) == 2.5   # +25 %
    assert backoff_delay(dest, 1100, 0.5) == 60.0  # 2.0 ** 1099 overflowed a float


def test_connection_errors_back_off_with_the_injected_random(outbox, clock):
    down = Downstream(clock)
    down.up = False
    enqueue(outbox, "M1")
    worker_for(outbox, clock, down, rand=0.0).start()
    start = clock.seconds()
    (row,) = outbox.list()
    assert row.next_attempt_at - start == pytest.approx(1.5)
    clock.advance(1.5)
    (row,) = outbox.list()
    assert (row.attempts, row.next_attempt_at - clock.seconds()) == (2, pytest.approx(3.0))


def test_ack_timeout_closes_the_connection_and_retries(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1")
    worker_for(outbox, clock, down).start()
    first_transport = down.current[1]
    clock.advance(DEST.ack_timeout)
    assert first_transport.disconnecting
    (row,) = outbox.list()
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "no ACK within 10 s")
    clock.advance(2.0)
    assert len(down.connections) == 2 and down.control_ids() == ["M1"]
    down.reply(ack("M1"))
    assert outbox.list()[0].status == "delivered"


def test_slow_ack_is_never_matched_to_the_next_message(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1", "M2")
    worker_for(outbox, clock, down).start()
    clock.advance(DEST.ack_timeout)          # M1 times out on connection 0
    down.reply(ack("M1"), index=0)            # ... its ACK arrives late on the dead connection
    assert outbox.get(1).status == "pending"
    clock.advance(2.0)                        # M1 again, on connection 1
    down.reply(ack("M1"))
    assert down.control_ids() == ["M1", "M2"]
    # The downstream now repeats its late ACK for M1 while M2 is awaited:
    down.reply(ack("M1"))
    assert outbox.get(2).status == "pending"
    assert "MSA-2 'M1'" in outbox.get(2).last_error
    clock.advance(2.0)
    down.reply(ack("M2"))
    assert [(r.control_id, r.status) for r in outbox.list()] == [("M1", "delivered"), ("M2", "delivered")]
    assert outcome_events(db_path) == [
        ("delivery_failed", "M1"), ("delivered", "M1"), ("delivery_failed", "M2"), ("delivered", "M2")]


def test_unreadable_reply_is_a_failed_attempt(outbox, clock):
    down = Downstream(clock)
    enqueue(outbox, "M1")
    worker_for(outbox, clock, down).start()
    down.reply(b"this is not HL7")
    row = outbox.get(1)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error.startswith("unreadable ACK")


def test_outage_then_recovery_delivers_each_alert_once_in_order(outbox, clock, db_path):
    down = Downstream(clock)
    down.up = False
    worker = worker_for(outbox, clock, down)
    worker.start()
    for n in range(1, 6):
        enqueue(outbox, f"A{n}")
        worker.wake()
        clock.advance(1)
    down.up = True
    clock.advance(60)
    for n in range(1, 6):
        down.reply(ack(f"A{n}"))
    delivered = [cid for conn in range(len(down.connections)) for cid in down.control_ids(conn)]
    assert delivered == ["A1", "A2", "A3", "A4", "A5"]
    assert [r.status for r in outbox.list()] == ["delivered"] * 5


def test_idle_connection_closed_by_the_peer_is_reopened_without_counting_an_attempt(outbox, clock):
    down = Downstream(clock)
    worker = worker_for(outbox, clock, down)
    worker.start()
    enqueue(outbox, "M1")
    worker.wake()
    down.reply(ack("M1"))
    proto, _ = down.current
    proto.connectionLost()  # the downstream's idle timeout
    enqueue(outbox, "M2")
    worker.wake()
    assert len(down.connections) == 2 and down.control_ids() == ["M2"]
    down.reply(ack("M2"))
    assert outbox.get(2).attempts == 1


def test_restart_resumes_pending_messages(db_path, clock):
    first = Outbox.open(db_path, clock=clock)
    enqueue(first, "M1", "M2")
    down = Downstream(clock)
    down.up = False
    worker_for(first, clock, down).start()   # fails once, then the process "dies"
    first.conn.close()

    again = Outbox.open(db_path, clock=clock)
    down2 = Downstream(clock)
    service = DeliveryService(again, {"pager": DEST}, reactor=clock, connect=down2.connect,
                              random=lambda: 0.5)
    service.startService()
    clock.advance(2.0)
    down2.reply(ack("M1"))
    down2.reply(ack("M2"))
    assert down2.control_ids() == ["M1", "M2"]
    assert [r.status for r in again.list()] == ["delivered", "delivered"]
    service.stopService()


def test_service_notify_wakes_only_named_destinations(db_path, clock):
    ob = Outbox.open(db_path, clock=clock)
    down = Downstream(clock)
    dests = {"pager": DEST, "ehr": Destination(name="ehr", endpoint="tcp:host=127.0.0.1:port=2")}
    service = DeliveryService(ob, dests, reactor=clock, connect=down.connect, poll_interval=30)
    service.startService()
    enqueue(ob, "E1", destination="ehr")
    service.notify(["pager"])
    assert down.connections == []
    service.notify(["ehr"])
    assert down.control_ids() == ["E1"]
    service.stopService()


def test_retry_and_purge(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1", "M2")
    worker = worker_for(outbox, clock, down)
    worker.start()
    down.reply(ack("M1", "AR", "200"))
    down.reply(ack("M2"))
    assert [row.control_id for row in outbox.retry_dead().requeued] == ["M1"]
    worker.wake()
    down.reply(ack("M1"))
    assert [r.status for r in outbox.list()] == ["delivered", "delivered"]
    clock.advance(100)
    assert outbox.purge_delivered(before=clock.seconds() - 50) == (2, 0)
    assert outbox.list() == []
    assert [name for name, _, _ in events(db_path)].count("requeued") == 1
    assert json.loads(json.dumps(events(db_path)[-1][2]))["outbound_control_id"] == "M1"


def test_a_connection_made_after_stop_sends_nothing(outbox, clock, db_path):
    # Stopped while connecting: the connection that completed afterwards was used to send
    # the message anyway, and the shutdown then dropped it without a trace in the audit.
    pending: defer.Deferred = defer.Deferred()
    worker = DestinationWorker(DEST, outbox, connect=lambda dest: pending, clock=clock,
                               random=lambda: 0.5)
    worker.start()
    enqueue(outbox, "M1")
    worker.wake()
    worker.stop()
    proto, transport = MLLPClientProtocol(clock=clock), StringTransport()
    proto.makeConnection(transport)
    pending.callback(proto)
    assert transport.value() == b""
    assert transport.disconnecting
    (row,) = outbox.list()
    assert (row.status, row.attempts) == ("pending", 0)
    assert outcome_events(db_path) == []
