"""The MLLP client: send a message, get the next reply frame.

MLLP has no correlation id, so the client keeps exactly one message in flight
on a connection and takes the next reply frame as its answer.  Everything that
could break that pairing ends the connection instead:

* no reply within the timeout: the Deferred fails with :class:`AckTimeout` and
  the connection is aborted, so a late reply can never answer a later message;
* the caller cancels the Deferred: same, with ``CancelledError``;
* the reply frame is larger than ``max_frame_size``: :class:`ReplyTooLarge`, aborted.

``close()`` closes cleanly (what was written is sent first), and aborts the connection
when that has not happened within :data:`CLOSE_GRACE` seconds: a peer that never answers
the TLS handshake, or never reads what was written, holds a clean close open for ever.

Frames that arrive while nothing is awaited (and any further frames in the
read that carried the reply) are logged by size and dropped.  A duplicate
reply arriving in a *later* read cannot be told apart here; callers that must
be sure check the reply's contents (for HL7, MSA-2 against the sent MSH-10).

Connection lost while waiting: :class:`ConnectionClosed`.  ``send()`` on a closed
connection, or while a reply is awaited (:class:`ClientBusy`), fails at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from mllp.errors import AckTimeout, ClientBusy, ConnectionClosed, InvalidPayload, ReplyTooLarge
from mllp.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    Frame,
    FrameDecoder,
    FrameRestarted,
    FrameTooLarge,
    StrayBytes,
    encode_frame,
)
from mllp.server import describe_peer


# Seconds a clean close may take before the connection is aborted.
CLOSE_GRACE = 2.0


class MLLPClientProtocol(Protocol):
    """One client connection; see the module docstring for the pairing rules."""

    def __init__(
        self,
        *,
        clock: IReactorTime | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        lenient_end: bool = False,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self._clock: IReactorTime = clock  # type: ignore[assignment]
        self._decoder = FrameDecoder(max_frame_size, lenient_end)
        self._waiting: Deferred[bytes] | None = None
        self._timer: IDelayedCall | None = None
        self._connected = False
        self._closed = False  # lost, or we asked to close/abort: no more sends
        self._lost = False
        self._close_waiters: list[Deferred[None]] = []
        self._close_timer: IDelayedCall | None = None
        self._log: Any = structlog.get_logger()

    # -- public API --------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while ``send()`` can be used: connected and not closing or closed.

        A peer may close an idle connection between messages; check this before
        sending to reconnect instead of spending an attempt on a dead connection.
        """
        return self._connected and not self._closed and not self.transport.disconnecting

    def send(self, payload: bytes, timeout: float) -> Deferred[bytes]:
        """Send one framed message; fire with the payload of the next reply frame."""
        if not self.is_open:
            return fail(ConnectionClosed("the connection is closed"))
        if self._waiting is not None:
            return fail(ClientBusy("a reply is still awaited on this connection"))
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            return fail(ValueError(f"timeout must be a positive number, not {timeout!r}"))
        try:
            frame = encode_frame(payload)
        except (TypeError, InvalidPayload) as exc:
            return fail(exc)
        waiting: Deferred[bytes] = Deferred(self._cancelled)
        self._waiting = waiting
        self._timer = self._clock.callLater(timeout, self._timed_out, timeout)
        self.transport.write(frame)
        return waiting

    def close(self) -> Deferred[None]:
        """Close the connection; fire once it is closed."""
        if self._lost:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._close_waiters.append(done)
        self._closed = True
        if not self.transport.disconnecting:
            self.transport.loseConnection()
        if self._close_timer is None:
            # A gateway stopping during such a delivery waited for the ACK timeout (30 s by
            # default, as long as configured) before it could exit.
            self._close_timer = self._clock.callLater(CLOSE_GRACE, self._close_overdue)
        return done

    # -- Twisted callbacks -------------------------------------------------------

    def connectionMade(self) -> None:
        self._connected = True
        self._log = structlog.get_logger().bind(peer=describe_peer(self.transport.getPeer()))

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        reply: bytes | None = None
        too_large = False
        # Decide which frame answers the waiting message before firing anything:
        # a callback that sends the next message must not receive a frame from
        # this same read.
        for event in self._decoder.feed(data):
            if isinstance(event, Frame):
                if reply is None and self._waiting is not None:
                    reply = event.payload
                else:
                    self._log.warning("mllp.unexpected_reply", size=len(event.payload))
            elif isinstance(event, StrayBytes):
                self._log.warning("mllp.stray_bytes", count=event.count)
            elif isinstance(event, FrameRestarted):
                self._log.warning("mllp.frame_restarted", discarded=event.discarded)
            elif isinstance(event, FrameTooLarge):
                too_large = True
                self._log.warning(
                    "mllp.frame_too_large", size=event.size, limit=self._decoder.max_frame_size
                )
                break
        if too_large:
            self._abort()
            if reply is None:
                self._finish(failure=ReplyTooLarge(self._decoder.max_frame_size))
        if reply is not None:
            self._finish(reply=reply)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._lost = True
        if self._waiting is not None:
            # A peer that ends its reply with FS alone and then closes (one reply per
            # connection) is as plainly answering as one that keeps it open: say so here too.
            hint = self._lone_fs_hint()
            self._finish(
                failure=ConnectionClosed(
                    f"connection lost before the reply arrived ({describe_loss(reason)})"
                    + (f"; {hint}" if hint else "")
                )
            )
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self._close_timer = None
        waiters, self._close_waiters = self._close_waiters, []
        for done in waiters:
            done.callback(None)

    # -- internals ---------------------------------------------------------------

    def _finish(self, reply: bytes | None = None, failure: Exception | None = None) -> None:
        waiting, self._waiting = self._waiting, None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if waiting is None:
            return
        if failure is not None:
            waiting.errback(failure)
        else:
            waiting.callback(reply)

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        hint = self._lone_fs_hint()
        self._log.warning("mllp.reply_timeout", timeout=timeout,
                          unfinished_reply_bytes=self._decoder.buffered,
                          fs_without_cr=self._decoder.ended_by_lone_fs)
        self._abort()
        self._finish(failure=AckTimeout(timeout, hint))

    def _lone_fs_hint(self) -> str:
        """What to tell the operator when the unfinished reply ends with FS and no CR."""
        if not self._decoder.ended_by_lone_fs:
            return ""
        # The peer answered, but ends its frames with FS alone: without this the operator
        # saw only "no ACK" from a peer that plainly sends them.
        return (f"a reply of {self._decoder.buffered} bytes ended with FS and no CR: "
                "the peer may need lenient_end")

    def _cancelled(self, waiting: Deferred[bytes]) -> None:
        # The Deferred fails with CancelledError by itself; the reply that may
        # still come must not answer anything else, hence the abort.
        self._waiting = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._abort()

    def _close_overdue(self) -> None:
        self._close_timer = None
        if not self._lost:
            self._log.warning("mllp.close_aborted", after=CLOSE_GRACE)
            self.transport.abortConnection()

    def _abort(self) -> None:
        self._closed = True
        self.transport.abortConnection()


def describe_loss(reason: Failure) -> str:
    """Why a connection ended, for a log line or an operator: the error's type, and what
    TLS said (a certificate not trusted, a host name that does not match it).

    The type alone of a failed handshake is ``Error``, the same for every TLS failure, and
    an undelivered message said no more than that. Twisted's own connection errors keep
    their name alone: their text repeats it.
    """
    name = reason.type.__name__
    error = reason.value
    if type(error).__module__.startswith("twisted."):
        return name
    args = getattr(error, "args", ())
    if args and isinstance(args[0], list):
        # OpenSSL: [(library, function, reason), ...]; service_identity: [DNSMismatch(...)]
        reasons = [str(entry[-1]) if isinstance(entry, tuple) else repr(entry)
                   for entry in args[0] if entry]
        detail = "; ".join(reason for reason in reasons if reason)
    else:
        detail = str(error)
    detail = " ".join(detail.split())[:200]
    return f"{name}: {detail}" if detail else name


def connect_client(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    lenient_end: bool = False,
) -> Deferred[MLLPClientProtocol]:
    """Connect to a Twisted client endpoint, or an endpoint string (``tcp:host=H:port=P``,
    ``tls:...``).

    An endpoint object spares a caller that holds a host and a port the string syntax, in
    which every ``:`` of an IPv6 address has to be escaped.
    """
    if isinstance(endpoint, str):
        endpoint = clientFromString(reactor, endpoint)
    protocol = MLLPClientProtocol(
        clock=reactor, max_frame_size=max_frame_size, lenient_end=lenient_end
    )
    return connectProtocol(endpoint, protocol)


def send_messages(
    reactor: Any,
    endpoint_string: str,
    payloads: Iterable[bytes],
    timeout: float,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    lenient_end: bool = False,
) -> Deferred[list[bytes]]:
    """Send ``payloads`` one after another on one connection; fire with the replies.

    Every payload is checked before connecting, so a payload that cannot be
    framed fails the call without sending anything.  The connection is closed
    before the Deferred fires, also on failure.
    """
    return Deferred.fromCoroutine(
        _send_all(reactor, endpoint_string, list(payloads), timeout, max_frame_size, lenient_end)
    )


async def _send_all(
    reactor: Any,
    endpoint_string: str,
    payloads: list[bytes],
    timeout: float,
    max_frame_size: int,
    lenient_end: bool,
) -> list[bytes]:
    for payload in payloads:
        encode_frame(payload)
    if not payloads:
        return []
    client = await connect_client(
        reactor, endpoint_string, max_frame_size=max_frame_size, lenient_end=lenient_end
    )
    replies: list[bytes] = []
    try:
        for payload in payloads:
            replies.append(await client.send(payload, timeout))
    finally:
        await client.close()
    return replies
