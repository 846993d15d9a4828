"""Running the engine off the reactor thread: :class:`AnalysisPool`.

The reactor never runs NLP.  ``AnalysisPool.analyze(data)`` hands the request to a
pool of workers and returns a Deferred that fires, on the reactor thread, with the
:class:`~ri_engine.models.InferenceResult` (or fails with the engine's
``RequestError`` / ``AnalysisFailure``).

Requests and results cross the process boundary pickled (a pickle of the models is
several times cheaper than their JSON round trip), and each inference is rendered as
RI JSON in the worker, so the reactor thread never converts models.

Two executors:

* ``"process"`` (default): a ``ProcessPoolExecutor`` whose workers each build one
  engine in their initializer and exchange plain JSON dicts with the gateway.  The
  GIL is not shared, so N cores analyse N reports at once.  Workers run at a lower CPU
  priority (``priority``: ``"idle"``, Linux ``SCHED_IDLE``, falling back to ``nice +10``
  where that is not available; ``"low"``, ``nice +10``; ``"normal"``) so that a burst of
  analysis never takes the CPU from the ACK path.  Workers are started with
  the ``spawn`` method: forking a process that already runs the reactor's threads
  can leave locks held in the child.
* ``"thread"``: a ``ThreadPoolExecutor`` with one engine per thread; less memory and
  no start-up cost, but analyses contend for the GIL.

``engine_factory`` builds an engine (default ``ri_engine.Engine``).  With processes
it must be picklable (a module-level class or function).

**Workers that die or hang.**  A worker process that dies (the kernel's OOM killer, a
crash in native code) breaks a ``ProcessPoolExecutor`` for good: every later submission
would fail, and the gateway would go on ACKing reports that are never analysed.  The
pool is therefore replaced as soon as it is found broken, and every analysis that was in
it fails with :class:`WorkerDied` (the pipeline tries those again, one at a time, to
find a report that kills its worker).  An analysis that takes longer than ``timeout``
seconds fails with :class:`AnalysisTimedOut`; with processes its workers are killed (the
only way to stop a running task) and the pool replaced, so a report that makes the
engine loop cannot hold a worker for ever.  Threads cannot be stopped: the analysis is
given up and its thread runs on until it returns, but a new thread pool takes its place,
so the analyses that follow do not wait behind it.  An analysis that was waiting in a pool
replaced for another's sake fails with :class:`WorkerDied`, not as timed out.

**At most two analyses per worker are handed over** (``capacity``); the others wait in
the pool, in the order they came, and their ``timeout`` counts from the hand-over.

**Analyses run alone.**  To find which analysis kills its worker, its users try the victims
of a death again one at a time (``alone=KEY`` on any analysing method): the pool starts such
an analysis only when nothing of another key is in it, and holds every later submission
(the REST API's jobs, an MLLP report, another user's ``alone`` try) until it is over.  Its
analyses of the same key (the reports of one message) run together.  Without this a REST
job that killed its worker beside a report tried alone would be blamed on that report.

**One worker call per message.**  ``map_and_analyze(text, ...)`` maps the decoded ORU
(``mappings.inbound.map_oru``) and analyses every report marked ``analyse`` in the same
call: the message text goes to the worker once and one reply comes back, instead of
mapped reports travelling back to the gateway and out again per report.  The reply
carries, per OBR group, the mapped report itself when a hook will read it
(``with_result``) and otherwise only its :class:`ReportInfo` (what the audit records).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer

from ri_engine.errors import AnalysisFailure, EngineError, RequestError
from ri_engine.models import InferenceResult, RadiologyInsightsData

__all__ = [
    "Analysis", "AnalysisPool", "AnalysisTimedOut", "MappingFailure", "PoolClosed", "ReportInfo",
    "WorkerDied", "default_engine_factory", "default_workers", "lower_priority",
    "with_configuration",
]

EngineFactory = Callable[[], Any]


def default_engine_factory() -> Any:
    from ri_engine import Engine

    return Engine()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


# --- worker side (runs in the worker process or thread) ---------------------------------

_engine: Any = None
_factory: EngineFactory = default_engine_factory
_local = threading.local()
# Analysis workers run at a lower CPU priority than the gateway process: under a burst
# the reactor (framing, commits, ACKs) keeps its CPU share and analysis catches up later.
WORKER_NICENESS = 10
PRIORITIES = ("idle", "low", "normal")
PARENT_CHECK_INTERVAL = 1.0  # seconds between a worker's looks for its gateway


class MappingFailure(AnalysisFailure):
    """``map_oru`` raised something other than an HL7Error in a worker: a mapping bug.

    Unlike a worker that died (also an ``AnalysisFailure``), trying again later gives the
    same result, so the pipeline records the message as failed.
    """


class WorkerDied(AnalysisFailure):
    """The worker process running the analysis died (or was killed with its pool)."""


class AnalysisTimedOut(AnalysisFailure):
    """The analysis did not finish within the pool's ``timeout``."""


class PoolClosed(AnalysisFailure):
    """The pool was closed (the gateway is stopping) before the analysis ran: the work is
    left for the next start, not a failure of the request."""


@dataclass(frozen=True)
class ReportInfo:
    """What the pipeline records of one mapped report (a ``MappedReport``'s metadata)."""

    obr_index: int
    accession: str | None
    result_status: str | None
    analyse: bool
    skip_reason: str | None
    modality_hint: str | None

    @classmethod
    def of(cls, report: Any) -> ReportInfo:
        return cls(report.obr_index, report.accession, report.result_status, report.analyse,
                   report.skip_reason, report.modality_hint)


@dataclass(frozen=True)
class Analysis:
    """An engine result with its inferences already rendered as RI JSON text (in the worker).

    ``result`` (the models) is only sent back when asked for: unpickling ~1,500 model
    objects costs the gateway process milliseconds per report, the JSON text almost nothing.
    """

    result: InferenceResult | None
    inferences: tuple[tuple[str, str], ...]  # (kind, RI JSON text) per inference
    model_version: str


def lower_priority(priority: str) -> str:
    """Lower this process's CPU priority; returns the one obtained (``PRIORITIES``)."""
    if priority == "idle":
        try:
            # Runs only when no other task wants the CPU (Linux; inherited by its threads).
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except (AttributeError, OSError):  # not Linux, or not permitted: nice instead
            priority = "low"
    if priority == "low":
        try:
            os.nice(WORKER_NICENESS)
            return "low"
        except OSError:  # pragma: no cover - not permitted here: run at normal priority
            pass
    return "normal"


def _exit_with_parent() -> None:
    """End this worker process when the gateway that started it is gone.

    A worker waits for its next analysis on a queue whose writing end it holds too, so
    it never sees the gateway go: after a SIGKILL or an OOM kill of the gateway, its
    idle workers (an engine in memory each) lived on, one more set at every restart.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    pid = parent.pid

    def watch() -> None:
        while os.getppid() == pid:  # re-parented (to init or a subreaper) once it is gone
            time.sleep(PARENT_CHECK_INTERVAL)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_process(factory: EngineFactory, priority: str = "low") -> None:
    global _engine, _factory
    _exit_with_parent()
    lower_priority(priority)
    _factory = factory
    try:
        _engine = factory()
    except Exception:  # noqa: BLE001 - reported by each analysis instead (_process_engine)
        # A worker that exits here breaks the pool: it would be replaced again and again,
        # and each report sent to it blamed for killing its worker.
        traceback.print_exc()  # why, on stderr (the engine's own error: no report data)
        _engine = None


def _process_engine() -> Any:
    """This worker process's engine, built again if it could not be (an analysis then
    fails with the engine's error, as with threads, and the worker lives on)."""
    global _engine
    if _engine is None:
        _engine = _factory()
    return _engine


def _run(engine: Any, data: RadiologyInsightsData, with_result: bool) -> tuple[str, Any]:
    """Analyse one request; errors travel back as plain values that always pickle."""
    try:
        result = engine.analyze(data)
        rendered = tuple((str(inf.kind), json.dumps(inf.to_json()))
                         for pr in result.patient_results for inf in pr.inferences)
        return "ok", Analysis(result if with_result else None, rendered,
                              str(result.model_version))
    except RequestError as exc:
        return "request_error", (exc.message, exc.code, exc.target)
    except EngineError as exc:
        return "analysis_failure", (exc.message, exc.code, exc.target)
    except Exception as exc:  # noqa: BLE001 - an engine bug becomes AnalysisFailure
        return "analysis_failure", (f"engine failed: {type(exc).__name__}", "InternalError", None)


def _map(text: str, mapping_config: Any) -> tuple[str, Any]:
    """Map a message in a worker; an HL7Error travels back as a value."""
    from mappings.errors import HL7Error
    from mappings.inbound import map_oru

    try:
        return "ok", map_oru(text, mapping_config)
    except HL7Error as exc:
        # Sent as parts: an exception with keyword-only arguments does not unpickle.
        return "hl7_error", (type(exc), exc.message, exc.err_code, exc.location)
    except Exception as exc:  # noqa: BLE001 - a mapping bug
        return "mapping_failure", (f"mapping failed: {type(exc).__name__}", "InternalError", None)


def _map_and_run(engine: Any, text: str, mapping_config: Any, configuration: Any,
                 with_result: bool) -> tuple[str, Any]:
    """Map one message and analyse its reports: ("ok", [(report, kind, payload), ...])."""
    mapped = _map(text, mapping_config)
    if mapped[0] != "ok":
        return mapped
    out = []
    for report in mapped[1]:
        kept = report if with_result else ReportInfo.of(report)
        if not report.analyse:
            out.append((kept, "skipped", None))
            continue
        out.append((kept, *_run(engine, with_configuration(report.request, configuration),
                                with_result)))
    return "ok", out


def with_configuration(request: RadiologyInsightsData, configuration: Any
                       ) -> RadiologyInsightsData:
    """``request`` with ``configuration`` when it brings none of its own (the gateway's
    ``[analysis]`` settings for mapped reports; a request's own configuration wins)."""
    if configuration is None or request.configuration is not None:
        return request
    return replace(request, configuration=configuration)


def _analyze_in_process(data: RadiologyInsightsData, with_result: bool) -> tuple[str, Any]:
    return _run(_process_engine(), data, with_result)


def _map_and_analyze_in_process(text: str, mapping_config: Any, configuration: Any,
                                with_result: bool) -> tuple[str, Any]:
    return _map_and_run(_process_engine(), text, mapping_config, configuration,
                        with_result)


def _map_and_analyze_in_thread(factory: EngineFactory, text: str, mapping_config: Any,
                               configuration: Any, with_result: bool) -> tuple[str, Any]:
    _warm_thread(factory)
    return _map_and_run(_local.engine, text, mapping_config, configuration, with_result)


def _model_version_in_process() -> str:
    return str(getattr(_process_engine(), "model_version", ""))


def _analyze_in_thread(factory: EngineFactory, data: RadiologyInsightsData,
                       with_result: bool) -> tuple[str, Any]:
    _warm_thread(factory)
    return _run(_local.engine, data, with_result)


def _warm_thread(factory: EngineFactory) -> str:
    engine = getattr(_local, "engine", None)
    if engine is None:
        engine = _local.engine = factory()
    return str(getattr(engine, "model_version", ""))


def _outcome(value: tuple[str, Any]) -> Any:
    kind, payload = value
    if kind == "ok":
        return payload
    raise _error(kind, payload)


def _error(kind: str, payload: Any) -> Exception:
    if kind == "hl7_error":
        cls, message, err_code, location = payload
        return cls(message, err_code=err_code, location=location)  # type: ignore[no-any-return]
    message, code, target = payload
    if kind == "request_error":
        return RequestError(message, code=code, target=target)
    if kind == "mapping_failure":
        return MappingFailure(message, code=code, target=target)
    return AnalysisFailure(message, code=code, target=target)


def _report_outcomes(items: list[tuple[Any, str, Any]]) -> list[tuple[Any, Any]]:
    """(report, Analysis | None when not analysed | the engine's error) per OBR group."""
    return [(report, payload if kind in ("ok", "skipped") else _error(kind, payload))
            for report, kind, payload in items]


class AnalysisPool:
    """A pool of engines.  ``workers=None`` (or 0) means one per core."""

    def __init__(self, workers: int | None = None, *, reactor: Any = None,
                 engine_factory: EngineFactory | None = None, executor: str = "process",
                 priority: str = "low", timeout: float | None = None,
                 on_restart: Callable[[str], None] | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.workers = workers or default_workers()
        self.engine_factory = engine_factory or default_engine_factory
        self.kind = executor
        self.ready = False
        self.model_version: str | None = None
        self.pending = 0
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        self.priority = priority  # of the worker processes (threads keep the gateway's)
        if executor not in ("process", "thread"):
            raise ValueError(f"executor must be 'process' or 'thread', not {executor!r}")
        # Seconds an analysis may take (None: no limit); see the module docstring.
        self.timeout = timeout or None
        self.on_restart = on_restart  # called with the reason when the pool is replaced
        # Analyses handed to the workers at once (two per worker: a worker never waits for
        # its next one); the rest are held here, so that an analysis's timeout counts at
        # most the one other analysis its worker holds.  Every caller shares it: REST jobs
        # were all handed over on arrival, and in a burst of them those at the back of the
        # executor's queue timed out without having run, their workers killed as if hung.
        self.capacity = 2 * self.workers
        self.restarts = 0
        self._closed = False
        self._warming: defer.Deferred | None = None  # start()'s, until it fires
        # Analyses in the pool by their ``alone`` key (None: shared), and the submissions
        # held until they may run with those (module docstring: analyses run alone).
        self._running: dict[Hashable, int] = {}
        self._held: deque[tuple[Hashable, defer.Deferred, Callable[[], None]]] = deque()
        # The analysis threads running, in this pool or one it replaced (see analysis_threads):
        # weakly, so that each thread is forgotten once it has ended (a thread pool replaced
        # after every timeout would otherwise add its threads for good).
        self._threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self._executor = self._new_executor()

    def _new_executor(self) -> concurrent.futures.Executor:
        if self.kind == "process":
            return concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process, initargs=(self.engine_factory, self.priority))
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="analysis",
            initializer=lambda: self._threads.add(threading.current_thread()))

    def _replace(self, broken: concurrent.futures.Executor, reason: str) -> None:
        """Put a new pool in place of ``broken`` (once, however many of its analyses
        report it)."""
        if self._closed or self._executor is not broken:
            return
        self.restarts += 1
        self._executor = self._new_executor()
        # Not cancel_futures: an analysis still queued in the broken pool would fail with
        # CancelledError, as at close, and not be tried again; left queued, it fails with
        # BrokenProcessPool (WorkerDied) once the pool sees its workers gone.
        broken.shutdown(wait=False)
        if self.on_restart is not None:
            self.on_restart(reason)

    @staticmethod
    def _kill_workers(executor: concurrent.futures.Executor) -> None:
        """Kill a process pool's workers (a running task cannot be cancelled); the other
        analyses in it then fail with :class:`WorkerDied` and are tried again."""
        # ProcessPoolExecutor has no public way to stop its workers before Python 3.14
        # (terminate_workers); _processes has held them, by pid, since Python 3.2.
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            try:
                process.kill()
            except (OSError, ValueError, AttributeError):  # already gone
                pass

    def _hand_over(self, fn: Callable[..., Any], *args: Any
                   ) -> tuple[concurrent.futures.Executor, concurrent.futures.Future]:
        """Submit ``fn(*args)``; the pool it went to and its future."""
        try:
            future = self._executor.submit(fn, *args)
        except concurrent.futures.BrokenExecutor:
            # Broken before any of its analyses said so (they are still to be reported):
            # replaced, and the submission made once more to the new pool.
            self._replace(self._executor, "worker_died")
            future = self._executor.submit(fn, *args)
        self._watch_new_workers(self._executor)
        return self._executor, future

    @staticmethod
    def _watch_new_workers(executor: concurrent.futures.Executor) -> None:
        """Make a process pool watch the worker its last submission may have started.

        ``submit`` wakes the pool's management thread before it starts a worker, so the
        thread goes back to waiting on the workers it knew: on Python 3.11 and 3.13, the
        death of the new worker went unnoticed until another analysis finished (or, with
        nothing else running, until ``timeout`` blamed the analysis for a hang).  One more
        wake-up makes it look at every worker.
        """
        # _executor_manager_thread_wakeup: ProcessPoolExecutor's own wake-up, Python 3.9+.
        wakeup = getattr(executor, "_executor_manager_thread_wakeup", None)
        if wakeup is None:
            return
        # Under the executor's _shutdown_lock, as submit() wakes it: the management thread
        # closes the wake-up under that lock when a worker dies, and Python 3.11's wake-up
        # has no lock of its own, so a call racing the close could write to a closed pipe.
        lock = getattr(executor, "_shutdown_lock", None) or contextlib.nullcontext()
        with lock:
            try:
                wakeup.wakeup()
            except (OSError, ValueError):  # the pool is shutting down: nothing to watch
                pass

    def _may_run(self, alone: Hashable) -> bool:
        """Whether an analysis of key ``alone`` may join those in the pool now."""
        if self.pending >= self.capacity:
            return False
        if alone is None:
            return all(key is None for key in self._running)
        return all(key == alone for key in self._running)

    def _submit(self, fn: Callable[..., Any], *args: Any, timed: bool = True,
                alone: Hashable = None) -> defer.Deferred:
        """Run ``fn(*args)`` in the pool; ``timed``: subject to :attr:`timeout` (an
        analysis; not the engine's warm-up); ``alone``: see the module docstring.  A held
        submission is timed from when it is handed to the workers."""
        if self._closed or (not self._held and self._may_run(alone)):
            return self._start(fn, args, timed, alone)
        d: defer.Deferred = defer.Deferred()
        self._held.append((alone, d, lambda: self._start(fn, args, timed, alone).chainDeferred(d)))
        return d

    def _release(self) -> None:
        """Start the held submissions that may run now, in the order they came."""
        while self._held and not self._closed and self._may_run(self._held[0][0]):
            self._held.popleft()[2]()

    def _left(self, alone: Hashable) -> None:
        """An analysis of key ``alone`` is over (or given up)."""
        self.pending -= 1
        self._running[alone] -= 1
        if not self._running[alone]:
            del self._running[alone]
        # Whatever its key: the place it freed goes to the next held one (released only when
        # the last of a key left, one long analysis held them all, a worker idle).
        self._release()

    def _start(self, fn: Callable[..., Any], args: tuple[Any, ...], timed: bool,
               alone: Hashable) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        try:
            executor, future = self._hand_over(fn, *args)
        except Exception as exc:  # noqa: BLE001 - pool shut down, or unusable once replaced
            if self._closed:
                return defer.fail(PoolClosed("analysis pool closed"))
            return defer.fail(AnalysisFailure(f"analysis pool unavailable: {type(exc).__name__}"))
        self.pending += 1
        self._running[alone] = self._running.get(alone, 0) + 1

        def done(future: concurrent.futures.Future) -> None:
            # Called on the worker-management thread: hop back to the reactor.
            self.reactor.callFromThread(fire, future)

        def fire(future: concurrent.futures.Future) -> None:
            if d.called:  # timed out earlier
                return
            if expiry is not None and expiry.active():
                expiry.cancel()
            try:
                value = future.result()
            except Exception as exc:  # noqa: BLE001 - told apart by _failure
                error = self._failure(exc, executor)
                self._left(alone)  # after a replacement: held work goes to the new pool
                d.errback(error)
                return
            self._left(alone)
            d.callback(value)

        def expire() -> None:
            if d.called or future.done():  # done: its outcome is on its way to fire()
                return
            if executor is not self._executor:
                # Its pool was killed for another analysis that hung (or a worker died)
                # while this one waited behind it: a victim, tried again like the others.
                self._left(alone)
                d.errback(WorkerDied("analysis worker died: its pool was replaced"))
                return
            if self.kind == "process":
                self._kill_workers(executor)
            # A new pool takes the analyses from now on; a thread cannot be stopped and runs
            # on in the old one, but the analyses queued behind it are not held (nor timed
            # out) too.
            self._replace(executor, "timeout")
            self._left(alone)
            d.errback(AnalysisTimedOut(f"analysis took longer than {self.timeout:g} s"))

        expiry = (self.reactor.callLater(self.timeout, expire)
                  if timed and self.timeout is not None else None)
        future.add_done_callback(done)
        return d

    def _failure(self, exc: Exception, executor: concurrent.futures.Executor) -> Exception:
        """What an analysis whose future failed with ``exc`` fails with."""
        if self._closed:
            # Cancelled or killed by close(): left for the next start, not a failure.
            return PoolClosed("analysis pool closed")
        if isinstance(exc, concurrent.futures.BrokenExecutor):
            self._replace(executor, "worker_died")
            return WorkerDied(f"analysis worker died: {type(exc).__name__}")
        return AnalysisFailure(f"analysis worker failed: {type(exc).__name__}")

    def start(self) -> defer.Deferred:
        """Build the engines now (instead of on the first report); fires when one is ready."""
        if self.kind == "process":
            d = self._submit(_model_version_in_process, timed=False)
        else:
            d = self._submit(_warm_thread, self.engine_factory, timed=False)
        self._warming = d

        def started(version: str) -> str:
            self.ready = True
            self.model_version = version or None
            return version

        return d.addCallback(started)

    def analyze(self, data: RadiologyInsightsData, *, alone: Hashable = None
                ) -> defer.Deferred:
        """Deferred[InferenceResult]; fails with RequestError or AnalysisFailure.
        ``alone``: run with nothing else in the pool (module docstring)."""
        return self.analyze_report(data, with_result=True, alone=alone).addCallback(
            lambda a: a.result)

    def analyze_report(self, data: RadiologyInsightsData, *, with_result: bool = True,
                       alone: Hashable = None) -> defer.Deferred:
        """Deferred[Analysis]: the inferences as RI JSON text (and the models if asked)."""
        if self.kind == "process":
            d = self._submit(_analyze_in_process, data, with_result, alone=alone)
        else:
            d = self._submit(_analyze_in_thread, self.engine_factory, data, with_result,
                             alone=alone)
        return d.addCallback(_outcome)

    def map_and_analyze(self, text: str, mapping_config: Any = None, configuration: Any = None,
                        *, with_result: bool = True, alone: Hashable = None
                        ) -> defer.Deferred:
        """Map a decoded ORU and analyse its reports in one worker call (module docstring).

        Deferred[list[(report, outcome)]], one per OBR group: ``report`` is the
        ``MappedReport`` (``with_result``) or its :class:`ReportInfo`; ``outcome`` an
        :class:`Analysis`, None (not analysed: ``report.analyse`` is false) or the
        engine's ``RequestError`` / ``AnalysisFailure``.  Fails with the ``HL7Error`` of a
        message that cannot be mapped.  ``configuration`` is given to every request
        that has none.
        """
        if self.kind == "process":
            d = self._submit(_map_and_analyze_in_process, text, mapping_config, configuration,
                             with_result, alone=alone)
        else:
            d = self._submit(_map_and_analyze_in_thread, self.engine_factory, text,
                             mapping_config, configuration, with_result, alone=alone)
        return d.addCallback(_outcome).addCallback(_report_outcomes)

    def map_message(self, text: str, mapping_config: Any = None, *, alone: Hashable = None
                    ) -> defer.Deferred:
        """Deferred[list[MappedReport]]: ``map_oru`` run by a worker (fails with HL7Error)."""
        return self._submit(_map, text, mapping_config, alone=alone).addCallback(_outcome)

    def close(self) -> None:
        """Stop analysing: what is queued or held is cancelled (:class:`PoolClosed`), and
        process workers still analysing are killed, since Python waits for them at exit and
        an analysis that hangs would hold the process for ever; their work was not recorded
        and is taken up again at the next start.  Threads cannot be killed (see
        :meth:`analysis_threads`)."""
        self.ready = False
        self._closed = True
        # Held ones never reached a worker: they fail as the cancelled ones do, so that
        # whoever waits on one knows it is left for the next start.
        held, self._held = self._held, deque()
        for _key, d, _run in held:
            d.errback(PoolClosed("analysis pool closed"))
        # A warm-up under way will never make the pool ready: said now, not when the
        # workers' end is heard (on the reactor thread, which may have stopped by then).
        warming, self._warming = self._warming, None
        if warming is not None and not warming.called:
            warming.errback(PoolClosed("analysis pool closed"))
        if self.kind == "process":  # before shutdown(), which forgets the workers
            self._kill_workers(self._executor)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def analysis_threads(self) -> list[threading.Thread]:
        """The analysis threads still running, in this pool or one it replaced (one given
        up at its timeout, or one analysing at the stop).  Python waits for every one of
        them at exit and none can be stopped, so a caller that must stop in bounded time
        ends the process without that wait (gateway.process_exit)."""
        return [thread for thread in self._threads if thread.is_alive()]
