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


def ack(control_id: str, code: str = "AA") -> bytes:
    return (f"MSH|^~\\&|PAGER|HOSP|RI-GATEWAY|RIGW|20240115101501||ACK^R01^ACK|A-{control_id}|P|2.5.1\r"
            f"MSA|{code}|{control_id}\r").encode()


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


def test_ar_dead_letters_at_once_and_the_queue_moves_on(outbox, clock, db_path):
    down = Downstream(clock)
    enqueue(outbox, "M1", "M2")
    worker_for(outbox, clock, down).start()
    down.reply(ack("M1", "AR"))
    assert down.control_ids() == ["M1", "M2"]
    down.reply(ack("M2"))
    assert [(r.control_id, r.status, r.ack_code) for r in outbox.list()] == [
        ("M1", "dead", "AR"), ("M2", "delivered", "AA")]
    assert outcome_events(db_path) == [
        ("delivery_failed", "M1"), ("dead_lettered", "M1"), ("delivered", "M2")]


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
    down.reply(ack("M1", "AR"))
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
