"""Accepting REST jobs, running their analysis and recording the outcome.

The flow of one job::

    PUT  -> accept(): validate (400 on a bad request), store as notStarted; the
                      Deferred fires once that is committed (429 when full)
         -> start():  wait (notStarted) while ``max_running`` jobs are in the analysis
                      pool, then mark running and hand the request to the analysis
                      runner (which works off the reactor thread)
         -> succeeded with the result, or failed with an RI error object

Every store write returns a Deferred (it commits on the audit writer's thread), so
nothing here waits for the database.

A job whose worker process died (under it, or under another analysis beside it) is tried
once more alone, with nothing else in the analysis pool, unless it was replaced meanwhile;
a second death fails it.  A job cut short because the pool closed (the gateway is
stopping) stays ``running`` and is resumed at the next start.

:meth:`JobRunner.resume` starts again every job that was accepted but not
finished, e.g. because the process stopped; :meth:`JobRunner.start_purging`
deletes expired jobs periodically.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from gateway.analysis import PoolClosed, WorkerDied
from gateway.logging import get_logger
from ri_engine.models import (
    INFERENCE_TYPES, InferenceResult, ModelConfiguration, RadiologyInsightsData,
)

from .errors import ApiError, job_error_from
from .job_store import JobRecord, JobStore, NoRoom

__all__ = ["API_VERSIONS", "Analyzer", "JobRunner", "RequestParser"]

log = get_logger("gateway.http")

# Kinds the 2024-10-01 version added; a 2024-04-01 client neither asks for nor expects them.
_ADDED_2024_10_01 = ("scoringAndAssessment", "guidance", "qualityMeasure")
API_VERSIONS: dict[str, tuple[str, ...]] = {
    "2024-04-01": tuple(k for k in INFERENCE_TYPES if k not in _ADDED_2024_10_01),
    "2024-10-01": INFERENCE_TYPES,
}

PURGE_INTERVAL = 300.0
# A failed job's error when its analysis killed the worker process while running alone.
WORKER_DIED_MESSAGE = ("The analysis of this job stopped the analysis worker process, also "
                       "when run alone; the job was not analysed.")


class Analyzer(Protocol):
    """What runs the engine: ``gateway.analysis.AnalysisPool`` or a test double."""

    def analyze(self, data: RadiologyInsightsData) -> Deferred[InferenceResult]: ...


RequestParser = Callable[[Any], RadiologyInsightsData]


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        analysis: Analyzer,
        *,
        parse: RequestParser,
        clock: IReactorTime,
        max_unfinished: int | None = None,
        retry_after: int | None = 1,
        max_running: int | None = None,
    ) -> None:
        self.store = store
        self.analysis = analysis
        self._parse = parse
        self._clock = clock
        # Jobs waiting for (or in) analysis at once. REST jobs share the analysis pool with
        # the reports arriving over MLLP: without a bound, one client queueing jobs in a
        # loop would hold back every report behind them (and all restart after a restart).
        self.max_unfinished = max_unfinished
        # Jobs in the analysis pool at once (None: no bound); the others wait here,
        # notStarted, in the order they came.  Handed over as they arrived, a thousand jobs
        # queued in the pool held every MLLP report arriving behind them, and a client
        # replacing one job again and again queued an analysis per PUT (a replacement takes
        # no room under max_unfinished); a job replaced while it waits here is skipped.
        self.max_running = max_running
        self._waiting: deque[tuple[JobRecord, RadiologyInsightsData, Deferred[None]]] = deque()
        self._running = 0
        self._handing_over = False  # _hand_over's loop is on the stack
        self._pool_closed = False  # the gateway is stopping: nothing more is handed over
        self._retry_after = retry_after
        self._purging: LoopingCall | None = None

    def now(self) -> float:
        return self._clock.seconds()

    # -- jobs --------------------------------------------------------------------

    def accept(self, job_id: str, body: Any, api_version: str
               ) -> Deferred[tuple[JobRecord, bool]]:
        """Validate a PUT body and store the job; raises on a request RI would refuse.

        The Deferred fires with the stored job (``notStarted``) and whether it is new once
        it is committed (fails with ApiError 429 beyond ``max_unfinished``); call
        :meth:`start` with it once the response is on its way.
        """
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestBody", "The request body must be a JSON object.")
        if "jobData" not in body:
            raise ApiError(400, "InvalidRequestBody", "The request body has no 'jobData'.",
                           target="jobData")
        self._prepare(body, api_version)
        stored = self.store.put(job_id, json.dumps(body["jobData"]), api_version, self.now(),
                                room=self.max_unfinished)
        return stored.addErrback(self._no_room)

    def _no_room(self, failure: Failure) -> Failure:
        """429 when ``max_unfinished`` other jobs are unfinished (replacing one takes no room)."""
        if not failure.check(NoRoom):
            return failure
        waiting = failure.value.waiting
        headers = {"Retry-After": str(self._retry_after)} if self._retry_after else {}
        return Failure(ApiError(
            429, "TooManyRequests", f"{waiting} jobs are waiting for analysis, the most this "
            "server accepts at once; send the job again later.", headers=headers))

    def start(self, record: JobRecord) -> Deferred[None]:
        """Run the analysis of a stored job; the Deferred fires once the outcome is stored."""
        try:
            data = self._prepare({"jobData": json.loads(record.request)}, record.api_version)
        except Exception as exc:  # noqa: BLE001 - stored request no longer valid: fail the job
            return self._record_failure(Failure(exc), record).addErrback(
                self._not_recorded, record)
        done: Deferred[None] = Deferred()
        self._waiting.append((record, data, done))
        self._hand_over()
        return done

    def _hand_over(self) -> None:
        """Start the waiting jobs while fewer than ``max_running`` are in the pool.

        A loop, never a recursion: when a job's whole course runs within this call (an
        analysis that fails at once, a store that commits at once), the ``_left_pool`` it
        ends with comes back here while the loop is still running, and returns at once;
        the loop then takes the next job.  Nested instead, thousands of waiting jobs
        reached Python's recursion limit."""
        if self._handing_over:
            return
        self._handing_over = True
        try:
            while self._waiting and not self._pool_closed and (
                    self.max_running is None or self._running < self.max_running):
                record, data, done = self._waiting.popleft()
                # Its place is taken from here, while it is being marked running.
                self._running += 1
                d = self.store.mark_running(record.id, record.revision, self.now())
                d.addCallback(self._analyse_if_current, data, record)
                d.addErrback(self._not_recorded, record)
                d.addBoth(self._left_pool)
                d.chainDeferred(done)
        finally:
            self._handing_over = False

    def _analyse_if_current(self, current: bool, data: RadiologyInsightsData,
                            record: JobRecord) -> Deferred[None] | None:
        if not current:
            return None  # replaced meanwhile; the newer run owns the id
        d = maybeDeferred(self.analysis.analyze, data)
        d.addErrback(self._worker_died, data, record)
        d.addCallbacks(self._record_success, self._record_failure,
                       callbackArgs=(record,), errbackArgs=(record,))
        return d

    def _left_pool(self, result: Any) -> Any:
        self._running -= 1
        self._hand_over()
        return result

    def _worker_died(self, failure: Failure, data: RadiologyInsightsData, record: JobRecord
                     ) -> Any:
        """Its worker died (it, or another analysis beside it, killed the worker): tried once
        more alone, with nothing else in the pool, so that a second death is its own.

        Not a job replaced meanwhile: nobody waits for its outcome (it would not be
        recorded), and while it ran alone every other analysis would wait."""
        if not failure.check(WorkerDied):
            return failure
        if not self.store.is_current(record.id, record.revision):
            log.info("REST job replaced, not tried again alone", job_id=record.id)
            return failure
        log.warning("REST job tried again alone", job_id=record.id)
        d = maybeDeferred(self.analysis.analyze, data, alone=("job", record.id, record.revision))

        def died_alone(again: Failure) -> Any:
            if not again.check(WorkerDied):
                return again
            return Failure(ApiError(500, "InternalError", WORKER_DIED_MESSAGE))

        return d.addErrback(died_alone)

    def resume(self) -> list[Deferred[None]]:
        """Start again every job accepted but not finished (after a restart)."""
        records = self.store.unfinished(self.now())
        if records:
            log.info("resuming REST jobs", count=len(records))
        for record in records:
            if record.status == "running":
                # Cut short by the stop: it waits its turn like the others (beyond
                # max_running it would otherwise show as running while it waits). Written
                # before its mark_running below: the writer commits in order.
                self.store.mark_waiting(record.id, record.revision, self.now()).addErrback(
                    self._not_recorded, record)
        return [self.start(record) for record in records]

    # -- retention ---------------------------------------------------------------

    def purge(self) -> Deferred[None]:
        return self.store.purge(self.now()).addCallbacks(self._purged, self._purge_failed)

    @staticmethod
    def _purged(removed: int) -> None:
        if removed:
            log.info("purged expired REST jobs", count=removed)

    @staticmethod
    def _purge_failed(failure: Failure) -> None:
        # Tried again at the next interval.
        log.error("purging REST jobs failed", error_type=failure.type.__name__)

    def start_purging(self, interval: float = PURGE_INTERVAL) -> None:
        if self._purging is None:
            self._purging = LoopingCall(self.purge)
            self._purging.clock = self._clock
            self._purging.start(interval, now=True).addErrback(
                lambda f: log.error("purging REST jobs stopped", error_type=f.type.__name__))

    def stop_purging(self) -> None:
        if self._purging is not None and self._purging.running:
            self._purging.stop()
        self._purging = None

    # -- internals ---------------------------------------------------------------

    def _prepare(self, body: dict[str, Any], api_version: str) -> RadiologyInsightsData:
        data = self._parse(body)
        return _restrict_to_version(data, api_version)

    def _record_success(self, result: InferenceResult, record: JobRecord) -> Deferred[None]:
        stored = self.store.succeed(record.id, record.revision, self.now(), result.to_json())
        return stored.addCallback(
            lambda recorded: log.info("REST job succeeded", job_id=record.id, recorded=recorded))

    def _record_failure(self, failure: Failure, record: JobRecord) -> Deferred[None]:
        if failure.check(PoolClosed):
            # The gateway is stopping: the job stays running and is resumed at the next
            # start, as do those still waiting (notStarted).
            self._pool_closed = True
            log.info("REST job left for the next start", job_id=record.id)
            return succeed(None)
        error = job_error_from(failure.value)
        stored = self.store.fail(record.id, record.revision, self.now(), error.to_json())
        # The exception text can quote the report, so only its type and code are logged.
        return stored.addCallback(lambda recorded: log.warning(
            "REST job failed", job_id=record.id, error_code=error.code,
            error_type=failure.type.__name__, recorded=recorded))

    @staticmethod
    def _not_recorded(failure: Failure, record: JobRecord) -> None:
        """A job write that could not be committed: the job keeps its stored status (an
        unfinished one is resumed at the next start)."""
        log.error("REST job status not stored", job_id=record.id,
                  error_type=failure.type.__name__)


def _restrict_to_version(data: RadiologyInsightsData, api_version: str) -> RadiologyInsightsData:
    """Keep a request within the inference kinds its API version knows."""
    allowed = API_VERSIONS[api_version]
    if allowed == INFERENCE_TYPES:
        return data
    configuration = data.configuration
    requested = configuration.inference_types if configuration else None
    if requested:
        newer = [k for k in requested if k in _ADDED_2024_10_01]
        if newer:
            raise ApiError(
                400, "InvalidRequestBody",
                f"Inference type(s) {', '.join(newer)} need api-version 2024-10-01.",
                target="jobData.configuration.inferenceTypes")
        return data
    # No list means "every kind" -- every kind this version has.
    base = configuration or ModelConfiguration()
    return dataclasses.replace(
        data, configuration=dataclasses.replace(base, inference_types=list(allowed)))
