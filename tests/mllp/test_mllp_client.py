from __future__ import annotations

from typing import Any

import pytest
from mllp_battery import MSG_A, MSG_B, splits
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mllp import (
    AckTimeout,
    ClientBusy,
    ConnectionClosed,
    InvalidPayload,
    MLLPClientProtocol,
    MLLPError,
    ReplyTooLarge,
    encode_frame,
)


# StringTransport sets `disconnected` only in abortConnection(), so it tells an
# abort from a graceful loseConnection().


def connected(**options: Any) -> tuple[MLLPClientProtocol, StringTransport, Clock]:
    clock = Clock()
    client = MLLPClientProtocol(clock=clock, **options)
    transport = StringTransport()
    client.makeConnection(transport)
    return client, transport, clock


def result_of(d: Deferred[Any]) -> list[Any]:
    """Collect what a Deferred fired with (a value or a Failure) without raising."""
    box: list[Any] = []
    d.addBoth(box.append)
    return box


def test_send_writes_one_frame_and_fires_with_the_reply() -> None:
    client, transport, _ = connected()
    got = result_of(client.send(MSG_A, timeout=5))
    assert transport.value() == encode_frame(MSG_A)
    assert got == []
    client.dataReceived(encode_frame(b"MSA|AA|A1"))
    assert got == [b"MSA|AA|A1"]


def test_reply_split_any_way() -> None:
    reply = encode_frame(b"MSH|^~\\&|GW\rMSA|AA|A1")
    for size, chunks in splits(reply):
        client, _, _ = connected()
        got = result_of(client.send(MSG_A, timeout=5))
        for chunk in chunks:
            client.dataReceived(chunk)
        assert got == [b"MSH|^~\\&|GW\rMSA|AA|A1"], f"chunk size {size}"


def test_sequential_sends_on_one_connection() -> None:
    client, transport, clock = connected()
    first = result_of(client.send(MSG_A, timeout=5))
    client.dataReceived(encode_frame(b"ack A"))
    second = result_of(client.send(MSG_B, timeout=5))
    clock.advance(4)
    client.dataReceived(encode_frame(b"ack B"))
    assert (first, second) == ([b"ack A"], [b"ack B"])
    assert transport.value() == encode_frame(MSG_A) + encode_frame(MSG_B)
    clock.advance(100)  # the cancelled timers never fire
    assert not transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_timeout_aborts_so_a_late_reply_cannot_answer_the_next_message() -> None:
    client, transport, clock = connected()
    got = result_of(client.send(MSG_A, timeout=5))
    clock.advance(4.9)
    assert got == []
    clock.advance(0.1)
    assert got[0].check(AckTimeout)
    assert got[0].value.timeout == 5
    assert isinstance(got[0].value, MLLPError)
    assert transport.disconnected

    client.dataReceived(encode_frame(b"late reply for A"))
    following = result_of(client.send(MSG_B, timeout=5))
    assert following[0].check(ConnectionClosed)
    assert transport.value() == encode_frame(MSG_A)  # MSG_B never went out


def test_connection_lost_while_waiting() -> None:
    client, _, clock = connected()
    got = result_of(client.send(MSG_A, timeout=5))
    client.connectionLost(Failure(ConnectionLost()))
    assert got[0].check(ConnectionClosed)
    assert "connection lost before the reply arrived (ConnectionLost)" in str(got[0].value)
    assert clock.getDelayedCalls() == []


def test_is_open_follows_the_connection() -> None:
    assert not MLLPClientProtocol(clock=Clock()).is_open
    client, transport, _ = connected()
    assert client.is_open
    transport.loseConnection()  # e.g. closing on our side
    assert not client.is_open
    other, _, _ = connected()
    other.connectionLost(Failure(ConnectionDone()))  # e.g. the peer closed an idle connection
    assert not other.is_open


def test_send_after_connection_lost_fails_at_once() -> None:
    client, transport, _ = connected()
    client.connectionLost(Failure(ConnectionDone()))
    got = result_of(client.send(MSG_A, timeout=5))
    assert got[0].check(ConnectionClosed)
    assert transport.value() == b""


def test_send_before_connection_fails() -> None:
    got = result_of(MLLPClientProtocol(clock=Clock()).send(MSG_A, timeout=5))
    assert got[0].check(ConnectionClosed)


def test_second_send_while_waiting_is_refused() -> None:
    client, transport, _ = connected()
    client.send(MSG_A, timeout=5)
    got = result_of(client.send(MSG_B, timeout=5))
    assert got[0].check(ClientBusy)
    assert transport.value() == encode_frame(MSG_A)


def test_extra_frames_in_the_reply_read_do_not_answer_the_next_message() -> None:
    client, _, _ = connected()
    answers: list[Any] = []

    def send_next(reply: bytes) -> None:
        answers.append(reply)
        answers.append(result_of(client.send(MSG_B, timeout=5)))

    client.send(MSG_A, timeout=5).addCallback(send_next)
    client.dataReceived(encode_frame(b"ack A") + encode_frame(b"duplicate ack A"))
    assert answers == [b"ack A", []]
    client.dataReceived(encode_frame(b"ack B"))
    assert answers == [b"ack A", [b"ack B"]]


def test_unsolicited_frame_is_dropped() -> None:
    client, _, _ = connected()
    client.dataReceived(encode_frame(b"nobody asked"))
    got = result_of(client.send(MSG_A, timeout=5))
    assert got == []
    client.dataReceived(b"noise" + encode_frame(b"ack A"))
    assert got == [b"ack A"]


def test_reply_too_large_aborts() -> None:
    client, transport, clock = connected(max_frame_size=10)
    got = result_of(client.send(MSG_A, timeout=5))
    client.dataReceived(b"\x0b" + b"x" * 11)
    assert got[0].check(ReplyTooLarge)
    assert got[0].value.limit == 10
    assert transport.disconnected
    assert clock.getDelayedCalls() == []


def test_cancel_aborts_the_connection() -> None:
    client, transport, clock = connected()
    d = client.send(MSG_A, timeout=5)
    got = result_of(d)
    d.cancel()
    assert got[0].check(CancelledError)
    assert transport.disconnected
    assert clock.getDelayedCalls() == []


def test_lenient_client_accepts_fs_without_cr() -> None:
    client, _, _ = connected(lenient_end=True)
    got = result_of(client.send(MSG_A, timeout=5))
    client.dataReceived(b"\x0back\x1c")
    assert got == [b"ack"]


@pytest.mark.parametrize(
    ("payload", "timeout", "error"),
    [
        (b"a\x0bb", 5, InvalidPayload),
        ("text", 5, TypeError),
        (MSG_A, 0, ValueError),
        (MSG_A, None, ValueError),
    ],
)
def test_bad_arguments_fail_without_sending(payload: Any, timeout: Any, error: type) -> None:
    client, transport, _ = connected()
    got = result_of(client.send(payload, timeout))
    assert got[0].check(error)
    assert transport.value() == b""
    # the connection stays usable
    ok = result_of(client.send(MSG_A, timeout=5))
    client.dataReceived(encode_frame(b"ack"))
    assert ok == [b"ack"]


def test_close_fires_when_the_connection_is_gone() -> None:
    client, transport, _ = connected()
    closed = result_of(client.close())
    assert transport.disconnecting
    assert closed == []
    client.connectionLost(Failure(ConnectionDone()))
    assert closed == [None]
    assert result_of(client.close()) == [None]
