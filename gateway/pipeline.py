"""After the ACK: analyse each mapped report and record what came out.

:class:`AnalysisPipeline` takes an accepted message (already committed), sends every
OBR group that mapping marked ``analyse`` to the :class:`~gateway.analysis.AnalysisPool`,
and then writes, in ONE transaction: the inferences, the message status
(``analysed`` / ``skipped`` / ``failed``), the audit events, and whatever the
*hooks* add.  Hooks are how outbound delivery joins in: a hook receives the message
and its results and returns audit operations (outbox rows) that commit together with
the inferences, so a result is never recorded without its outbound messages or the
other way round.

A message ACKed before mapping (``[mllp] map_before_ack = "check"`` or ``"none"``) is
mapped and analysed in ONE worker call (``AnalysisPool.map_and_analyze``); the reports'
metadata comes back with the results (the whole ``MappedReport`` only when a hook will
read it).

At start-up :class:`gateway.feed.Resume` hands over the messages stored with status
``received`` (ACKed, analysis never finished), a few at a time, to be analysed again.  A
message an admin asked to replay (``gateway.replay``) comes in flagged ``replay``: its
earlier inferences are replaced in the same transaction, and the hooks run unless it was
asked to send nothing (``deliver = "none"``; with ``"results"`` the outbound hook leaves
the alerts out).

**Scheduling behind the ACK path.**  Accepted messages wait in a backlog (STAT orders
first, then ASAP, then the rest, then replays; oldest first within each:
``mappings.priority``; the reports of one patient one at a time, in arrival order, so
that their results are recorded and sent in that order: ``mappings.patient_key``) and at
most ``max_in_flight`` of them are in the analysis pool at once (two per
worker: a worker never waits for the next report, and the pool's queues never hold
thousands of submissions whose bookkeeping the gateway process pays for).  With a
``reactor``, a message enters the pool on a later reactor turn, so the ACKs committed in
the same batch are written first.  While messages keep arriving (the last one less
than ``quiet_period`` seconds ago) no analysis starts, unless the oldest waiting message
has waited ``max_wait`` seconds: under a burst the backlog grows while the ACK path has
the CPU, and drains in one go once the burst is over; under sustained overload analysis
runs at full speed again after ``max_wait``.  A message in the backlog is already
committed (status ``received``), so a restart resumes it; once :meth:`stop` is called (the
gateway is stopping) no analysis starts and the backlog is left to that restart.

**Content errors after the ACK** (``[mllp] map_before_ack = "none"``, or one the pre-ACK
check cannot see with ``"check"``): the message is
marked ``failed`` with a ``content_error`` event, logged (error code and location only)
and passed to the hooks as one :class:`ReportOutcome` without a report whose ``error``
is the ``ContentError``, so an enhanced-mode sender that asked for an application ACK
gets an AE on the return route.  A mapping that fails with anything else in a worker (a
bug: ``MappingFailure``) is recorded the same way as an ``analysis_failed`` event with
``stage = "mapping"`` (application AR).

**Workers that die or hang** (:mod:`gateway.analysis`).  When a worker process dies, every
analysis in the pool fails with ``WorkerDied``, the guilty one and the others alike.  Each
is tried again, one at a time, with nothing else in the pool (the pool holds the REST
API's jobs meanwhile: ``alone``), so that a death can be blamed: a message whose analysis kills its worker twice while running alone is recorded
``failed`` (``analysis_failed`` with ``stage = "worker"``) instead of killing a worker at
every start; one death alone is forgiven (the OOM killer may have picked the worker for
another process's sake).  An analysis that times out (``[analysis] timeout``) is recorded
``failed`` at once (``stage = "timeout"``): it would hang again.  Both get an application
AR where the sender asked for one; ``ri-gateway replay`` takes them up again after a fix.
A record that fails for the database (locked longer than its busy timeout, full) is
committed again, after 1 s and then twice as long each time up to 30 s, until it commits
(:class:`~gateway.commit.RetryingCommitter`); one still waiting at a stop, and any other
failure to analyse or record, leaves the message ``received`` for the next start.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure

from mappings.patient_key import patient_keys
from mappings.priority import OTHER, urgency

from .analysis import (
    AnalysisTimedOut, MappingFailure, PoolClosed, WorkerDied, with_configuration,
)
from .audit import Op, all_of, event_op, inferences_cleared_op, inferences_op, status_op
from .commit import RetryingCommitter
from .errors import audit_reason

__all__ = ["AcceptedMessage", "AnalysisPipeline", "AnalysisStatus", "AnalysedHook",
           "ReportOutcome", "WORKER_DEATHS"]

# Deaths of its worker, while it ran alone, after which a message is recorded failed.
WORKER_DEATHS = 2


@dataclass(frozen=True)
class AcceptedMessage:
    """An ACKed message, committed as ``messages.id = message_id``."""

    message_id: int
    control_id: str
    header: Any  # mappings.header.MessageHeader
    text: str  # decoded message text (CR separators)
    # mappings.inbound.MappedReport per OBR group; None when the message was ACKed
    # before mapping ([mllp] map_before_ack = "check" or "none"): the workers map it.
    reports: tuple[Any, ...] | None
    # False: segment separators as sent ("none" read MSH only); normalised before mapping.
    normalised: bool = True
    # Analysed again on an admin's request (gateway.replay): its earlier inferences are
    # replaced. ``deliver``: what the hooks send downstream, "all" (results and alerts),
    # "results" (no alerts) or "none" (the hooks do not run); see gateway.replay.
    replay: bool = False
    deliver: str = "all"

    @classmethod
    def from_stored(cls, stored: Any, read: tuple[Any, str, Any], **fields: Any
                    ) -> AcceptedMessage:
        """A stored message (``audit.StoredMessage``) read again: ``read`` is what
        ``reread(raw, charset)`` gave, ``(header, text, reports or None)``."""
        header, text, reports = read
        return cls(stored.id, stored.control_id or "", header, text,
                   None if reports is None else tuple(reports), **fields)

    @property
    def is_report(self) -> bool:
        """An ORU, mapped and analysed; another accepted type (an ADT, an ORM) is only
        stored.  Without a header (callers that hand over mapped reports) it is a report."""
        return self.header is None or self.header.is_report


@dataclass(frozen=True)
class ReportOutcome:
    """One OBR group after analysis: ``result`` or ``error`` (an EngineError), or skipped.

    ``report`` is None (and ``error`` a ``mappings.errors.ContentError``) for a message
    that could not be mapped after its ACK.
    """

    report: Any  # MappedReport, or None
    result: Any = None  # InferenceResult (None when only the JSON was fetched)
    error: BaseException | None = None
    rendered: tuple[tuple[str, str], ...] | None = None  # (kind, RI JSON text) per inference
    model_version: str | None = None

    @property
    def analysed(self) -> bool:
        return self.result is not None or self.rendered is not None

    @property
    def rendered_inferences(self) -> tuple[tuple[str, str], ...]:
        if self.rendered is not None:
            return self.rendered
        if self.result is None:
            return ()
        return tuple((str(inf.kind), json.dumps(inf.to_json()))
                     for pr in self.result.patient_results for inf in pr.inferences)

    @property
    def inferences(self) -> list[dict[str, Any]]:
        return [json.loads(text) for _, text in self.rendered_inferences]


class AnalysisStatus(str):
    """The status a message's analysis ended with (``analysed``, ``skipped``, ``failed``), as
    :meth:`AnalysisPipeline.submit` fires with it.  A ``failed`` one carries the ``error``
    that decided it: with ``[analysis] ack_after = "analysis"`` the sender's ACK says what
    was wrong (AE for its content or an engine refusal, AR for our own failure).  A ``str``,
    so that it compares and is stored as the status it names."""

    error: BaseException | None

    def __new__(cls, status: str, error: BaseException | None = None) -> AnalysisStatus:
        value = super().__new__(cls, status)
        value.error = error
        return value


def _deciding_error(failed: Sequence[ReportOutcome]) -> BaseException | None:
    """The error a message whose analysis failed is answered with: our own failure (an
    engine bug, a worker gone) where one group had it, else a refusal of the report."""
    from ri_engine.errors import RequestError

    errors = [o.error for o in failed if o.error is not None]
    return next((e for e in errors if not isinstance(e, RequestError)),
                errors[0] if errors else None)


class AnalysedHook(Protocol):
    def __call__(self, message: AcceptedMessage, outcomes: Sequence[ReportOutcome]) -> list[Op[Any]]:
        """Audit operations to commit in the same transaction as the results."""


class Analyzer(Protocol):
    def analyze(self, data: Any) -> defer.Deferred: ...


class Committer(Protocol):
    def submit(self, op: Op[Any]) -> defer.Deferred: ...


def engine_configuration(inference_types: Sequence[str] = (),
                         quality_measures: Sequence[str] = (),
                         include_evidence: bool = True) -> Any:
    """The RI model configuration for reports received over MLLP ([analysis] settings).

    Evidence is on by default: the outbound messages quote the words each inference rests
    on, and the audit log keeps them.  Quality measures are evaluated only when named.
    """
    from ri_engine.models import InferenceOptions, ModelConfiguration, QualityMeasureOptions

    options = None
    if quality_measures:
        options = InferenceOptions(quality_measure_options=QualityMeasureOptions(
            measure_types=list(quality_measures)))
    return ModelConfiguration(include_evidence=include_evidence, locale="en-US",
                              inference_types=list(inference_types) or None,
                              inference_options=options)


def _urgency(message: AcceptedMessage) -> int:
    """Where a message queues for analysis: STAT, then ASAP orders (as the sender gave
    them), then the rest; a replay (an admin's re-run of old reports) after all of them."""
    return OTHER + 1 if message.replay else urgency(message.text)


class _Backlog:
    """Messages waiting for analysis: one queue per urgency, each oldest first.

    In steady state the backlog is empty or holds one message and the order changes
    nothing. After an outage, under a burst, or behind a replay, a STAT head CT of the
    emergency department waits behind the other STAT and ASAP orders only, not behind a
    day of routine reports. A message's urgency is read only when it has to be compared
    with another's (then once), so the usual case pays nothing for it on the reactor.

    A message found waiting for an earlier report of its patient (not ``ready``) is set
    aside until :meth:`unpark` puts it back in its place, so that a long backlog of one
    patient is not looked through again each time a place in the pool is free.
    """

    def __init__(self, rank: Callable[[AcceptedMessage], int],
                 earlier: Callable[[AcceptedMessage], Sequence[int]] = lambda m: ()) -> None:
        self._rank = rank
        # The ids of the reports of the message's patients just before it (not recorded
        # when it arrived): they must be analysed first, so they queue as urgently as it.
        self._earlier = earlier
        self._arrived: deque[tuple[AcceptedMessage, defer.Deferred, float]] = deque()
        self._queues: list[deque[tuple[AcceptedMessage, defer.Deferred, float]]] = [
            deque() for _ in range(OTHER + 2)]
        self._ranks: dict[int, int] = {}  # message_id -> the queue it is (or goes back) in
        # message_id -> the message (a list: one may be submitted twice) set aside
        self._parked: dict[int, list[tuple[AcceptedMessage, defer.Deferred, float]]] = {}
        self._parked_count = 0

    def append(self, item: tuple[AcceptedMessage, defer.Deferred, float]) -> None:
        self._arrived.append(item)

    def pop_ready(self, ready: Callable[[AcceptedMessage], bool]
                  ) -> tuple[AcceptedMessage, defer.Deferred, float] | None:
        """The most urgent, then oldest message that may start (``ready``), or None."""
        if len(self._arrived) == 1 and not any(self._queues):
            return self._arrived.popleft() if ready(self._arrived[0][0]) else None
        while self._arrived:  # arrival order, so each queue stays oldest first
            item = self._arrived.popleft()
            rank = self._rank(item[0])
            self._bring_forward(item[0], rank)
            self._queues[rank].append(item)
            self._ranks[item[0].message_id] = rank
        for queue in self._queues:
            while queue:
                item = queue.popleft()
                if ready(item[0]):
                    self._ranks.pop(item[0].message_id, None)
                    return item
                self._parked.setdefault(item[0].message_id, []).append(item)
                self._parked_count += 1
        return None

    def unpark(self, message_id: int) -> None:
        """Put a message set aside back in its queue, in its place by arrival: an earlier
        report of its patient has been recorded."""
        items = self._parked.pop(message_id, ())
        for item in items:
            self._parked_count -= 1
            _insert(self._queues[self._ranks[message_id]], item)

    def _bring_forward(self, message: AcceptedMessage, rank: int) -> None:
        """Move the earlier reports of ``message``'s patients still waiting in a less
        urgent queue into queue ``rank``, in arrival order: a STAT report waits for its
        patient's earlier routine report (pipeline ``_ready``), and that one then waits
        for nothing else routine.  Each report queues at least as urgently as those of
        its patient after it, so the walk back ends at the first one urgent enough."""
        todo = list(self._earlier(message))
        while todo:
            mid = todo.pop()
            held = self._ranks.get(mid)
            if held is None or held <= rank:
                continue  # analysed already, being analysed, or urgent enough
            self._ranks[mid] = rank
            parked = self._parked.get(mid)
            if parked:  # goes back into queue ``rank`` when unparked
                todo.extend(self._earlier(parked[0][0]))
                continue
            queue = self._queues[held]
            index = next(i for i, item in enumerate(queue) if item[0].message_id == mid)
            item = queue[index]
            del queue[index]
            _insert(self._queues[rank], item)
            todo.extend(self._earlier(item[0]))

    def oldest_arrival(self) -> float | None:
        """When the oldest message that may start arrived (None: every one waits for an
        earlier report of its patient)."""
        return min((queue[0][2] for queue in (self._arrived, *self._queues) if queue),
                   default=None)

    def __len__(self) -> int:
        return (len(self._arrived) + sum(len(queue) for queue in self._queues)
                + self._parked_count)


def _insert(queue: deque[tuple[AcceptedMessage, defer.Deferred, float]],
            item: tuple[AcceptedMessage, defer.Deferred, float]) -> None:
    """``item`` into ``queue`` (oldest first) after those that arrived no later."""
    queue.insert(bisect.bisect_right(queue, item[2], key=lambda queued: queued[2]), item)


class AnalysisPipeline:
    def __init__(self, analyzer: Analyzer, committer: Committer, *,
                 hooks: Sequence[AnalysedHook] = (), metrics: Any = None, log: Any = None,
                 clock: Callable[[], float] = time.monotonic, mapping_config: Any = None,
                 configuration: Any = None, max_in_flight: int | None = None,
                 reactor: Any = None, quiet_period: float = 0.0, max_wait: float = 0.0,
                 max_backlog: int = 0) -> None:
        self.analyzer = analyzer
        # The RI model configuration given to every mapped report (see engine_configuration).
        self.configuration = configuration
        self.max_in_flight = max_in_flight or 2 * int(getattr(analyzer, "workers", 1) or 1)
        # None: start analyses at once (tests); a reactor: on a later turn (module docstring).
        self.reactor = reactor
        self.quiet_period = quiet_period
        self.max_wait = max_wait
        self._last_arrival = float("-inf")
        # Live routine reports beyond max_backlog in the backlog wait in the database only
        # (gateway.overflow.Overflow, set by build_gateway; 0 or no overflow: no bound).
        self.max_backlog = max_backlog
        self.overflow: Any = None
        self.mapping_config = mapping_config
        self.committer = committer
        # An analysis whose record fails (the database locked or full for a while) is
        # recorded again until it commits (RetryingCommitter); without a reactor (tests
        # that start analyses at once) it is left for the next start.
        self._recorder = RetryingCommitter(committer, reactor) if reactor is not None else None
        self.hooks = list(hooks)
        self.metrics = metrics
        self.clock = clock
        if log is None:
            from .logging import get_logger
            log = get_logger("gateway.analysis")
        self.log = log
        self.in_progress = 0  # in the analysis pool or being recorded
        # (message, its final-status Deferred, when it arrived): most urgent first, then
        # oldest first (see _Backlog)
        self._backlog = _Backlog(_urgency, self._earlier)
        self._start_call: Any = None  # the reactor's DelayedCall of the next _start
        self._stopped = False
        # Messages whose worker died, each to be tried again alone (module docstring), the
        # one running alone, and the deaths each has caused running alone.
        self._retry: deque[tuple[AcceptedMessage, defer.Deferred]] = deque()
        self._alone: int | None = None
        self._deaths: dict[int, int] = {}
        # message_id -> control id of each message in the pool or being recorded.
        self._analysing: dict[int, str] = {}
        # Per patient (mappings.patient_key), the ids of its messages not yet recorded, in
        # arrival order: only the first of them may be analysed (_ready).
        self._per_patient: dict[str, deque[int]] = {}
        self._keys: dict[int, tuple[str, ...]] = {}
        # Per message, those just before it in each of its patients' queues then.
        self._previous: dict[int, tuple[int, ...]] = {}
        # Stored messages whose place in their patients' queues is kept before they are
        # submitted (expect: the backlog resumed at start), and, while the patients of
        # that backlog are still being read (keys_pending), the messages submitted
        # meanwhile, in order: they take their places once it is read.
        self._expected: set[int] = set()
        # The same by patient: a live report looks up its own patients' stored reports
        # (_pull_forward) instead of walking its patients' whole queues, which is quadratic
        # when one patient's reports pile up (a long backlog, or a feed of one test patient).
        self._expected_by_key: dict[str, set[int]] = {}
        self._keys_pending = False
        self._unkeyed: dict[int, AcceptedMessage] = {}
        # The stored messages (submitted not as arrivals) in the backlog: the quiet period
        # does not hold them back (_yield_to_listener).
        self._stored_waiting: set[int] = set()
        # Hands a stored message the resume has not reached yet to the pipeline now, out of
        # turn (gateway.feed.Resume.take_up; set by build_gateway): a live report waits for
        # the stored reports of its patient, which otherwise waited for their turn in the
        # whole backlog (hours after a long outage, a STAT report included).
        self.take_up: Callable[[int], None] | None = None

    @property
    def analysing(self) -> list[str]:
        """The control ids of the messages in the analysis pool or being recorded."""
        return list(self._analysing.values())

    @property
    def backlog(self) -> int:
        """Accepted messages waiting for a place in the analysis pool."""
        return len(self._backlog)

    def stop(self) -> None:
        """Start no more analyses (the gateway is stopping and its pool closes).

        Messages still in the backlog, or waiting to be tried again alone, stay
        ``received`` and are resumed at the next start, instead of each failing against
        the closed pool.
        """
        self._stopped = True
        if self._recorder is not None:
            self._recorder.stop()  # what waits to be recorded again: the next start
        # Reports waiting in the database only (gateway.overflow) are "received" too.
        waiting = {"waiting_in_database": self.overflow.waiting} \
            if self.overflow is not None and self.overflow.waiting else {}
        if self._backlog or self._retry or waiting:
            self.log.info("analysis.stopped", backlog=len(self._backlog),
                          retry_alone=len(self._retry), **waiting)

    def add_hook(self, hook: AnalysedHook) -> None:
        self.hooks.append(hook)

    def submit(self, message: AcceptedMessage, *, arrival: bool = True) -> defer.Deferred:
        """Analyse and record; fires with the final status once it is committed.

        ``arrival``: the message has just come from a sender.  The quiet period waits out
        senders, not the gateway's own work: a message taken from the database (resumed at
        start, replayed) is not an arrival, nor is a replay whatever its caller says.
        """
        done: defer.Deferred = defer.Deferred()
        now = self.clock()
        if arrival and not message.replay:
            self._last_arrival = now
            if self._overflows(message):
                self._queue_per_patient(message)  # its place, kept while it waits on disk
                self._expect_queued(message.message_id)
                self.overflow.hold(message.message_id, done)
                return done
        self._queue_per_patient(message)
        if arrival and not message.replay:
            self._pull_forward(message.message_id)
        else:
            self._stored_waiting.add(message.message_id)
        self._backlog.append((message, done, now))
        # A stored report is not held back by the quiet period (_yield_to_listener): the look
        # scheduled for when it is over comes now. Arrivals leave it be (cheaper per message).
        self._schedule(sooner=message.message_id in self._stored_waiting)
        return done

    def _overflows(self, message: AcceptedMessage) -> bool:
        """Whether a live message waits in the database only (gateway.overflow): the
        backlog holds ``max_backlog`` messages, or others wait there already (they keep
        their order); STAT and ASAP reports always join the backlog."""
        overflow = self.overflow
        if overflow is None or not self.max_backlog or self._keys_pending:
            return False
        if not overflow.waiting and len(self._backlog) < self.max_backlog:
            return False
        return _urgency(message) >= OTHER

    def _pull_forward(self, message_id: int) -> None:
        """Have the stored reports not submitted yet that ``message_id`` waits for (those
        before it in its patients' queues, :meth:`expect`) taken up now."""
        if self.take_up is None:
            return
        if not self._expected:
            return
        waited_for: set[int] = set()
        for key in self._keys.get(message_id, ()):
            waited_for.update(self._expected_by_key.get(key, ()))
        waited_for.discard(message_id)
        for other in sorted(waited_for):  # oldest first, as they were stored
            self.take_up(other)

    def _schedule(self, delay: float = 0.0, *, sooner: bool = False) -> None:
        """Look for analyses to start after ``delay``; ``sooner``: also bring forward a look
        already scheduled later (one held back by the quiet period)."""
        if self.reactor is None:
            self._start()
        elif self._start_call is None or not self._start_call.active():
            self._start_call = self.reactor.callLater(delay, self._start)
        elif sooner and self._start_call.getTime() > self.reactor.seconds() + delay:
            self._start_call.reset(delay)

    def _start(self) -> None:
        self._start_call = None
        if self._stopped:
            return
        if self._retry or self._alone is not None:
            # A message to try alone: nothing else starts until it has been tried.
            if self._alone is None and self.in_progress == 0:
                message, done = self._retry.popleft()
                self._alone = message.message_id
                self._process(message).chainDeferred(done)
            return
        if self.reactor is not None and self._backlog:
            wait = self._yield_to_listener()
            if wait > 0:
                self._schedule(wait)
                return
        while self._backlog and self.in_progress < self.max_in_flight:
            item = self._backlog.pop_ready(self._ready)
            if item is not None:
                self._stored_waiting.discard(item[0].message_id)
            if item is None:
                return  # each waits for an earlier report of its patient (_ready)
            message, done, _ = item
            self._process(message).chainDeferred(done)

    def keys_pending(self) -> None:
        """The patients of messages stored before the start are being read (:meth:`expect`):
        a message submitted meanwhile waits until :meth:`keys_known`, since a stored
        report of its patient not read yet goes before it."""
        self._keys_pending = True

    def expect(self, message_id: int, keys: Sequence[str]) -> None:
        """Keep a place, in its patients' queues (``mappings.patient_key``), for a stored
        report that will be submitted later (the backlog resumed at start, oldest first):
        the later reports of its patients, a live correction among them, wait for it as
        if it had been submitted now.  Released when it is submitted and recorded, by
        :meth:`unexpected`, or by :meth:`no_more_expected`."""
        if message_id not in self._keys:
            self._key(message_id, tuple(keys))
            self._expect_queued(message_id)

    def _expect_queued(self, message_id: int) -> None:
        """A message queued in its patients' queues (``_key``) will be submitted later."""
        self._expected.add(message_id)
        for key in self._keys.get(message_id, ()):
            self._expected_by_key.setdefault(key, set()).add(message_id)

    def keys_known(self) -> None:
        """The stored messages' patients are read: those submitted meanwhile take their
        places, in the order they were submitted."""
        self._keys_pending = False
        unkeyed, self._unkeyed = self._unkeyed, {}
        for message in unkeyed.values():
            self._queue_per_patient(message)
        for message_id in unkeyed:
            self._pull_forward(message_id)
        for message_id in unkeyed:
            self._backlog.unpark(message_id)
        if unkeyed:
            self._schedule()

    def unexpected(self, message_id: int) -> None:
        """A stored message :meth:`expect` kept a place for will not be submitted (it no
        longer reads, or the feed gave it up): the next report of its patients may start."""
        if message_id in self._expected:
            self._not_expected(message_id)
            self._release(message_id)
            if self._backlog:
                self._schedule()

    def no_more_expected(self, up_to: int) -> None:
        """Every stored message up to id ``up_to`` that :meth:`expect` kept a place for and
        that was not submitted will not be (the resume is over: its status changed
        meanwhile, or the rest is left to the next start).  The places of later ones are
        kept: the live reports waiting in the database (gateway.overflow) are submitted
        after the resume is over, and a STAT report of their patient takes them along."""
        for message_id in [m for m in self._expected if m <= up_to]:
            self.unexpected(message_id)

    def _queue_per_patient(self, message: AcceptedMessage) -> None:
        mid = message.message_id
        self._not_expected(mid)
        if mid in self._keys:
            # Submitted again (tried alone after its worker died), or expected: keeps its place.
            return
        if self._keys_pending:
            self._unkeyed[mid] = message
            return
        self._key(mid, patient_keys(message.text) if message.is_report else ())

    def _not_expected(self, message_id: int) -> None:
        if message_id not in self._expected:
            return
        self._expected.discard(message_id)
        for key in self._keys.get(message_id, ()):
            waiting = self._expected_by_key.get(key)
            if waiting is not None:
                waiting.discard(message_id)
                if not waiting:
                    del self._expected_by_key[key]

    def _key(self, message_id: int, keys: tuple[str, ...]) -> None:
        """Queue ``message_id`` last in each of its patients' queues."""
        self._keys[message_id] = keys
        previous = []
        for key in keys:
            waiting = self._per_patient.setdefault(key, deque())
            if waiting:
                previous.append(waiting[-1])
            waiting.append(message_id)
        if previous:
            self._previous[message_id] = tuple(previous)

    def _earlier(self, message: AcceptedMessage) -> tuple[int, ...]:
        return self._previous.get(message.message_id, ())

    def _ready(self, message: AcceptedMessage) -> bool:
        """Whether no earlier report of the message's patients is waiting or analysed.

        Several workers finish in any order, and the outbox sends in the order results
        are recorded: a correction analysed beside the report it corrects was delivered
        first when the report took longer, and the EHR kept the report it had corrected.
        So the reports of one patient are analysed one at a time, oldest first, whatever
        their urgency (a STAT correction takes its routine original along).
        """
        if message.message_id in self._unkeyed:
            return False  # its patients' stored reports are still being read
        return all(self._per_patient[key][0] == message.message_id
                   for key in self._keys.get(message.message_id, ()))

    def _recorded(self, message: AcceptedMessage) -> None:
        """The message is off the pipeline (recorded, or left for the next start): the
        next report of its patient may start."""
        self._release(message.message_id)

    def _release(self, message_id: int) -> None:
        self._previous.pop(message_id, None)
        for key in self._keys.pop(message_id, ()):
            waiting = self._per_patient[key]
            waiting.remove(message_id)
            if waiting:
                self._backlog.unpark(waiting[0])
            else:
                del self._per_patient[key]

    def _recorded_later(self, result: Any, message: AcceptedMessage) -> Any:
        """:meth:`_recorded` once a failure is recorded, after finished() scheduled."""
        self._recorded(message)
        if self._backlog:
            self._schedule()
        return result

    def _yield_to_listener(self) -> float:
        """Seconds to hold analysis back while messages keep arriving (0: start now)."""
        if self._stored_waiting:
            # A stored report (resumed at start, replayed, read back from the database) has
            # waited already: held for max_wait from when it was read, each few the feeds
            # take up at a time waited that long while senders kept sending, and a resume
            # beside a busy feed went at a few reports per max_wait.
            return 0.0
        if self.overflow is not None and self.overflow.waiting:
            # A sustained overload: the backlog holds the few reports just read back from
            # the database (gateway.overflow), each waiting since it arrived, not since it
            # was read. Held for max_wait from then, analysis fell to a few reports per
            # max_wait for as long as the flood lasted.
            return 0.0
        now = self.clock()
        oldest = self._backlog.oldest_arrival()
        if oldest is None:
            return 0.0  # none may start: nothing to hold back
        quiet_in = self.quiet_period - (now - self._last_arrival)
        overdue_in = self.max_wait - (now - oldest)
        return max(0.0, min(quiet_in, overdue_in))

    def _process(self, message: AcceptedMessage) -> defer.Deferred:
        self.in_progress += 1
        self._analysing[message.message_id] = message.control_id
        started = self.clock()
        alone = self._alone == message.message_id
        if not message.is_report:
            d = defer.succeed(([], message))  # accepted and stored, nothing to analyse
        elif message.reports is None:
            if not message.normalised:
                from mappings.decoding import normalise_segments

                message = replace(message, text=normalise_segments(message.text),
                                  normalised=True)
            if hasattr(self.analyzer, "map_and_analyze"):
                d = self._map_and_analyse(message, alone)
            else:
                d = self._map(message, alone)
                d.addCallback(lambda reports: self._analyse(
                    replace(message, reports=tuple(reports)), alone))
            d.addErrback(self._mapping_failed, message)
        else:
            d = self._analyse(message, alone)
        d.addCallback(lambda done: self._record(done[0], done[1], started)
                      if isinstance(done, tuple) else done)

        def finished(result: Any) -> Any:
            self.in_progress -= 1
            self._analysing.pop(message.message_id, None)
            if alone:
                self._alone = None
            if isinstance(result, Failure):
                # Before scheduling: a message to try alone goes before any other.
                result = self._worker_failed(result, message, alone)
            else:
                self._deaths.pop(message.message_id, None)
            if any(m.message_id == message.message_id for m, _ in self._retry):
                pass  # to be tried alone: its patient's later reports wait for it still
            elif isinstance(result, defer.Deferred):  # its failure being recorded
                result.addBoth(self._recorded_later, message)
            else:
                self._recorded(message)
            if self._backlog or self._retry:
                self._schedule()
            return result

        d.addBoth(finished)
        d.addErrback(self._failed, message)
        return d

    def _worker_failed(self, failure: Failure, message: AcceptedMessage,
                       alone: bool) -> Any:
        """The analysis timed out, or its worker died: recorded, or tried again alone."""
        mid, cid = message.message_id, message.control_id
        if failure.check(AnalysisTimedOut):
            self.log.error("analysis.timed_out", control_id=cid, message_id=mid,
                           error=str(failure.value))
            return self._record_failed_at("timeout", message, failure.value)
        if not failure.check(WorkerDied) or self._stopped:
            return failure
        deaths = self._deaths.get(mid, 0) + alone
        if deaths >= WORKER_DEATHS:
            self._deaths.pop(mid, None)
            error = f"the analysis worker died {deaths} times analysing this message alone"
            self.log.error("analysis.worker_died", control_id=cid, message_id=mid,
                           deaths=deaths)
            return self._record_failed_at("worker", message, failure.value, error)
        self._deaths[mid] = deaths
        self.log.warning("analysis.retry_alone", control_id=cid, message_id=mid,
                         deaths=deaths)
        again: defer.Deferred = defer.Deferred()
        self._retry.append((message, again))
        return again

    @staticmethod
    def _alone_args(message: AcceptedMessage, alone: bool) -> dict[str, Any]:
        """The pool's ``alone`` argument for a message tried alone: the pool then holds
        everything else, the REST API's jobs too, until its analysis is over, so that a
        death while it runs is its own (``gateway.analysis``)."""
        return {"alone": ("message", message.message_id)} if alone else {}

    def _map(self, message: AcceptedMessage, alone: bool = False) -> defer.Deferred:
        map_message = getattr(self.analyzer, "map_message", None)
        if map_message is not None:
            return map_message(message.text, self.mapping_config,
                               **self._alone_args(message, alone))
        from mappings.inbound import map_oru

        return defer.maybeDeferred(map_oru, message.text, self.mapping_config)

    def _map_and_analyse(self, message: AcceptedMessage, alone: bool = False
                         ) -> defer.Deferred:
        """Deferred[(outcomes, message)] from one worker call that maps and analyses.

        The mapped reports come back whole only when a hook will read them; otherwise
        their ``ReportInfo`` is what the audit needs.
        """
        d = self.analyzer.map_and_analyze(message.text, self.mapping_config, self.configuration,
                                          with_result=bool(self._hooks_for(message)),
                                          **self._alone_args(message, alone))

        def outcomes(items: list[tuple[Any, Any]]) -> tuple[list[ReportOutcome], AcceptedMessage]:
            found = []
            for report, value in items:
                if isinstance(value, BaseException):
                    found.append(ReportOutcome(report, error=value))
                elif value is None:
                    found.append(ReportOutcome(report))
                else:
                    found.append(ReportOutcome(report, result=value.result,
                                               rendered=value.inferences,
                                               model_version=value.model_version))
            return found, replace(message, reports=tuple(r for r, _ in items))

        return d.addCallback(outcomes)

    def _analyse(self, message: AcceptedMessage, alone: bool = False) -> defer.Deferred:
        """Deferred[(outcomes, message)] once every OBR group has been analysed."""
        analyze_report = getattr(self.analyzer, "analyze_report", None)
        work = []
        for report in message.reports or ():
            if not getattr(report, "analyse", False):
                work.append(defer.succeed(ReportOutcome(report)))
                continue
            request = with_configuration(report.request, self.configuration)
            if analyze_report is not None:
                # The models cross the process boundary only when a hook will read them.
                d = analyze_report(request, with_result=bool(self._hooks_for(message)),
                                   **self._alone_args(message, alone))
                d.addCallback(lambda a, r=report: ReportOutcome(
                    r, result=a.result, rendered=a.inferences, model_version=a.model_version))
            else:
                d = self.analyzer.analyze(request, **self._alone_args(message, alone))
                d.addCallback(lambda result, r=report: ReportOutcome(
                    r, result=result, model_version=result.model_version))
            # A worker that died or timed out fails the whole message (_worker_failed); a
            # pool closed at the stop leaves it to the next start (_failed).
            d.addErrback(lambda failure, r=report: failure
                         if failure.check(WorkerDied, AnalysisTimedOut, PoolClosed)
                         else ReportOutcome(r, error=failure.value))
            work.append(d)
        return defer.gatherResults(work, consumeErrors=True).addCallbacks(
            lambda outcomes: (outcomes, message), lambda f: f.value.subFailure)

    def _mapping_failed(self, failure: Any, message: AcceptedMessage) -> Any:
        """Mapped after the commit and the content is bad: recorded; the sender has its AA
        already, or with ``ack_after = "analysis"`` gets an AE (:class:`AnalysisStatus`).

        A mapping bug (``MappingFailure``) is recorded too: it would fail again at every
        start.  Any other failure is passed on: a worker that died or an analysis that
        timed out goes to :meth:`_worker_failed`, the rest leave the message ``received``.
        """
        from mappings.errors import HL7Error

        if failure.check(MappingFailure):
            return self._mapping_bug(failure.value, message)
        if not failure.check(HL7Error):
            return failure
        error = failure.value
        self.log.warning("analysis.content_error", control_id=message.control_id,
                         message_id=message.message_id, error_code=error.err_code,
                         location=error.location)
        if self.metrics is not None:
            self.metrics.inc("ri_gateway_content_errors_total")
        return self._record_unmapped(message, error, event_op(
            "content_error", message.control_id, message.message_id,
            error_code=error.err_code, location=error.location, error=error.message))

    def _mapping_bug(self, error: BaseException, message: AcceptedMessage) -> defer.Deferred:
        self.log.error("analysis.mapping_failed", control_id=message.control_id,
                       message_id=message.message_id, error=str(error))
        return self._record_failed_at("mapping", message, error)

    def _record_failed_at(self, stage: str, message: AcceptedMessage, error: BaseException,
                          text: str | None = None) -> defer.Deferred:
        """Analysis failed at ``stage`` (``mapping``, ``timeout``, ``worker``): an
        ``analysis_failed`` event saying so (``text``, else the error's own), recorded as
        an unmapped message is."""
        return self._record_unmapped(message, error, event_op(
            "analysis_failed", message.control_id, message.message_id, stage=stage,
            error=text if text is not None else str(error)))

    def _record_unmapped(self, message: AcceptedMessage, error: BaseException,
                         event: Op[Any]) -> defer.Deferred:
        """A message that could not be mapped after its ACK: its event, status ``failed``,
        and what the hooks make of it (an application AE/AR), in one commit."""
        ops = [*self._replaced(message), event,
               status_op(message.message_id, "failed", reports=0)]
        for hook in self._hooks_for(message):
            ops.extend(hook(message, [ReportOutcome(None, error=error)]))
        return self._commit(all_of(ops), message).addCallback(
            lambda _: AnalysisStatus("failed", error))

    def _record(self, outcomes: list[ReportOutcome], message: AcceptedMessage,
                started: float) -> defer.Deferred:
        outcomes = list(outcomes)
        duration = self.clock() - started
        analysed = [o for o in outcomes if o.analysed]
        failed = [o for o in outcomes if o.error is not None]
        mid, cid = message.message_id, message.control_id
        ops: list[Op[Any]] = list(self._replaced(message))
        kinds: dict[str, int] = {}
        for outcome in analysed:
            infs = outcome.rendered_inferences
            for kind, _ in infs:
                kinds[kind] = kinds.get(kind, 0) + 1
            ops.append(inferences_op(mid, outcome.report.obr_index, outcome.report.accession, infs))
            ops.append(event_op("analysed", cid, mid, obr_index=outcome.report.obr_index,
                                accession=outcome.report.accession, inferences=len(infs),
                                model_version=outcome.model_version))
        for outcome in failed:
            ops.append(event_op("analysis_failed", cid, mid, obr_index=outcome.report.obr_index,
                                error=type(outcome.error).__name__,
                                code=getattr(outcome.error, "code", None)))
        if analysed:
            status = "analysed"
        elif failed:
            status = "failed"
        else:
            status = "skipped"
            reasons = sorted({str(getattr(o.report, "skip_reason", None) or "not analysable")
                              for o in outcomes})
            if not message.is_report:
                reasons = [f"{message.header.message_code} is not a report message"]
            ops.append(event_op("skipped", cid, mid, reasons=reasons or ["no report"]))
        ops.append(status_op(mid, status, reports=len(outcomes)))
        for hook in self._hooks_for(message):
            ops.extend(hook(message, outcomes))
        d = self._commit(all_of(ops), message)

        def done(_: Any) -> AnalysisStatus:
            if self.metrics is not None:
                self.metrics.observe("ri_gateway_analysis_seconds", duration)
                for kind, count in kinds.items():
                    self.metrics.inc("ri_gateway_inferences_total", {"kind": kind}, count)
            self.log.info("analysis", control_id=cid, message_id=mid, status=status,
                          reports=len(outcomes), inferences=sum(kinds.values()),
                          failed=len(failed), duration_ms=round(duration * 1000, 2))
            return AnalysisStatus(status, _deciding_error(failed) if status == "failed" else None)

        return d.addCallback(done)

    def _commit(self, op: Op[Any], message: AcceptedMessage) -> defer.Deferred:
        """Commit a message's record; after a database error, again until it commits.

        Meanwhile the message keeps its place in the pool and its patient's later reports
        wait for it, so results still reach every destination in the order sent.
        """
        if self._recorder is None:
            return self.committer.submit(op)

        def retrying(failure: Failure, delay: float) -> None:
            self.log.error("analysis.not_recorded", control_id=message.control_id,
                           message_id=message.message_id, error=failure.type.__name__,
                           reason=audit_reason(failure.value), retry_in=delay)

        return self._recorder.submit(op, retrying)

    def _hooks_for(self, message: AcceptedMessage) -> list[AnalysedHook]:
        return self.hooks if message.deliver != "none" else []

    @staticmethod
    def _replaced(message: AcceptedMessage) -> list[Op[Any]]:
        """A replay's first op: the inferences of the earlier analysis go (the events keep
        what happened), so the message's inferences are those of its latest analysis."""
        return [inferences_cleared_op(message.message_id)] if message.replay else []

    def _failed(self, failure: Any, message: AcceptedMessage) -> None:
        # The results could not be committed (database error), or the gateway is stopping
        # and its pool dropped the work: the message keeps status 'received' and is
        # analysed again at the next start.
        if self._stopped:
            # A routine stop, not an error for the operator's alerting to page about.
            self.log.info("analysis.interrupted", control_id=message.control_id,
                          message_id=message.message_id)
            return None
        self.log.error("analysis.not_recorded", control_id=message.control_id,
                       message_id=message.message_id, error=failure.type.__name__,
                       reason=audit_reason(failure.value))
        return None

    def record_unreadable(self, stored: Any, error: BaseException, *, stage: str
                          ) -> defer.Deferred:
        """A stored message that no longer decodes or maps, found at ``stage`` (``resume``,
        ``replay``): ``failed`` with an event saying why, and without the inferences of an
        earlier analysis (this failure is its latest analysis; a message resumed has none).
        Fires with ``"failed"`` once recorded."""
        return self.committer.submit(all_of([
            inferences_cleared_op(stored.id),
            event_op("analysis_failed", stored.control_id, stored.id,
                     error=type(error).__name__, stage=stage),
            status_op(stored.id, "failed")])).addCallback(lambda _: "failed")
