from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mllp_battery import FS, MSG_A, MSG_B, MSG_C, VT, FramingBattery, Outcome
from mllp_doubles import (
    SECRET,
    EventLog,
    RecordingHandler,
    ack_for,
    connect,
    lose,
    make_factory,
    peer_half_closes,
)
from structlog.testing import capture_logs
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from mllp import (
    CloseWithoutReply, ConnectionInfo, MLLPServerFactory, MLLPServerProtocol, encode_frame,
)
from mllp.server import describe_peer


class TestListenerBattery(FramingBattery):
    """The framing battery through the listener: frames reach the handler, replies leave."""

    half_close = False  # the peer shuts down its sending side after the last chunk

    def run(
        self, chunks: list[bytes], *, lenient_end: bool = False, max_frame_size: int = 1 << 24
    ) -> Outcome:
        handler = RecordingHandler()
        events = EventLog()
        factory = make_factory(
            handler, lenient_end=lenient_end, max_frame_size=max_frame_size, on_event=events
        )
        proto, transport = connect(factory)
        for chunk in chunks:
            proto.dataReceived(chunk)
        if self.half_close:
            peer_half_closes(proto)
        frames = tuple(handler.payloads)
        assert transport.value() == b"".join(encode_frame(ack_for(p)) for p in frames)
        assert factory.stats.frames == len(frames)
        # An oversize frame, and only that, closes the connection; after the end of
        # the input, it closes once everything is answered.
        assert transport.disconnecting == (self.half_close or bool(factory.stats.oversize_frames))
        return Outcome(
            frames=frames,
            stray=factory.stats.bytes_outside_frames,
            restarted=tuple(f["discarded"] for f in events.named("frame_restarted")),
            too_large=factory.stats.oversize_frames,
        )


class TestListenerBatteryHalfClosed(TestListenerBattery):
    """The battery again with the peer closing its sending side after its last byte:
    every frame received is still answered (the handler answers at once here)."""

    half_close = True


def test_handler_gets_payload_and_connection_info() -> None:
    handler = RecordingHandler()
    proto, transport = connect(make_factory(handler))
    proto.dataReceived(encode_frame(MSG_A))
    assert handler.calls == [(MSG_A, ConnectionInfo(conn_id=1, peer="10.1.2.3:40001"))]
    assert transport.value() == encode_frame(ack_for(MSG_A))


def test_connection_ids_increase() -> None:
    factory = make_factory()
    assert [connect(factory)[0].info.conn_id for _ in range(3)] == [1, 2, 3]


def test_handler_returning_none_sends_nothing() -> None:
    handler = RecordingHandler(reply=lambda payload: None)
    proto, transport = connect(make_factory(handler))
    proto.dataReceived(encode_frame(MSG_A) + encode_frame(MSG_B))
    assert handler.payloads == [MSG_A, MSG_B]
    assert transport.value() == b""
    assert not transport.disconnecting


def test_replies_leave_in_arrival_order_when_deferreds_fire_out_of_order() -> None:
    pending = {MSG_A: Deferred(), MSG_B: Deferred(), MSG_C: Deferred()}
    handler = RecordingHandler(reply=lambda payload: pending[payload])
    proto, transport = connect(make_factory(handler))
    proto.dataReceived(encode_frame(MSG_A) + encode_frame(MSG_B) + encode_frame(MSG_C))
    assert handler.payloads == [MSG_A]

    pending[MSG_C].callback(b"reply C")
    pending[MSG_B].callback(b"reply B")
    assert handler.payloads == [MSG_A]
    assert transport.value() == b""

    pending[MSG_A].callback(b"reply A")
    assert handler.payloads == [MSG_A, MSG_B, MSG_C]
    assert transport.value() == (
        encode_frame(b"reply A") + encode_frame(b"reply B") + encode_frame(b"reply C")
    )


def test_next_frame_waits_for_the_slow_reply_across_reads() -> None:
    pending: list[Deferred[bytes | None]] = []

    def slow(payload: bytes) -> Deferred[bytes | None]:
        pending.append(Deferred())
        return pending[-1]

    handler = RecordingHandler(reply=slow)
    proto, transport = connect(make_factory(handler))
    proto.dataReceived(encode_frame(MSG_A))
    proto.dataReceived(encode_frame(MSG_B))
    assert handler.payloads == [MSG_A]
    pending[0].callback(None)  # no reply for A; B goes next
    assert handler.payloads == [MSG_A, MSG_B]
    pending[1].callback(b"reply B")
    assert transport.value() == encode_frame(b"reply B")


def test_reading_pauses_while_too_many_frames_wait() -> None:
    pending: list[Deferred[bytes | None]] = []

    def slow(payload: bytes) -> Deferred[bytes | None]:
        pending.append(Deferred())
        return pending[-1]

    proto, transport = connect(make_factory(RecordingHandler(reply=slow)))
    limit = MLLPServerProtocol.MAX_QUEUED_FRAMES
    proto.dataReceived(b"".join(encode_frame(b"%d" % i) for i in range(limit)))
    assert transport.producerState == "producing"  # one is with the handler
    proto.dataReceived(encode_frame(b"one more"))
    assert transport.producerState == "paused"
    pending[0].callback(None)
    assert transport.producerState == "producing"
    assert len(pending) == 2


def test_many_frames_in_one_read_with_synchronous_handler() -> None:
    handler = RecordingHandler()
    proto, transport = connect(make_factory(handler))
    payloads = [b"MSG %d" % i for i in range(5000)]
    proto.dataReceived(b"".join(encode_frame(p) for p in payloads))
    assert handler.payloads == payloads
    assert transport.value() == b"".join(encode_frame(ack_for(p)) for p in payloads)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (lambda payload: Deferred.fromCoroutine(_fail_async()), "RuntimeError"),
        (lambda payload: 1 / 0, "ZeroDivisionError"),
        (lambda payload: "text, not bytes", "TypeError"),
        (lambda payload: b"has a \x0b inside", "InvalidPayload"),
    ],
    ids=["deferred-fails", "raises", "returns-str", "unframeable-reply"],
)
def test_handler_failure_drops_the_connection(reply: Callable[[bytes], Any], error: str) -> None:
    handler = RecordingHandler(reply=reply)
    events = EventLog()
    proto, transport = connect(make_factory(handler, on_event=events))
    with capture_logs() as logs:
        proto.dataReceived(encode_frame(SECRET) + encode_frame(MSG_B))
        proto.dataReceived(encode_frame(MSG_C))
    assert handler.payloads == [SECRET]  # frames behind the failure are not handed over
    assert transport.value() == b""
    assert transport.disconnecting
    assert events.named("handler_failed") == [{"conn_id": 1, "error": error}]
    failures = [entry for entry in logs if entry["event"] == "mllp.handler_failed"]
    assert failures == [
        {"event": "mllp.handler_failed", "log_level": "error", "error": error,
         "conn_id": 1, "peer": "10.1.2.3:40001"}
    ]


class _NoAddress(CloseWithoutReply):
    pass


def _raise_no_address() -> Any:
    raise _NoAddress()


@pytest.mark.parametrize("close", [_raise_no_address, lambda: fail(_NoAddress())],
                         ids=["raises", "deferred-fails"])
def test_a_handler_closing_without_reply_is_a_warning_not_a_failure(
        close: Callable[[], Any]) -> None:
    def reply(payload: bytes) -> Any:
        return close() if payload == SECRET else b"ok"

    handler = RecordingHandler(reply=reply)
    events = EventLog()
    proto, transport = connect(make_factory(handler, on_event=events))
    with capture_logs() as logs:
        proto.dataReceived(encode_frame(MSG_A) + encode_frame(SECRET) + encode_frame(MSG_B))
    assert handler.payloads == [MSG_A, SECRET]  # nothing behind it is handed over
    assert transport.value() == encode_frame(b"ok")  # what was answered before stays
    assert transport.disconnecting
    assert events.named("handler_failed") == []
    assert events.named("closed_without_reply") == [{"conn_id": 1, "reason": "_NoAddress"}]
    assert [entry for entry in logs if entry["event"].startswith("mllp.handler")] == []
    assert [(entry["event"], entry["log_level"], entry["reason"]) for entry in logs
            if entry["event"] == "mllp.closed_without_reply"] == [
        ("mllp.closed_without_reply", "warning", "_NoAddress")]


async def _fail_async() -> bytes:
    raise RuntimeError(f"could not store {SECRET!r}")


def test_replies_written_before_a_failure_are_kept() -> None:
    def reply(payload: bytes) -> bytes:
        if payload == MSG_B:
            raise RuntimeError("boom")
        return b"ok"

    proto, transport = connect(make_factory(RecordingHandler(reply=reply)))
    proto.dataReceived(encode_frame(MSG_A) + encode_frame(MSG_B))
    assert transport.value() == encode_frame(b"ok")
    assert transport.disconnecting


def test_nothing_is_delivered_after_the_transport_started_disconnecting() -> None:
    handler = RecordingHandler()
    proto, transport = connect(make_factory(handler))
    transport.loseConnection()
    proto.dataReceived(encode_frame(MSG_A))
    assert handler.payloads == []
    assert transport.value() == b""


def test_queued_frames_are_dropped_when_the_transport_starts_disconnecting() -> None:
    pending: Deferred[bytes | None] = Deferred()
    handler = RecordingHandler(reply=lambda payload: pending if payload == MSG_A else b"x")
    proto, transport = connect(make_factory(handler))
    proto.dataReceived(encode_frame(MSG_A) + encode_frame(MSG_B))
    transport.loseConnection()
    pending.callback(b"reply A")
    assert handler.payloads == [MSG_A]
    assert transport.value() == b""


class DropAwareHandler(RecordingHandler):
    """A handler that wants to know which replies never left."""

    def __init__(self, reply: Callable[[bytes], Any]) -> None:
        super().__init__(reply)
        self.dropped: list[tuple[bytes, bytes, ConnectionInfo]] = []

    def reply_dropped(self, payload: bytes, reply: bytes, conn: ConnectionInfo) -> None:
        self.dropped.append((payload, reply, conn))


def test_reply_after_connection_lost_is_dropped_logged_and_reported() -> None:
    pending: Deferred[bytes | None] = Deferred()
    handler = DropAwareHandler(reply=lambda p: pending)
    events = EventLog()
    proto, transport = connect(make_factory(handler, on_event=events))
    proto.dataReceived(encode_frame(SECRET))
    lose(proto)
    with capture_logs() as logs:
        pending.callback(b"late reply")
    assert transport.value() == b""
    assert logs == [{"event": "mllp.reply_dropped", "log_level": "warning", "size": 10,
                     "conn_id": 1, "peer": "10.1.2.3:40001"}]
    assert events.named("reply_dropped") == [{"conn_id": 1, "size": 10}]
    assert handler.dropped == [(SECRET, b"late reply", ConnectionInfo(1, "10.1.2.3:40001"))]


def test_no_reply_after_connection_lost_is_not_a_dropped_reply() -> None:
    pending: Deferred[bytes | None] = Deferred()
    handler = DropAwareHandler(reply=lambda p: pending)
    proto, _ = connect(make_factory(handler))
    proto.dataReceived(encode_frame(MSG_A))
    lose(proto)
    with capture_logs() as logs:
        pending.callback(None)
    assert logs == []
    assert handler.dropped == []


def test_failing_reply_dropped_hook_is_logged_by_type() -> None:
    pending: Deferred[bytes | None] = Deferred()

    class Broken(RecordingHandler):
        def reply_dropped(self, payload: bytes, reply: bytes, conn: ConnectionInfo) -> None:
            raise ValueError(f"cannot describe {payload!r}")

    proto, _ = connect(make_factory(Broken(reply=lambda p: pending)))
    proto.dataReceived(encode_frame(SECRET))
    lose(proto)
    with capture_logs() as logs:
        pending.callback(b"late")
    assert [(e["event"], e.get("error")) for e in logs] == [
        ("mllp.reply_dropped", None), ("mllp.reply_dropped_hook_failed", "ValueError")]
    assert "SECRET" not in repr(logs)


def test_half_closing_peer_gets_every_reply_in_order_then_the_connection_closes() -> None:
    # What a sender using shutdown(SHUT_WR) or `nc -q` does: its frames, then the end
    # of its input, while the handler (a commit, in the gateway) is still working.
    pending: dict[bytes, Deferred[bytes | None]] = {}

    def slow(payload: bytes) -> Deferred[bytes | None]:
        pending[payload] = Deferred()
        return pending[payload]

    handler = RecordingHandler(reply=slow)
    events = EventLog()
    factory = make_factory(handler, on_event=events)
    proto, transport = connect(factory)
    with capture_logs() as logs:
        proto.dataReceived(encode_frame(MSG_A) + encode_frame(MSG_B) + VT + SECRET)
        peer_half_closes(proto)
        assert not transport.disconnecting  # the write side stays open for the replies
        assert handler.payloads == [MSG_A]
        pending[MSG_A].callback(b"reply A")
        assert handler.payloads == [MSG_A, MSG_B]  # still one at a time, in order
        assert not transport.disconnecting
        pending[MSG_B].callback(b"reply B")
    assert transport.value() == encode_frame(b"reply A") + encode_frame(b"reply B")
    assert transport.disconnecting  # closed once the last reply is written
    assert handler.payloads == [MSG_A, MSG_B]  # the partial frame never reaches the handler
    assert events.named("partial_frame_discarded") == [{"conn_id": 1, "size": len(SECRET)}]
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("mllp.partial_frame_discarded", "warning"), ("mllp.input_closed", "info")]
    assert logs[0]["size"] == len(SECRET) and logs[1]["unanswered"] == 2
    assert "SECRET" not in repr(logs)
    # The connection counts as open until the transport reports it closed.
    assert (factory.stats.connections_open, factory.open_connections) == (1, 1)
    lose(proto)
    assert (factory.stats.connections_open, factory.open_connections) == (0, 0)


def test_half_close_with_nothing_to_answer_closes_at_once() -> None:
    proto, transport = connect(make_factory())
    proto.dataReceived(encode_frame(MSG_A))  # answered synchronously
    with capture_logs() as logs:
        peer_half_closes(proto)
    assert transport.value() == encode_frame(ack_for(MSG_A))
    assert transport.disconnecting
    assert logs == []  # nothing unanswered, nothing discarded: connection_lost says the rest


def test_half_close_keeps_the_idle_timer_off_until_the_last_reply() -> None:
    clock = Clock()
    pending: Deferred[bytes | None] = Deferred()
    factory = make_factory(RecordingHandler(reply=lambda p: pending), idle_timeout=10,
                           clock=clock)
    proto, transport = connect(factory)
    proto.dataReceived(encode_frame(MSG_A))
    peer_half_closes(proto)
    clock.advance(1000)  # a slow commit never costs the sender its ACK
    assert not transport.disconnecting
    assert factory.stats.idle_timeouts == 0
    pending.callback(b"reply A")
    assert transport.value() == encode_frame(b"reply A")
    assert transport.disconnecting  # at once, not after another idle period
    assert clock.getDelayedCalls() == []


def test_half_close_after_the_connection_started_closing_changes_nothing() -> None:
    clock = Clock()
    handler = RecordingHandler()
    proto, transport = connect(make_factory(handler, idle_timeout=10, clock=clock))
    clock.advance(10)
    assert transport.disconnecting
    with capture_logs() as logs:
        peer_half_closes(proto)
        peer_half_closes(proto)  # reported twice: still nothing to do
    assert logs == []
    assert handler.payloads == []


def test_write_side_lost_while_the_handler_works_closes_and_drops_the_reply() -> None:
    pending: Deferred[bytes | None] = Deferred()
    handler = DropAwareHandler(reply=lambda p: pending)
    proto, transport = connect(make_factory(handler))
    proto.dataReceived(encode_frame(MSG_A) + encode_frame(MSG_B))
    proto.writeConnectionLost()
    assert transport.disconnecting
    pending.callback(b"reply A")
    assert transport.value() == b""
    assert handler.payloads == [MSG_A]  # B is not handed over: no reply could leave
    assert [(p, r) for p, r, _ in handler.dropped] == [(MSG_A, b"reply A")]


def test_oversize_frame_closes_after_answering_earlier_frames() -> None:
    pending: Deferred[bytes | None] = Deferred()
    handler = RecordingHandler(reply=lambda payload: pending)
    events = EventLog()
    factory = make_factory(handler, max_frame_size=100, on_event=events)
    proto, transport = connect(factory)
    with capture_logs() as logs:
        proto.dataReceived(encode_frame(MSG_A) + VT + b"x" * 150)
        assert not transport.disconnecting  # MSG_A still owes its reply
        assert transport.producerState == "paused"
        proto.dataReceived(b"x" * 10 + FS + b"\r" + encode_frame(MSG_B))  # ignored
        pending.callback(b"reply A")
    assert handler.payloads == [MSG_A]
    assert transport.value() == encode_frame(b"reply A")
    assert transport.disconnecting
    assert factory.stats.oversize_frames == 1
    assert events.named("frame_too_large") == [{"conn_id": 1, "size": 150, "limit": 100}]
    assert {"event": "mllp.frame_too_large", "log_level": "warning", "size": 150,
            "limit": 100, "conn_id": 1, "peer": "10.1.2.3:40001"} in logs


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (IPv4Address("TCP", "127.0.0.1", 2575), "127.0.0.1:2575"),
        (IPv6Address("TCP", "::1", 2575), "[::1]:2575"),
        (UNIXAddress("/run/gw.sock"), "UNIXAddress('/run/gw.sock')"),
    ],
)
def test_describe_peer(address: Any, expected: str) -> None:
    assert describe_peer(address) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_frame_size": 0}, "max_frame_size"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"idle_timeout": "5"}, "idle_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2.5}, "max_connections"),
    ],
)
def test_invalid_factory_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLLPServerFactory(RecordingHandler(), clock=Clock(), **options)


def test_handler_without_handle_method_is_refused() -> None:
    with pytest.raises(TypeError, match="handle"):
        MLLPServerFactory(lambda payload, conn: None, clock=Clock())  # type: ignore[arg-type]


def test_close_connections_answers_the_frame_being_handled_then_closes() -> None:
    pending: Deferred[bytes | None] = Deferred()
    handler = RecordingHandler(reply=lambda payload: pending if payload == MSG_A else b"x")
    factory = make_factory(handler)
    proto, transport = connect(factory)
    idle, idle_transport = connect(factory)
    proto.dataReceived(encode_frame(MSG_A) + encode_frame(MSG_B))
    closed = factory.close_connections(2.0)
    fired: list[object] = []
    closed.addCallback(fired.append)
    # Nothing was being answered on the idle connection: it closes at once.
    assert (idle_transport.disconnecting, transport.disconnecting) == (True, False)
    pending.callback(b"reply A")
    # The reply leaves before the close; MSG_B, never handed over, gets none.
    assert (handler.payloads, transport.value(), transport.disconnecting, transport.disconnected
            ) == ([MSG_A], encode_frame(b"reply A"), True, False)
    lose(idle)
    assert fired == []
    lose(proto)
    assert fired == [None]
    factory.clock.advance(2.0)  # the grace timer was cancelled: nothing to abort
    assert transport.disconnected is False


def test_close_connections_aborts_what_is_still_open_after_the_grace() -> None:
    handler = RecordingHandler(reply=lambda payload: Deferred())  # never answers
    factory = make_factory(handler)
    proto, transport = connect(factory)
    proto.dataReceived(encode_frame(MSG_A))
    factory.close_connections(2.0)
    factory.clock.advance(1.9)
    assert (transport.disconnecting, transport.disconnected) == (False, False)
    factory.clock.advance(0.1)
    assert transport.disconnected is True  # aborted


def test_close_connections_without_connections_fires_at_once() -> None:
    fired: list[object] = []
    make_factory().close_connections(2.0).addCallback(fired.append)
    assert fired == [None]
