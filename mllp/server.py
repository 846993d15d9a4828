"""The MLLP listener: a Twisted protocol over :class:`mllp.framing.FrameDecoder`.

Serve it on any Twisted endpoint string (``tcp:2575:interface=127.0.0.1``,
``ssl:2576:privateKey=key.pem:certKey=cert.pem``)::

    endpoint = serverFromString(reactor, "tcp:2575:interface=127.0.0.1")
    endpoint.listen(MLLPServerFactory(handler))

Behaviour on each connection:

* **Serial processing.**  Frames queue; ``handler.handle()`` is called for the
  next frame only after the reply to the previous one was written (or the
  handler answered ``None``).  Replies therefore leave in arrival order even
  when the handler returns slow Deferreds.
* **Replies.**  The handler returns the reply payload (unframed bytes), a
  Deferred firing with it, or ``None`` for no reply.  A handler that raises
  :class:`mllp.errors.CloseWithoutReply` (or fails with it) leaves the frame
  unanswered and has the connection closed: logged as a warning
  (``mllp.closed_without_reply``).  A handler that fails otherwise (or returns
  something that cannot be framed) is a bug in the application: the failure is
  logged by exception type only, as an error, and the connection is closed.
  Either way the frames queued behind it are not handed over.
* **Back-pressure.**  Reading pauses while ``MAX_QUEUED_FRAMES`` frames wait
  for the handler and resumes when the queue shrinks.
* **Framing problems.**  Bytes outside frames are counted and logged, never
  answered.  A frame larger than ``max_frame_size`` stops reading: frames that
  arrived before it are still answered, then the connection is closed.
* **Half-close.**  A peer that closes its sending side after its last frame
  (``shutdown(SHUT_WR)``, ``nc -q``, some engines) is still answered: every
  frame received before the end of its input gets its reply, in order, then
  the connection is closed.  A partial frame pending at that point can never
  be completed; it is discarded and logged by size.  This needs a transport
  that reports half-closes (TCP does); over TLS the peer's close ends the
  connection at once, as Twisted's TLS layer does not pass half-closes on.
* **Idle timeout.**  The connection is closed after ``idle_timeout`` seconds
  without input while no frame is waiting for its reply (a peer that keeps a
  half-sent frame open counts as idle).  The timer stops while the handler
  works, so a slow handler never costs the peer its reply.
* **Connection limit.**  Connections beyond ``max_connections`` are aborted as
  soon as they are made.
* **Stop.**  ``factory.close_connections(grace)`` (once the port no longer
  listens) stops reading every connection, lets the frame each handler holds be
  answered, closes politely, and aborts what is still open after ``grace``
  seconds; frames not yet handed over go unanswered (the sender sends them again).
* Nothing is handed to the handler and nothing is written once the connection
  is closing.  A handler still working when the connection is lost is left to
  finish (its Deferred is not cancelled); its reply is dropped and logged
  (``mllp.reply_dropped``), and the handler is told through its optional
  ``reply_dropped(payload, reply, conn)`` method, so it can say which message
  went unanswered (this package never parses the payload).

Logging goes through ``structlog.get_logger()`` with ``conn_id`` and ``peer``
bound; sizes and counts are logged, payload bytes never are.

``on_event(name, **fields)`` (optional) lets the application count what happens.
Every call carries ``conn_id``; the names and their other fields are:

===========================  ===================================================
``connection_made``          ``peer``
``connection_refused``       ``peer`` (over ``max_connections``)
``connection_lost``          ``peer``
``frame``                    ``size`` (payload bytes)
``stray_bytes``              ``count``
``frame_restarted``          ``discarded`` (VT inside an open frame)
``frame_too_large``          ``size``, ``limit``
``partial_frame_discarded``  ``size`` (payload bytes pending at the input's end)
``idle_timeout``             ``timeout``
``handler_failed``           ``error`` (exception type name)
``closed_without_reply``     ``reason`` (the :class:`CloseWithoutReply` subclass's name)
``reply_dropped``            ``size`` (the connection was gone or closing)
===========================  ===================================================

An exception raised by ``on_event`` is logged and otherwise ignored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol as TypingProtocol

import structlog
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from mllp.errors import CloseWithoutReply, InvalidPayload
from mllp.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    Frame,
    FrameDecoder,
    FrameRestarted,
    FrameTooLarge,
    StrayBytes,
    encode_frame,
)

EventCallback = Callable[..., None]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Who sent a frame: the listener's connection number and the peer address."""

    conn_id: int
    peer: str


class MessageHandler(TypingProtocol):
    """What the listener calls for every frame.

    A handler may also define ``reply_dropped(payload, reply, conn)``: it is called
    (and its exceptions logged and ignored) when the reply to ``payload`` was ready
    but could not be written because the connection was gone or closing.
    """

    def handle(
        self, payload: bytes, conn: ConnectionInfo
    ) -> Deferred[bytes | None] | bytes | None:
        """Return the reply payload (unframed), a Deferred of it, or None for no reply."""


@dataclass(slots=True)
class ListenerStats:
    """Running counters of one listener (or several, if they share the object).

    ``connections_total`` counts accepted connections; refused ones are only in
    ``connections_refused``.
    """

    connections_total: int = 0
    connections_open: int = 0
    connections_refused: int = 0
    frames: int = 0
    bytes_outside_frames: int = 0
    oversize_frames: int = 0
    idle_timeouts: int = 0


def describe_peer(address: IAddress) -> str:
    """``host:port`` (``[v6host]:port``) for IP addresses, ``str(address)`` otherwise."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


@implementer(IHalfCloseableProtocol)
class MLLPServerProtocol(Protocol, TimeoutMixin):
    """One listener connection; configured by its :class:`MLLPServerFactory`.

    It provides ``IHalfCloseableProtocol`` so that TCP reports the end of the
    peer's input (``readConnectionLost``) instead of tearing the connection
    down: the frames received before it still get their replies.
    """

    #: Frames waiting for the handler beyond which reading stops until the
    #: queue shrinks, so a sender that does not wait for replies cannot fill
    #: memory.  Senders that wait for each ACK never get near it.
    MAX_QUEUED_FRAMES = 64

    def __init__(self, factory: MLLPServerFactory, conn_id: int) -> None:
        self.factory = factory
        self.conn_id = conn_id
        self.info = ConnectionInfo(conn_id, "")
        # TimeoutMixin schedules through this attribute; pointing it at the
        # factory's clock makes idle timeouts testable with task.Clock.
        self.callLater = factory.clock.callLater
        self._decoder = FrameDecoder(factory.max_frame_size, factory.lenient_end)
        self._queue: deque[bytes] = deque()
        self._accepted = False
        self._busy = False  # the handler is working on a frame
        self._pumping = False  # _pump() is on the stack (guards against recursion)
        self._draining = False  # input stopped; close once the queued frames are answered
        self._input_closed = False  # the peer closed its sending side (half-close)
        self._stopped = False  # closing or closed: deliver nothing, write nothing
        self._paused = False  # reading paused because too many frames are queued
        self._frames = 0
        self._log: Any = structlog.get_logger().bind(conn_id=conn_id)

    # -- Twisted callbacks ---------------------------------------------------

    def connectionMade(self) -> None:
        peer = describe_peer(self.transport.getPeer())
        self.info = ConnectionInfo(self.conn_id, peer)
        self._log = structlog.get_logger().bind(conn_id=self.conn_id, peer=peer)
        if not self.factory._admit(self):
            self._stopped = True
            self._log.warning("mllp.connection_refused", limit=self.factory.max_connections)
            # Abort rather than close politely: over TLS a polite close would
            # first finish the handshake for a connection we do not want.
            self.transport.abortConnection()
            return
        self._accepted = True
        self._log.info("mllp.connection_made")
        self._update_idle_timer()

    def dataReceived(self, data: bytes) -> None:
        if self._stopped or self._draining or self.transport.disconnecting:
            return
        stats = self.factory.stats
        for event in self._decoder.feed(data):
            if isinstance(event, Frame):
                self._frames += 1
                stats.frames += 1
                self.factory._emit("frame", conn_id=self.conn_id, size=len(event.payload))
                self._queue.append(event.payload)
                self._pump()
                if len(self._queue) >= self.MAX_QUEUED_FRAMES and not self._paused:
                    self._paused = True
                    self.transport.pauseProducing()
            elif isinstance(event, StrayBytes):
                stats.bytes_outside_frames += event.count
                self.factory._emit("stray_bytes", conn_id=self.conn_id, count=event.count)
                self._log.warning("mllp.stray_bytes", count=event.count)
            elif isinstance(event, FrameRestarted):
                self.factory._emit(
                    "frame_restarted", conn_id=self.conn_id, discarded=event.discarded
                )
                self._log.warning("mllp.frame_restarted", discarded=event.discarded)
            elif isinstance(event, FrameTooLarge):
                self._too_large(event.size)
                break
            if self._stopped:
                break
        self._update_idle_timer()

    def readConnectionLost(self) -> None:
        """The peer closed its sending side: answer what it sent, then close.

        Called by TCP instead of ``connectionLost`` because this protocol is
        half-closeable; the write side stays open until ``_pump`` has answered
        every queued frame and calls ``loseConnection()``.  The reactor no
        longer reads this connection, so the factory's set of open connections
        holds the reference that keeps it alive until then.
        """
        if self._input_closed:
            return
        self._input_closed = True
        if self._stopped:
            return  # already closing (timed out, refused, handler failed)
        partial = self._decoder.buffered
        if partial:
            # No further byte can complete it; answering part of a message is not an option.
            self.factory._emit("partial_frame_discarded", conn_id=self.conn_id, size=partial)
            self._log.warning("mllp.partial_frame_discarded", size=partial)
        unanswered = len(self._queue) + self._busy
        if unanswered:
            self._log.info("mllp.input_closed", unanswered=unanswered)
        self._draining = True
        self._pump()  # closes at once when nothing is left to answer
        self._update_idle_timer()

    def writeConnectionLost(self) -> None:
        # Twisted calls this only after loseWriteConnection(), which this protocol
        # never uses; should our sending side close anyway, no reply can leave.
        if not self._stopped:
            self._stopped = True
            self._queue.clear()
            self.setTimeout(None)
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopped = True
        self._queue.clear()
        self.setTimeout(None)
        if not self._accepted:
            return
        self._accepted = False
        self.factory._release(self)
        self._log.info(
            "mllp.connection_lost",
            frames=self._frames,
            unfinished_frame_bytes=self._decoder.buffered,
            reason=reason.type.__name__,
        )

    def finish(self) -> None:
        """Close at a stop: read no more, let the frame the handler holds be answered
        (its reply goes out before the close), and close politely once it is.

        Frames received but not handed over yet are not answered: the sender gets no
        reply for them and sends them again.  Closing at once (or leaving the connection
        to the reactor's shutdown, which discards what is still buffered) lost the reply
        to a message the handler had already taken, stored and answered.
        """
        if self._stopped or self.transport.disconnecting:
            return
        self._queue.clear()
        self._draining = True
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        self._pump()  # closes at once when no frame is being answered
        self._update_idle_timer()

    def timeoutConnection(self) -> None:
        if self._stopped:
            return
        timeout = self.factory.idle_timeout
        self.factory.stats.idle_timeouts += 1
        self.factory._emit("idle_timeout", conn_id=self.conn_id, timeout=timeout)
        self._log.info(
            "mllp.idle_timeout", timeout=timeout, unfinished_frame_bytes=self._decoder.buffered
        )
        self._stopped = True
        self.transport.loseConnection()

    # -- processing ------------------------------------------------------------

    def _pump(self) -> None:
        """Hand queued frames to the handler, one at a time."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and not self._busy and not self._stopped:
                if self.transport.disconnecting:
                    self._queue.clear()
                    break
                payload = self._queue.popleft()
                self._busy = True
                d = maybeDeferred(self.factory.handler.handle, payload, self.info)
                d.addCallbacks(self._reply_ready, self._handler_failed, callbackArgs=(payload,))
                # A handler that answered synchronously has cleared _busy already.
        finally:
            self._pumping = False
        if self._stopped or self.transport.disconnecting:
            return
        if self._draining:
            if not self._busy and not self._queue:
                self._stopped = True
                self.transport.loseConnection()
        elif self._paused and len(self._queue) < self.MAX_QUEUED_FRAMES:
            self._paused = False
            self.transport.resumeProducing()

    def _reply_ready(self, reply: object, payload: bytes) -> None:
        self._busy = False
        if self._stopped or self.transport.disconnecting:
            if reply is not None:
                self._reply_dropped(payload, reply)
            return
        if reply is not None:
            try:
                frame = encode_frame(reply)  # type: ignore[arg-type]
            except (TypeError, InvalidPayload) as exc:
                self._drop(type(exc).__name__)
                return
            self.transport.write(frame)
        self._pump()
        self._update_idle_timer()

    def _handler_failed(self, failure: Failure) -> None:
        self._busy = False
        if failure.check(CloseWithoutReply):
            # The handler's decision (a frame it can make no reply to): said once, as a
            # warning, and not counted as a failure of the application.
            reason = failure.type.__name__
            self._log.warning("mllp.closed_without_reply", reason=reason)
            self.factory._emit("closed_without_reply", conn_id=self.conn_id, reason=reason)
            if not self._stopped:
                self._close_now()
            return
        if self._stopped:
            # The connection is gone already; the failure still deserves a log line.
            self._log.error("mllp.handler_failed", error=failure.type.__name__)
            return
        self._drop(failure.type.__name__)

    def _reply_dropped(self, payload: bytes, reply: object) -> None:
        """A reply was ready after the connection was lost or started closing.

        The sender never sees it, although the handler may have acted on the
        message: logged (size only) and reported to the handler, which knows
        what the message was.
        """
        size = len(reply) if isinstance(reply, (bytes, bytearray, memoryview)) else None
        self._log.warning("mllp.reply_dropped", size=size)
        self.factory._emit("reply_dropped", conn_id=self.conn_id, size=size)
        hook = getattr(self.factory.handler, "reply_dropped", None)
        if hook is None:
            return
        try:
            hook(payload, reply, self.info)
        except Exception as exc:
            # Type only, as for handle(): an exception's text may quote the payload.
            self._log.error("mllp.reply_dropped_hook_failed", error=type(exc).__name__)

    def _drop(self, error: str) -> None:
        # Only the exception type is logged: messages may quote the payload.
        self._log.error("mllp.handler_failed", error=error)
        self.factory._emit("handler_failed", conn_id=self.conn_id, error=error)
        self._close_now()

    def _close_now(self) -> None:
        """Hand nothing more over and close after what was written."""
        self._stopped = True
        self._queue.clear()
        self.setTimeout(None)
        self.transport.loseConnection()

    def _too_large(self, size: int) -> None:
        limit = self.factory.max_frame_size
        self.factory.stats.oversize_frames += 1
        self.factory._emit("frame_too_large", conn_id=self.conn_id, size=size, limit=limit)
        self._log.warning("mllp.frame_too_large", size=size, limit=limit)
        self._draining = True
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        self._pump()

    def _update_idle_timer(self) -> None:
        timeout = self.factory.idle_timeout
        if timeout is None:
            return
        if self._stopped or self._busy or self._queue or self._draining:
            self.setTimeout(None)
        else:
            self.setTimeout(timeout)  # (re)starts the countdown


class MLLPServerFactory(ServerFactory):
    """Builds :class:`MLLPServerProtocol` connections that answer through ``handler``."""

    protocol = MLLPServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        handler: MessageHandler,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        lenient_end: bool = False,
        idle_timeout: float | None = 300.0,
        max_connections: int = 100,
        clock: IReactorTime | None = None,
        stats: ListenerStats | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        if not callable(getattr(handler, "handle", None)):
            raise TypeError("handler must have a handle(payload, conn) method")
        # Constructing a decoder validates max_frame_size with the decoder's own message.
        FrameDecoder(max_frame_size, lenient_end)
        if idle_timeout is not None and (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, (int, float))
            or not idle_timeout > 0
        ):
            raise ValueError(
                f"idle_timeout must be a positive number or None, not {idle_timeout!r}"
            )
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ValueError(
                f"max_connections must be a positive integer, not {max_connections!r}"
            )
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.handler = handler
        self.max_frame_size = max_frame_size
        self.lenient_end = lenient_end
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.stats = stats if stats is not None else ListenerStats()
        self.on_event = on_event
        # This factory's own open connections (stats may be shared).  Holding them
        # also keeps half-closed connections alive: the reactor drops its reference
        # once it stops reading one (see readConnectionLost).
        self._open: set[MLLPServerProtocol] = set()
        self._all_closed: list[Deferred] = []  # close_connections() waiting
        self._last_conn_id = 0
        self._log: Any = structlog.get_logger()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def buildProtocol(self, addr: IAddress) -> MLLPServerProtocol:
        self._last_conn_id += 1
        return MLLPServerProtocol(self, self._last_conn_id)

    def _admit(self, proto: MLLPServerProtocol) -> bool:
        if self.open_connections >= self.max_connections:
            self.stats.connections_refused += 1
            self._emit("connection_refused", conn_id=proto.conn_id, peer=proto.info.peer)
            return False
        self._open.add(proto)
        self.stats.connections_total += 1
        self.stats.connections_open += 1
        self._emit("connection_made", conn_id=proto.conn_id, peer=proto.info.peer)
        return True

    def _release(self, proto: MLLPServerProtocol) -> None:
        self._open.discard(proto)
        self.stats.connections_open -= 1
        self._emit("connection_lost", conn_id=proto.conn_id, peer=proto.info.peer)
        if not self._open:
            waiting, self._all_closed = self._all_closed, []
            for d in waiting:
                d.callback(None)

    def close_connections(self, grace: float) -> Deferred:
        """At a stop (the port no longer listening): :meth:`MLLPServerProtocol.finish`
        every open connection, and abort those still open ``grace`` seconds later (a
        handler that never answers, a peer that does not read).  Fires once all are
        closed."""
        if not self._open:
            return succeed(None)
        closed: Deferred = Deferred()
        self._all_closed.append(closed)
        for proto in list(self._open):
            proto.finish()
        if not self._open:
            return closed  # fired by the last _release
        late = self.clock.callLater(grace, self._abort_open)

        def done(result: object) -> object:
            if late.active():
                late.cancel()
            return result

        return closed.addBoth(done)

    def _abort_open(self) -> None:
        for proto in list(self._open):
            proto.transport.abortConnection()

    def _emit(self, name: str, **fields: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(name, **fields)
        except Exception:
            self._log.exception("mllp.on_event_failed", event_name=name)
