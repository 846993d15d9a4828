"""Listener and client over real loopback sockets (TCP and TLS), ports chosen by the OS.

twisted.trial's TestCase runs the reactor for the Deferred a test returns, and
pytest runs these tests like any other.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from mllp import (
    ConnectionClosed,
    ConnectionInfo,
    MLLPServerFactory,
    ReplyTooLarge,
    connect_client,
    encode_frame,
    send_messages,
)

# Twisted's own ssl: server endpoint still hands pyOpenSSL objects to OpenSSL.
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


class NumberingHandler:
    """Answers every frame with its sequence number and a digest of the frame's size."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, ConnectionInfo]] = []

    def handle(self, payload: bytes, conn: ConnectionInfo) -> bytes:
        self.seen.append((payload, conn))
        return b"ACK %d len=%d" % (len(self.seen), len(payload))


class ConnectionWatch:
    """on_event callback that lets a test wait until the server saw connections close."""

    def __init__(self) -> None:
        self.lost = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def __call__(self, name: str, **fields: Any) -> None:
        if name == "connection_lost":
            self.lost += 1
            ready = [(n, d) for n, d in self._waiters if self.lost >= n]
            self._waiters = [(n, d) for n, d in self._waiters if self.lost < n]
            for _, d in ready:
                d.callback(None)

    def connections_lost(self, count: int) -> Deferred[None]:
        if self.lost >= count:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        return d


class HeldReplies:
    """Answers each frame only when ``release()`` is called, as a slow commit would."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self._held: list[tuple[bytes, Deferred[bytes]]] = []

    def handle(self, payload: bytes, conn: ConnectionInfo) -> Deferred[bytes]:
        self.seen.append(payload)
        d: Deferred[bytes] = Deferred()
        self._held.append((payload, d))
        return d

    def release(self) -> None:
        # The listener hands over the next frame from inside callback(): take them
        # out first so that frame is held too, and released by the loop.
        while self._held:
            payload, d = self._held.pop(0)
            d.callback(b"ACK " + payload)


def send_then_half_close(port: int, data: bytes) -> bytes:
    """A blocking sender: ``data``, ``shutdown(SHUT_WR)``, then everything until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def make_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a key and a self-signed certificate for 127.0.0.1; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ri-gateway test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path = directory / "server-key.pem"
    cert_path = directory / "server-cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class LoopbackTests(unittest.TestCase):
    def setUp(self) -> None:
        self.handler = NumberingHandler()
        self.watch = ConnectionWatch()
        self.directory = Path(tempfile.mkdtemp(prefix="mllp-test-"))
        self.addCleanup(shutil.rmtree, self.directory, True)

    async def _serve(self, description: str, **options: Any) -> tuple[MLLPServerFactory, int]:
        factory = MLLPServerFactory(
            self.handler, clock=reactor, on_event=self.watch, **options
        )
        port: IListeningPort = await serverFromString(reactor, description).listen(factory)
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    def test_tcp_send_messages(self) -> Deferred[None]:
        async def go() -> None:
            factory, port = await self._serve("tcp:0:interface=127.0.0.1")
            payloads = [b"MSH|^~\\&|RIS|H|GW|H|||ORU^R01|%d|P|2.5" % i for i in range(20)]
            replies = await send_messages(
                reactor, f"tcp:host=127.0.0.1:port={port}", payloads, timeout=10
            )
            assert replies == [b"ACK %d len=%d" % (i + 1, len(p)) for i, p in enumerate(payloads)]
            assert [payload for payload, _ in self.handler.seen] == payloads
            assert {conn.conn_id for _, conn in self.handler.seen} == {1}
            assert self.handler.seen[0][1].peer.startswith("127.0.0.1:")
            await self.watch.connections_lost(1)
            assert factory.stats.frames == 20
            assert factory.stats.connections_open == 0

        return Deferred.fromCoroutine(go())

    def test_tcp_peer_that_half_closes_gets_every_reply(self) -> Deferred[None]:
        async def go() -> None:
            handler = HeldReplies()
            events: list[str] = []

            def on_event(name: str, **fields: Any) -> None:
                events.append(name)
                self.watch(name, **fields)
                # The replies wait until the server has seen the end of the input (the
                # partial frame is discarded there), so they must cross the half-close.
                # Without half-close support the connection is lost instead, and the
                # replies are released into a closed connection.
                if name in ("partial_frame_discarded", "connection_lost"):
                    handler.release()

            factory = MLLPServerFactory(handler, clock=reactor, on_event=on_event)
            port: IListeningPort = await serverFromString(
                reactor, "tcp:0:interface=127.0.0.1").listen(factory)
            self.addCleanup(port.stopListening)
            sent = encode_frame(b"MSH|1") + encode_frame(b"MSH|2") + b"\x0bMSH|3 never ended"
            received = await deferToThread(send_then_half_close, port.getHost().port, sent)
            assert received == encode_frame(b"ACK MSH|1") + encode_frame(b"ACK MSH|2")
            assert handler.seen == [b"MSH|1", b"MSH|2"]
            await self.watch.connections_lost(1)
            assert events.index("partial_frame_discarded") < events.index("connection_lost")
            assert "reply_dropped" not in events
            assert (factory.stats.connections_open, factory.open_connections) == (0, 0)

        return Deferred.fromCoroutine(go())

    def test_tcp_oversize_reply_fails_the_client(self) -> Deferred[None]:
        async def go() -> None:
            _, port = await self._serve("tcp:0:interface=127.0.0.1")
            client = await connect_client(
                reactor, f"tcp:host=127.0.0.1:port={port}", max_frame_size=5
            )
            try:
                await client.send(b"MSH|x", timeout=10)
            except ReplyTooLarge:
                pass
            else:
                raise AssertionError("the 13-byte reply should exceed the 5-byte limit")
            await client.close()
            await self.watch.connections_lost(1)

        return Deferred.fromCoroutine(go())

    def test_tcp_connection_over_the_limit_is_refused_and_service_goes_on(self) -> Deferred[None]:
        async def go() -> None:
            factory, port = await self._serve("tcp:0:interface=127.0.0.1", max_connections=1)
            endpoint = f"tcp:host=127.0.0.1:port={port}"
            first = await connect_client(reactor, endpoint)
            assert await first.send(b"MSH|1", timeout=10) == b"ACK 1 len=5"
            second = await connect_client(reactor, endpoint)
            try:
                await second.send(b"MSH|2", timeout=10)
            except ConnectionClosed:
                pass
            else:
                raise AssertionError("the second connection should have been refused")
            assert await first.send(b"MSH|3", timeout=10) == b"ACK 2 len=5"
            await first.close()
            await self.watch.connections_lost(1)
            assert factory.stats.connections_refused == 1
            assert [payload for payload, _ in self.handler.seen] == [b"MSH|1", b"MSH|3"]

        return Deferred.fromCoroutine(go())

    def test_tls_exchange_with_generated_certificate(self) -> Deferred[None]:
        async def go() -> None:
            key_path, cert_path = make_self_signed_certificate(self.directory)
            trust = self.directory / "trust"
            trust.mkdir()
            shutil.copy(cert_path, trust / "ca.pem")
            _, port = await self._serve(
                f"ssl:0:privateKey={key_path}:certKey={cert_path}:interface=127.0.0.1"
            )
            client = await connect_client(
                reactor, f"tls:host=127.0.0.1:port={port}:trustRoots={trust}"
            )
            message = b"MSH|^~\\&|RIS|H|GW|H|||ORU^R01|T1|P|2.5"
            reply = await client.send(message, timeout=10)
            assert reply == b"ACK 1 len=%d" % len(message)
            await client.close()
            await self.watch.connections_lost(1)

        return Deferred.fromCoroutine(go())

    def test_tls_client_refuses_an_untrusted_certificate(self) -> Deferred[None]:
        async def go() -> None:
            key_path, cert_path = make_self_signed_certificate(self.directory)
            other = self.directory / "other"
            other.mkdir()
            _, other_cert = make_self_signed_certificate(other)
            trust = self.directory / "trust"
            trust.mkdir()
            shutil.copy(other_cert, trust / "ca.pem")
            _, port = await self._serve(
                f"ssl:0:privateKey={key_path}:certKey={cert_path}:interface=127.0.0.1"
            )
            client = await connect_client(
                reactor, f"tls:host=127.0.0.1:port={port}:trustRoots={trust}"
            )
            try:
                await client.send(b"MSH|x", timeout=10)
            except ConnectionClosed:
                pass
            else:
                raise AssertionError("the handshake should fail against the wrong trust root")
            await self.watch.connections_lost(1)
            assert self.handler.seen == []

        return Deferred.fromCoroutine(go())
