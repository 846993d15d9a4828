"""Running the engine off the reactor thread: :class:`AnalysisPool`.

The reactor never runs NLP.  ``AnalysisPool.analyze(data)`` hands the request to a
pool of workers and returns a Deferred that fires, on the reactor thread, with the
:class:`~ri_engine.models.InferenceResult` (or fails with the engine's
``RequestError`` / ``AnalysisFailure``).

Two executors:

* ``"process"`` (default): a ``ProcessPoolExecutor`` whose workers each build one
  engine in their initializer and exchange plain JSON dicts with the gateway.  The
  GIL is not shared, so N cores analyse N reports at once.  Workers are started with
  the ``spawn`` method: forking a process that already runs the reactor's threads
  can leave locks held in the child.
* ``"thread"``: a ``ThreadPoolExecutor`` with one engine per thread; less memory and
  no start-up cost, but analyses contend for the GIL.

``engine_factory`` builds an engine (default ``ri_engine.Engine``).  With processes
it must be picklable (a module-level class or function).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from ri_engine.errors import AnalysisFailure, EngineError, RequestError
from ri_engine.models import InferenceResult, RadiologyInsightsData

__all__ = ["AnalysisPool", "default_engine_factory", "default_workers"]

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
_local = threading.local()


def _init_process(factory: EngineFactory) -> None:
    global _engine
    _engine = factory()


def _run(engine: Any, data_json: dict[str, Any]) -> tuple[str, Any]:
    """Analyse one request; errors travel back as values so any pickle copes with them."""
    try:
        data = RadiologyInsightsData.from_json(data_json)
        result = engine.analyze(data)
        return "ok", result.to_json()
    except RequestError as exc:
        return "request_error", (exc.message, exc.code, exc.target)
    except EngineError as exc:
        return "analysis_failure", (exc.message, exc.code, exc.target)
    except Exception as exc:  # noqa: BLE001 - an engine bug becomes AnalysisFailure
        return "analysis_failure", (f"engine failed: {type(exc).__name__}", "InternalError", None)


def _analyze_in_process(data_json: dict[str, Any]) -> tuple[str, Any]:
    return _run(_engine, data_json)


def _model_version_in_process() -> str:
    return str(getattr(_engine, "model_version", ""))


def _analyze_in_thread(factory: EngineFactory, data_json: dict[str, Any]) -> tuple[str, Any]:
    _warm_thread(factory)
    return _run(_local.engine, data_json)


def _warm_thread(factory: EngineFactory) -> str:
    engine = getattr(_local, "engine", None)
    if engine is None:
        engine = _local.engine = factory()
    return str(getattr(engine, "model_version", ""))


def _outcome(value: tuple[str, Any]) -> InferenceResult:
    kind, payload = value
    if kind == "ok":
        return InferenceResult.from_json(payload)
    message, code, target = payload
    if kind == "request_error":
        raise RequestError(message, code=code, target=target)
    raise AnalysisFailure(message, code=code, target=target)


class AnalysisPool:
    """A pool of engines.  ``workers=None`` (or 0) means one per core."""

    def __init__(self, workers: int | None = None, *, reactor: Any = None,
                 engine_factory: EngineFactory | None = None, executor: str = "process") -> None:
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
        if executor == "process":
            self._executor: concurrent.futures.Executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process, initargs=(self.engine_factory,))
        elif executor == "thread":
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="analysis")
        else:
            raise ValueError(f"executor must be 'process' or 'thread', not {executor!r}")

    def _submit(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.pending += 1

        def done(future: concurrent.futures.Future) -> None:
            # Called on the worker-management thread: hop back to the reactor.
            self.reactor.callFromThread(fire, future)

        def fire(future: concurrent.futures.Future) -> None:
            self.pending -= 1
            try:
                value = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool
                d.errback(AnalysisFailure(f"analysis worker failed: {type(exc).__name__}"))
                return
            d.callback(value)

        try:
            future = self._executor.submit(fn, *args)
        except Exception as exc:  # noqa: BLE001 - pool shut down or broken
            self.pending -= 1
            return defer.fail(AnalysisFailure(f"analysis pool unavailable: {type(exc).__name__}"))
        future.add_done_callback(done)
        return d

    def start(self) -> defer.Deferred:
        """Build the engines now (instead of on the first report); fires when one is ready."""
        if self.kind == "process":
            d = self._submit(_model_version_in_process)
        else:
            d = self._submit(_warm_thread, self.engine_factory)

        def started(version: str) -> str:
            self.ready = True
            self.model_version = version or None
            return version

        return d.addCallback(started)

    def analyze(self, data: RadiologyInsightsData) -> defer.Deferred:
        """Deferred[InferenceResult]; fails with RequestError or AnalysisFailure."""
        payload = data.to_json()
        if self.kind == "process":
            d = self._submit(_analyze_in_process, payload)
        else:
            d = self._submit(_analyze_in_thread, self.engine_factory, payload)
        return d.addCallback(_outcome)

    def close(self) -> None:
        self.ready = False
        self._executor.shutdown(wait=False, cancel_futures=True)
