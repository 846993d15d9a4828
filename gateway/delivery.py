"""Delivery of the outbox over MLLP: one worker per destination, one message at a time.

A worker takes the oldest pending message of its destination, sends it on its
connection and waits for the ACK (``ack_timeout``). Then:

    AA / CA with MSA-2 = the sent MSH-10   delivered
    AE / AR / CE / CR with a final         dead-lettered at once: a content error (100-104,
      error code (table 0357)              198, 199), an unsupported type, event,
                                           processing id or version (200-203), a duplicate
                                           key (205)
    AE / AR / CE / CR otherwise            retried with backoff (204, 206, 207, no code)
    MSA-2 naming another message           connection closed, retried with backoff
    unreadable reply                       connection closed, retried with backoff
    no ACK in time (AckTimeout)            the client aborts the connection; retried
    connection refused / lost              retried with backoff

A worker whose outbox finds the database file or its WAL deleted or replaced under the
gateway (``DatabaseLost``) stops: it sends nothing more and marks nothing more, until a
restart opens the database at its path again.

The error code, not MSA-1, decides between the last two (:mod:`gateway.downstream_acks`
says why for each code); the outbox's last error and the audit event record the codes,
their meaning and location, never the destination's text. A message that has failed
``max_attempts`` times is dead-lettered; a dead-lettered alert of a route with
``escalate_to`` goes on to those destinations (:mod:`gateway.escalation`), as does, with
``escalate_after``, one still undelivered after that long. Waits grow
exponentially (``backoff_initial * backoff_multiplier ** (attempt - 1)``, at most
``backoff_max``) with +/- ``jitter`` randomness so many gateways do not retry in step.
The worker never sends a later message while an earlier one is pending: the order of
delivery per destination is the order of the outbox (a dead-lettered message no longer
holds up the queue). State lives in the outbox table, so a restarted gateway resumes
where it stopped (at-least-once: a message whose ACK was lost is sent again).

Seams: ``connect(destination) -> Deferred[sender]`` (an ``mllp.client.MLLPClientProtocol``
by default), ``clock`` (``IReactorTime``), ``random() -> [0, 1)``, and ``run_db(fn, *args)
-> Deferred`` (database calls; by default on a one-thread pool in production, directly
in tests).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from mappings.ack import parse_ack
from mllp.errors import AckTimeout, ConnectionClosed

from .downstream_acks import refusal
from .errors import DatabaseLost
from .outbox import Outbox, OutboxRow
from .routing import Destination

if TYPE_CHECKING:
    from .escalation import Escalation

__all__ = ["DeliveryService", "DestinationWorker", "backoff_delay", "warn_unrouted"]

_log = structlog.get_logger("ri_gateway.delivery")


class Sender(Protocol):
    @property
    def is_open(self) -> bool: ...
    def send(self, payload: bytes, timeout: float) -> defer.Deferred: ...
    def close(self) -> defer.Deferred: ...


Connect = Callable[[Destination], defer.Deferred]
RunDb = Callable[..., defer.Deferred]


def direct_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
    return defer.maybeDeferred(fn, *args, **kwargs)


def backoff_delay(dest: Destination, attempt: int, rand: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    try:
        base = min(dest.backoff_max, dest.backoff_initial * dest.backoff_multiplier ** (attempt - 1))
    except OverflowError:
        # A float power overflows from 2.0 ** 1024 on: long past backoff_max, and a raise
        # here left the attempt unrecorded, so a large max_attempts never dead-lettered.
        base = dest.backoff_max
    return max(0.0, base * (1 + dest.jitter * (2 * rand - 1)))


class _Outcome(Exception):
    """How one attempt ended, when it did not end with a matching AA/CA."""

    def __init__(self, error: str, *, ack_code: str | None = None, final: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.ack_code = ack_code
        self.final = final


class DestinationWorker:
    def __init__(self, dest: Destination, outbox: Outbox, *, connect: Connect,
                 clock: IReactorTime, random: Callable[[], float] = _random.random,
                 run_db: RunDb = direct_db, metrics: Any = None,
                 escalation: Escalation | None = None,
                 on_escalated: Callable[[set[str]], Any] | None = None,
                 on_released: Callable[[set[str]], Any] | None = None) -> None:
        self.dest = dest
        self.escalation = escalation
        self._on_escalated = on_escalated
        self._on_released = on_released
        self.outbox = outbox
        self._connect = connect
        self._clock = clock
        self._random = random
        self._run_db = run_db
        self._metrics = metrics
        self._sender: Sender | None = None
        self._busy = False
        self._again = False
        self._timer: IDelayedCall | None = None
        self._stopped = True
        self._lost = False  # the database was deleted or replaced: nothing more is taken
        self._idle_waiters: list[defer.Deferred] = []

    # --- control --------------------------------------------------------------------------

    def start(self) -> None:
        self._stopped = False
        self.wake()

    def wake(self) -> None:
        """Look at the queue now (a message was enqueued, or a retry is due)."""
        if self._stopped or self._lost:
            return
        if self._busy:
            self._again = True
            return
        self._cancel_timer()
        self._busy = True
        self._again = False
        d = self._run_db(self.outbox.head, self.dest.name)
        d.addCallback(self._got_head)
        d.addErrback(self._db_failed)

    def stop(self) -> defer.Deferred:
        self._stopped = True
        self._cancel_timer()
        sender, self._sender = self._sender, None
        if sender is not None:
            return sender.close()
        return defer.succeed(None)

    def when_idle(self) -> defer.Deferred:
        """Fires when the worker has nothing left to send now (tests and shutdown)."""
        if not self._busy:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    # --- the loop -------------------------------------------------------------------------

    def _got_head(self, row: OutboxRow | None) -> None:
        if row is None or self._stopped:
            self._done()
            return
        wait = row.next_attempt_at - self._clock.seconds()
        if wait > 0:
            self._timer = self._clock.callLater(wait, self._timer_fired)
            self._done()
            return
        d = self._attempt(row)
        d.addCallbacks(self._succeeded, self._failed, callbackArgs=(row,), errbackArgs=(row,))
        d.addErrback(self._db_failed)

    def _timer_fired(self) -> None:
        self._timer = None
        self.wake()

    def _attempt(self, row: OutboxRow) -> defer.Deferred:
        if self._sender is not None and not self._sender.is_open:
            # A kept connection the peer closed while idle: open another, not an attempt.
            # Only before sending: once the message is written, a lost connection is a
            # failed attempt like any other (the peer may have read it). Trapping that
            # too sent it again at once, and the audit showed one attempt for two sends.
            self._sender = None

        def send(sender: Sender) -> defer.Deferred:
            if self._stopped:
                # Connected after stop(): sending now would put the message on a connection
                # the shutdown drops at once, with no attempt recorded.
                sender.close()
                raise defer.CancelledError("delivery stopped before sending")
            self._sender = sender
            return sender.send(row.payload, self.dest.ack_timeout)

        # maybeDeferred: an endpoint that raises at once (a TLS caCertsDir or key file gone
        # since start) is a failed attempt like a refused connection, audited and retried;
        # raised through, it ended the loop as a database error with the row untouched,
        # never attempted, audited or dead-lettered.
        if self._sender is not None:
            d = defer.succeed(self._sender)
        else:
            d = defer.maybeDeferred(self._connect, self.dest)
        d.addCallback(send)
        d.addCallback(self._check_ack, row)
        return d

    def _check_ack(self, reply: bytes, row: OutboxRow) -> str:
        try:
            info = parse_ack(reply)
        except Exception as exc:  # noqa: BLE001 - any unreadable reply is a failed attempt
            self._drop_connection()
            raise _Outcome(f"unreadable ACK ({type(exc).__name__})") from None
        if info.acked_control_id != row.control_id:
            # Not the answer to this message (a late or foreign ACK): the pairing on this
            # connection can no longer be trusted.
            self._drop_connection()
            raise _Outcome(f"ACK names another message (MSA-2 {info.acked_control_id!r})",
                           ack_code=info.code)
        refused = refusal(info)
        if refused is None:
            return info.code
        raise _Outcome(refused.error, ack_code=info.code, final=refused.final)

    def _succeeded(self, ack_code: str, row: OutboxRow) -> defer.Deferred:
        self._count("delivered")
        _log.info("outbox.delivered", destination=self.dest.name, outbox_id=row.id,
                  control_id=row.source_control_id, attempt=row.attempts + 1)
        d = self._run_db(self.outbox.record_delivered, row, ack_code)
        d.addCallback(lambda _: self._next())
        return d

    def _failed(self, failure: Failure, row: OutboxRow) -> defer.Deferred | None:
        if self._stopped:
            self._busy = False
            if not failure.check(ConnectionClosed):
                return None
            # Our own shutdown closed the connection while the ACK was awaited: the message
            # was written and the peer may have read it, so the attempt is audited (it was
            # left out, and the resend after the restart came from nowhere in the trail).
            # Not the peer's fault: due again at once, never dead-lettered by a shutdown.
            _log.info("outbox.delivery_interrupted", destination=self.dest.name, outbox_id=row.id,
                      control_id=row.source_control_id, attempt=row.attempts + 1)
            return self._run_db(self.outbox.record_failed, row, "gateway stopped before the ACK",
                                retry_at=self._clock.seconds())
        if failure.check(_Outcome):
            outcome: _Outcome = failure.value
        elif failure.check(AckTimeout):
            self._sender = None  # the client has aborted the connection
            hint = getattr(failure.value, "hint", "")
            outcome = _Outcome(f"no ACK within {self.dest.ack_timeout:g} s"
                               + (f" ({hint})" if hint else ""))
        else:
            self._drop_connection()
            outcome = _Outcome(_describe(failure))
        attempt = row.attempts + 1
        final = outcome.final or attempt >= self.dest.max_attempts
        retry_at = None if final else self._clock.seconds() + backoff_delay(
            self.dest, attempt, self._random())
        self._count("dead_lettered" if final else "failed")
        _log.warning("outbox.delivery_failed", destination=self.dest.name, outbox_id=row.id,
                     control_id=row.source_control_id, attempt=attempt, error=outcome.error,
                     dead_lettered=final)
        escalate = self.escalation.plan(row) if final and self.escalation else []
        d = self._run_db(self.outbox.record_failed, row, outcome.error, retry_at=retry_at,
                         ack_code=outcome.ack_code, escalate=escalate)
        d.addCallback(self._dead_lettered, row, escalate)
        d.addCallback(lambda _: self._next())
        return d

    def _dead_lettered(self, escalated: bool, row: OutboxRow, planned: list[Any]) -> None:
        if escalated:
            _escalated("dead_lettered", 1, planned, self._metrics, self._on_escalated,
                       destination=self.dest.name, outbox_id=row.id,
                       control_id=row.source_control_id)

    def _next(self) -> None:
        # A delivery or a dead-letter may have released alerts held behind it: at this
        # destination (woken below) or, for an escalated copy, at its alert's.
        released = self.outbox.take_released() - {self.dest.name}
        if released and self._on_released is not None:
            self._on_released(released)
        self._busy = False
        self.wake()

    def _done(self) -> None:
        self._busy = False
        if self._again:
            self.wake()
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)

    def _db_failed(self, failure: Failure) -> None:
        if failure.check(DatabaseLost):
            # Only a restart opens the database at its path again: trying every second
            # would only repeat this line.
            _log.error("outbox.delivery_stopped", destination=self.dest.name,
                       reason=str(failure.value))
            self._lost = True
            self._cancel_timer()
            self._drop_connection()
            self._busy = False
            self._done()
            return
        # The database is the source of truth: try again later rather than guess.
        _log.error("outbox.database_error", destination=self.dest.name, error=_describe(failure))
        self._busy = False
        if not self._stopped:
            self._cancel_timer()
            self._timer = self._clock.callLater(max(1.0, self.dest.backoff_initial), self._timer_fired)
        self._done()

    def _drop_connection(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("ri_gateway_deliveries_total",
                              {"destination": self.dest.name, "outcome": outcome})


def warn_unrouted(backlog: Mapping[str, tuple[int, float]], configured: Collection[str]) -> None:
    """Log the pending messages of destinations no longer configured (renamed or removed):
    no worker sends them and no metric counts them, so without this line they would wait
    unseen until someone ran ``outbox list``."""
    for name, (count, _oldest) in sorted(backlog.items()):
        if name not in configured:
            _log.warning("outbox.unknown_destination", destination=name, pending=count)


def _escalated(reason: str, alerts: int, planned: Collection[Any], metrics: Any,
               notify: Callable[[set[str]], Any] | None, **fields: Any) -> None:
    """``alerts`` were escalated (``planned``, their copies): log, count, and wake the
    workers of the destinations the copies go to."""
    destinations = {p.destination for p in planned}
    _log.warning("outbox.escalated", reason=reason, alerts=alerts, to=sorted(destinations),
                 **fields)
    if metrics is not None:
        metrics.inc("ri_gateway_escalations_total", {"reason": reason}, value=alerts)
    if notify is not None:
        notify(destinations)


def _describe(failure: Failure) -> str:
    """The error type and its message, if it has one (some, like UnlistableError, do not)."""
    message = failure.getErrorMessage()
    return f"{failure.type.__name__}: {message}"[:300] if message else failure.type.__name__


def mllp_connect(reactor: Any) -> Connect:
    from mllp.client import connect_client

    def connect(dest: Destination) -> defer.Deferred:
        return connect_client(reactor, dest.endpoint, lenient_end=dest.lenient_end)

    return connect


class DeliveryService(Service):
    """All destination workers; resumes pending messages at start, polls as a safety net.

    The poll (``poll_interval`` seconds) also picks up messages re-queued by
    ``ri-gateway outbox retry`` from another process.

    ``read_backlog`` and ``read_held`` give the outbox metrics, read on the reactor thread
    at each scrape (``outbox.backlog`` and ``outbox.held`` by default). The gateway gives it a read-only connection of its
    own: on the delivery writer's connection a scrape waited for the statement the writer
    thread was in, a write waiting up to its busy timeout for the audit writer's lock.
    """

    def __init__(self, outbox: Outbox, destinations: Mapping[str, Destination], *,
                 reactor: Any = None, connect: Connect | None = None,
                 random: Callable[[], float] = _random.random, run_db: RunDb = direct_db,
                 metrics: Any = None, poll_interval: float = 5.0,
                 on_stop: Callable[[], Any] | None = None,
                 escalation: Escalation | None = None,
                 read_backlog: Callable[[], Mapping[str, tuple[int, float]]] | None = None,
                 read_held: Callable[[], Mapping[str, int]] | None = None,
                 ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.outbox = outbox
        self.reactor = reactor
        self.run_db = run_db
        self.metrics = metrics
        self.poll_interval = poll_interval
        self._on_stop = on_stop
        self.escalation = escalation
        self._read_backlog = read_backlog or outbox.backlog
        self._read_held = read_held or outbox.held
        self._escalating = False
        self._started_at: float | None = None
        connect = connect or mllp_connect(reactor)
        self.workers = {
            name: DestinationWorker(dest, outbox, connect=connect, clock=reactor, random=random,
                                    run_db=run_db, metrics=metrics, escalation=escalation,
                                    on_escalated=self.notify, on_released=self.notify)
            for name, dest in destinations.items()}
        self._poll: task.LoopingCall | None = None
        if metrics is not None and hasattr(metrics, "add_collector"):
            metrics.add_collector(self._collect)

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        self._started_at = self.reactor.seconds()
        for worker in self.workers.values():
            worker.start()
        self._poll = task.LoopingCall(self._tick)
        self._poll.clock = self.reactor
        self._poll.start(self.poll_interval, now=False)
        self.escalate_overdue()
        d = self.run_db(self.outbox.backlog)
        d.addCallback(warn_unrouted, self.workers)
        d.addErrback(lambda failure: _log.error("outbox.database_error", error=_describe(failure)))

    def stopService(self) -> defer.Deferred:  # noqa: N802 - Twisted's name
        super().stopService()
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        d = defer.DeferredList([w.stop() for w in self.workers.values()])
        if self._on_stop is not None:
            on_stop = self._on_stop
            d.addBoth(lambda result: (on_stop(), result)[1])
        return d

    def notify(self, destinations: Any = None) -> None:
        """Wake the workers of ``destinations`` (all when None), e.g. after an enqueue."""
        names = self.workers if destinations is None else destinations
        for name in names:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake()

    def when_idle(self) -> defer.Deferred:
        return defer.DeferredList([w.when_idle() for w in self.workers.values()])

    def _tick(self) -> None:
        if getattr(self.outbox, "lost", None) is not None:
            return  # the workers have stopped (DestinationWorker._db_failed)
        self.notify()
        self.escalate_overdue()

    def escalate_overdue(self) -> defer.Deferred:
        """Escalate the alerts still undelivered ``escalate_after`` seconds after they were
        queued (run at start and every ``poll_interval``; one queued before the start gets
        its destination's turn first, ``Escalation.due``); fires with how many were."""
        escalation = self.escalation
        if escalation is None or not escalation.by_delay or self._escalating:
            return defer.succeed(0)
        self._escalating = True
        now = self.reactor.seconds()
        started = self._started_at if self._started_at is not None else float("-inf")

        def escalate() -> tuple[int, list[Any]]:
            pairs = [(row, escalation.plan(row))
                     for after, routes in escalation.by_delay.items()
                     for row in self.outbox.unescalated_alerts(routes, now - after)
                     if escalation.due(row, after, now=now, started=started)]
            if not pairs:
                return 0, []
            return (self.outbox.escalate(pairs, "undelivered"),
                    [p for _, planned in pairs for p in planned])

        def escalated(result: tuple[int, list[Any]]) -> int:
            count, planned = result
            if count:
                _escalated("undelivered", count, planned, self.metrics, self.notify)
            return count

        def failed(failure: Failure) -> int:
            _log.error("outbox.database_error", error=_describe(failure))
            return 0

        def done(result: int) -> int:
            self._escalating = False
            return result

        return self.run_db(escalate).addCallbacks(escalated, failed).addBoth(done)

    def _collect(self, metrics: Any) -> None:
        # Read on the scrape; a failed read leaves the previous values.
        try:
            backlog, held = self._read_backlog(), self._read_held()
        except Exception:  # noqa: BLE001
            return
        now = self.reactor.seconds()
        for name in self.workers:
            count, oldest = backlog.get(name, (0, None))
            metrics.set("ri_gateway_outbox_depth", count, {"destination": name})
            metrics.set("ri_gateway_outbox_oldest_pending_seconds",
                        max(0.0, now - oldest) if oldest is not None else 0.0, {"destination": name})
            metrics.set("ri_gateway_outbox_held", held.get(name, 0), {"destination": name})
