"""Listener policies: idle timeout, connection limit, counters, events and logs."""

from __future__ import annotations

from typing import Any

from mllp_battery import FS, MSG_A, MSG_B, VT
from mllp_doubles import SECRET, EventLog, RecordingHandler, ack_for, connect, lose, make_factory
from structlog.testing import capture_logs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mllp import ListenerStats, encode_frame


def test_idle_timeout_closes_a_quiet_connection() -> None:
    clock = Clock()
    events = EventLog()
    factory = make_factory(idle_timeout=30, clock=clock, on_event=events)
    proto, transport = connect(factory)
    clock.advance(29)
    proto.dataReceived(b"stray")  # any input counts as activity
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert factory.stats.idle_timeouts == 1
    assert events.named("idle_timeout") == [{"conn_id": 1, "timeout": 30}]


def test_half_sent_frame_does_not_keep_the_connection_alive() -> None:
    clock = Clock()
    proto, transport = connect(make_factory(idle_timeout=10, clock=clock))
    proto.dataReceived(VT + b"MSH|never finished")
    clock.advance(10)
    assert transport.disconnecting


def test_idle_timer_waits_while_the_handler_works() -> None:
    clock = Clock()
    pending: Deferred[bytes | None] = Deferred()
    factory = make_factory(RecordingHandler(reply=lambda p: pending), idle_timeout=10, clock=clock)
    proto, transport = connect(factory)
    proto.dataReceived(encode_frame(MSG_A))
    clock.advance(1000)
    assert not transport.disconnecting
    pending.callback(b"reply A")
    assert transport.value() == encode_frame(b"reply A")
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert factory.stats.idle_timeouts == 1


def test_no_idle_timeout_when_disabled() -> None:
    clock = Clock()
    proto, transport = connect(make_factory(idle_timeout=None, clock=clock))
    clock.advance(10**6)
    assert not transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_connection_lost_cancels_the_idle_timer() -> None:
    clock = Clock()
    proto, transport = connect(make_factory(idle_timeout=10, clock=clock))
    lose(proto)
    assert clock.getDelayedCalls() == []


def test_connections_beyond_the_limit_are_refused() -> None:
    events = EventLog()
    handler = RecordingHandler()
    factory = make_factory(handler, max_connections=2, on_event=events)
    first, _ = connect(factory)
    connect(factory)
    refused, refused_transport = connect(factory, IPv4Address("TCP", "10.9.9.9", 5000))
    assert refused_transport.disconnected  # set by abortConnection() only
    refused.dataReceived(encode_frame(MSG_A))
    assert handler.payloads == []
    lose(refused)  # the refused connection closing must not free a slot
    assert factory.stats == ListenerStats(
        connections_total=2, connections_open=2, connections_refused=1
    )
    assert events.named("connection_refused") == [{"conn_id": 3, "peer": "10.9.9.9:5000"}]

    lose(first)
    _, fourth_transport = connect(factory)
    assert not fourth_transport.disconnecting
    assert factory.stats == ListenerStats(
        connections_total=3, connections_open=2, connections_refused=1
    )


def test_stats_and_events_over_a_connection() -> None:
    events = EventLog()
    stats = ListenerStats()
    factory = make_factory(stats=stats, on_event=events)
    proto, _ = connect(factory)
    proto.dataReceived(b"ab" + encode_frame(MSG_A) + VT + b"xyz" + encode_frame(MSG_B) + b"\n")
    lose(proto)
    assert stats == ListenerStats(
        connections_total=1, connections_open=0, frames=2, bytes_outside_frames=3
    )
    assert events.events == [
        ("connection_made", {"conn_id": 1, "peer": "10.1.2.3:40001"}),
        ("stray_bytes", {"conn_id": 1, "count": 2}),
        ("frame", {"conn_id": 1, "size": len(MSG_A)}),
        ("frame_restarted", {"conn_id": 1, "discarded": 3}),
        ("frame", {"conn_id": 1, "size": len(MSG_B)}),
        ("stray_bytes", {"conn_id": 1, "count": 1}),
        ("connection_lost", {"conn_id": 1, "peer": "10.1.2.3:40001"}),
    ]


def test_failing_event_callback_does_not_break_the_connection() -> None:
    def broken(name: str, **fields: Any) -> None:
        raise KeyError(name)

    handler = RecordingHandler()
    proto, transport = connect(make_factory(handler, on_event=broken))
    with capture_logs() as logs:
        proto.dataReceived(encode_frame(MSG_A))
    assert transport.value() == encode_frame(ack_for(MSG_A))
    assert [e["event_name"] for e in logs if e["event"] == "mllp.on_event_failed"] == ["frame"]


def test_logs_carry_connection_fields_and_never_payload_bytes() -> None:
    handler = RecordingHandler(reply=lambda payload: payload.replace(b"PID", b"MSA"))
    factory = make_factory(handler, max_frame_size=200)
    with capture_logs() as logs:
        proto, _ = connect(factory)
        proto.dataReceived(
            b"junk" + VT + SECRET + encode_frame(SECRET) + VT + SECRET * 10 + FS + b"\r"
        )
        lose(proto)
    assert [entry["event"] for entry in logs] == [
        "mllp.connection_made",
        "mllp.stray_bytes",
        "mllp.frame_restarted",
        "mllp.frame_too_large",
        "mllp.connection_lost",
    ]
    for entry in logs:
        assert entry["conn_id"] == 1
        assert entry["peer"] == "10.1.2.3:40001"
        assert "SECRET" not in repr(entry)
    assert logs[-1] == {
        "event": "mllp.connection_lost", "log_level": "info", "conn_id": 1,
        "peer": "10.1.2.3:40001", "frames": 1, "unfinished_frame_bytes": 0,
        "reason": "ConnectionDone",
    }
