"""Test doubles for the listener: a recording handler, an event log, fake connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mllp_battery import FS
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mllp import ConnectionInfo, MLLPServerFactory, MLLPServerProtocol

PEER = IPv4Address("TCP", "10.1.2.3", 40001)
SECRET = b"PID|1||SECRET-PATIENT-NAME"


def ack_for(payload: bytes) -> bytes:
    # Replies may not contain FS, and some battery payloads do.
    return b"ACK:" + payload.replace(FS, b"<FS>")


class RecordingHandler:
    def __init__(self, reply: Callable[[bytes], Any] = ack_for) -> None:
        self.reply = reply
        self.calls: list[tuple[bytes, ConnectionInfo]] = []

    def handle(self, payload: bytes, conn: ConnectionInfo) -> Any:
        self.calls.append((payload, conn))
        return self.reply(payload)

    @property
    def payloads(self) -> list[bytes]:
        return [payload for payload, _ in self.calls]


class EventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.events if event == name]


def make_factory(handler: Any = None, **options: Any) -> MLLPServerFactory:
    options.setdefault("clock", Clock())
    return MLLPServerFactory(handler or RecordingHandler(), **options)


def connect(
    factory: MLLPServerFactory, peer: Any = PEER
) -> tuple[MLLPServerProtocol, StringTransport]:
    proto = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    proto.makeConnection(transport)
    return proto, transport


def lose(proto: MLLPServerProtocol) -> None:
    proto.connectionLost(Failure(ConnectionDone()))


def peer_half_closes(proto: MLLPServerProtocol) -> None:
    """The peer shut down its sending side (``shutdown(SHUT_WR)``), as TCP reports it.

    This is what ``twisted.internet.tcp.Connection.readConnectionLost`` does: a
    protocol that provides ``IHalfCloseableProtocol`` is told the input ended; any
    other protocol loses the whole connection.
    """
    half_closeable = IHalfCloseableProtocol(proto, None)
    if half_closeable is not None:
        half_closeable.readConnectionLost()
    else:
        lose(proto)
