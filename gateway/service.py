"""The running gateway: a Twisted ``MultiService`` built from :class:`Settings`.

:func:`build_gateway` wires the parts together and returns a :class:`GatewayApp`
(the shared objects other services use) and its ``MultiService``:

* the audit database (a writer connection used only by the one writer thread, and
  a reader connection for the reactor thread: duplicate look-ups, the REST API);
* the group committer (persist, then ACK);
* the analysis pool and pipeline;
* the resume (:mod:`gateway.feed`): analyses unfinished at the last stop, taken up a few
  at a time;
* the replay poller (:mod:`gateway.replay`): messages ``ri-gateway replay`` marked;
* the MLLP listener on ``mllp.endpoint`` (:class:`ListenerService`);
* the REST API on ``http.endpoint`` when ``http.enabled`` (:func:`build_http_service`).

Stopping the service stops listening, waits for queued writes to commit and shuts
the workers down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString

from mllp.server import ListenerStats, MLLPServerFactory

from .analysis import AnalysisPool, PoolClosed
from .audit import AuditLog
from .commit import GroupCommitter, thread_writer
from .config import Settings
from .feed import FeedRoom, Resume, stored_patient_keys
from .logging import get_logger
from .metrics import Metrics
from .overflow import Overflow
from .pipeline import AnalysisPipeline, engine_configuration
from .receiver import Receiver, default_checker, default_mapper
from .replay import ReplayPoller

__all__ = ["GatewayApp", "ListenerService", "build_gateway", "build_http_service", "reread"]

log = get_logger("gateway.service")

_MLLP_METRICS = {
    "connection_made": "ri_gateway_connections_total",
    "frame": "ri_gateway_frames_total",
}


@dataclass
class GatewayApp:
    """What the services share; the REST and outbox services are built from it."""

    settings: Settings
    reactor: Any
    audit: AuditLog  # reader connection (reactor thread)
    writer_audit: AuditLog  # used only on the writer thread
    committer: GroupCommitter
    pool: Any  # AnalysisPool
    pipeline: AnalysisPipeline
    receiver: Receiver
    metrics: Metrics
    stats: ListenerStats = field(default_factory=ListenerStats)
    stop_threads: Callable[[], None] = lambda: None  # the writer's and the frame decoder's


# Seconds a stop waits for the ACKs of the messages being stored before it aborts the MLLP
# connections still open (a reply that never comes, a peer that does not read).
CLOSE_GRACE = 2.0


class ListenerService(Service):
    """Listens on a Twisted endpoint string; ``port`` is the listening port once started."""

    def __init__(self, reactor: Any, endpoint: str, factory: Any, name: str) -> None:
        self.reactor = reactor
        self.endpoint = endpoint
        self.factory = factory
        self.setName(name)
        self.port: Any = None
        self.listening: defer.Deferred = defer.Deferred()

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        d = serverFromString(self.reactor, self.endpoint).listen(self.factory)

        def listening(port: Any) -> Any:
            self.port = port
            address = port.getHost()
            log.info("listening", service=self.name, host=getattr(address, "host", None),
                     port=getattr(address, "port", None))
            self.listening.callback(port)
            return port

        def failed(failure: Any) -> None:
            log.error("listen_failed", service=self.name, endpoint=self.endpoint,
                      error=failure.getErrorMessage())
            self.listening.errback(failure)

        d.addCallbacks(listening, failed)

    def stopService(self) -> defer.Deferred | None:  # noqa: N802 - Twisted's name
        super().stopService()
        if self.port is None:
            return None
        stopped = defer.maybeDeferred(self.port.stopListening)
        close = getattr(self.factory, "close_connections", None)
        if close is not None:
            # The MLLP connections: the ACK of a message being stored when the stop came
            # goes out before its connection closes. Left to the reactor's shutdown, a
            # connection was dropped with that ACK still unsent, though the message was
            # stored: the sender had no answer for a message it then sent twice.
            stopped.addCallback(lambda _: close(CLOSE_GRACE))
        return stopped


def reread(settings: Settings, mapper: Callable[[str], list[Any]] | None
           ) -> Callable[[bytes, str | None], tuple[Any, str, Any]]:
    """Decode and map stored bytes again (used when resuming analysis).

    Without a ``mapper`` the reports are None: the workers map the message, as they do
    for messages ACKed before mapping.
    """
    from mappings.decoding import decode_message
    from mappings.header import read_header

    def run(raw: bytes, charset: str | None) -> tuple[Any, str, Any]:
        decoded = decode_message(raw, charset or settings.mllp.default_charset)
        header = read_header(decoded.text)
        # Only reports are mapped (an accepted ADT or ORM is skipped by the pipeline).
        reports = mapper(decoded.text) if mapper is not None and header.is_report else None
        return header, decoded.text, reports

    return run


def _reactor_mapper(receiver: Receiver, settings: Settings
                    ) -> Callable[[str], list[Any]] | None:
    """The mapper for stored messages analysed again: mapped on the reactor only where the
    receiver maps too (``"full"``); otherwise the workers map them."""
    return receiver.mapper if settings.mllp.map_before_ack == "full" else None


def _not_started(failure: Any) -> None:
    # Stopped while the workers were still building their engines (a stop soon after the
    # start): no fault of the engine, and no error to page anyone about.
    if failure.check(PoolClosed):
        log.info("analysis.start_cancelled")
        return
    log.error("analysis.unavailable", error=failure.type.__name__)


class _CoreService(Service):
    """Starts the analysis pool; at stop drains writes and closes things."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.setName("core")

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        app = self.app
        started = app.pool.start() if hasattr(app.pool, "start") else defer.succeed(None)
        started.addCallbacks(
            lambda version: log.info("analysis.ready", workers=getattr(app.pool, "workers", None),
                                     executor=getattr(app.pool, "kind", None),
                                     model_version=version or None),
            _not_started)

    def stopService(self) -> defer.Deferred:  # noqa: N802 - Twisted's name
        super().stopService()
        app = self.app
        app.pipeline.stop()  # the backlog is resumed at the next start

        def close(_: Any) -> None:
            app.pool.close()
            app.stop_threads()
            app.audit.close()
            app.writer_audit.close()

        return app.committer.drained().addBoth(close)


def _on_mllp_event(metrics: Metrics, stats: ListenerStats) -> Callable[..., None]:
    # The open-connections gauge is read when metrics are rendered, not set on every frame.
    metrics.add_collector(
        lambda m: m.set("ri_gateway_connections_open", stats.connections_open))

    def on_event(name: str, **fields: Any) -> None:
        if name in _MLLP_METRICS:
            metrics.inc(_MLLP_METRICS[name])
        elif name == "stray_bytes":
            metrics.inc("ri_gateway_bytes_outside_frames_total", value=fields.get("count", 0))

    return on_event


def _pool_restarted(metrics: Metrics, log: Any) -> Callable[[str], None]:
    def restarted(reason: str) -> None:
        # Each analysis that was in the pool logs its own line (gateway.pipeline).
        log.warning("analysis.pool_restarted", reason=reason)
        metrics.inc("ri_gateway_analysis_pool_restarts_total", {"reason": reason})

    return restarted


def build_gateway(settings: Settings, *, reactor: Any = None, engine_factory: Any = None,
                  pool: Any = None, metrics: Metrics | None = None
                  ) -> tuple[GatewayApp, MultiService]:
    """The gateway's objects and services (not started)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    metrics = metrics or Metrics()
    metrics.start_counters()
    writer_audit = AuditLog(settings.storage.db, synchronous=settings.storage.synchronous,
                            single_writer=True)
    reader = AuditLog(settings.storage.db, synchronous=settings.storage.synchronous)
    run_in_writer, stop_writer = thread_writer(reactor)
    # Large frames are decoded off the reactor (Receiver.handle), one at a time as the
    # reactor did: a pool of threads would hold several decodes of up to 16 MiB (and
    # their text, several times that) in memory at once.
    run_decoder, stop_decoder = thread_writer(reactor, name="frame-decoder")

    def stop_threads() -> None:
        stop_decoder()
        stop_writer()

    committer = GroupCommitter(writer_audit, run_in_writer, max_batch=settings.storage.max_batch)
    if pool is None:
        pool = AnalysisPool(settings.analysis.workers or None, reactor=reactor,
                            engine_factory=engine_factory, executor=settings.analysis.executor,
                            priority=settings.analysis.worker_priority,
                            timeout=settings.analysis.timeout,
                            on_restart=_pool_restarted(metrics, log))
    pipeline = AnalysisPipeline(pool, committer, metrics=metrics,
                                mapping_config=settings.mapping_config,
                                configuration=engine_configuration(
                                    settings.analysis.inference_types,
                                    settings.analysis.quality_measures,
                                    settings.analysis.include_evidence), reactor=reactor,
                                # With ack_after = "analysis" the analysis is the ACK path.
                                quiet_period=settings.analysis.quiet_period
                                if settings.analysis.ack_after == "persistence" else 0.0,
                                max_wait=settings.analysis.max_wait,
                                # With ack_after = "analysis" each sender waits for its
                                # ACK: the backlog is bounded by the connections.
                                max_backlog=settings.analysis.max_backlog
                                if settings.analysis.ack_after == "persistence" else 0)
    receiver = Receiver(committer, settings=settings.mllp,
                        mapper=default_mapper(settings.mapping_config),
                        checker=default_checker(settings.mapping_config),
                        on_accepted=pipeline.submit, metrics=metrics,
                        ack_after=settings.analysis.ack_after, run_off_reactor=run_decoder)
    stats = ListenerStats()
    app = GatewayApp(settings, reactor, reader, writer_audit, committer, pool, pipeline, receiver,
                     metrics, stats, stop_threads)
    top = MultiService()
    _CoreService(app).setServiceParent(top)
    stored = reread(settings, _reactor_mapper(receiver, settings))
    # Before the listener, so that the backlog it takes up is what was stored before this
    # start: a message received from now on goes to the pipeline from the receiver.
    # One room for both: a live report waits behind max_in_flight stored messages in all.
    room = FeedRoom(pipeline.max_in_flight)
    resume = Resume(reader, committer, pipeline, stored, clock=reactor, room=room,
                    on_taken=receiver.analysing_stored,
                    keys_of=stored_patient_keys(settings.mllp.default_charset))
    resume.setServiceParent(top)
    overflow = Overflow(reader, committer, pipeline, stored, clock=reactor, room=room,
                        metrics=metrics)
    overflow.setServiceParent(top)
    pipeline.overflow = overflow
    receiver.take_up = resume.take_up

    def take_up(message_id: int) -> None:  # each ignores the ids that are not its own
        resume.take_up(message_id)
        overflow.take_up(message_id)

    pipeline.take_up = take_up
    ReplayPoller(reader, committer, pipeline, stored, clock=reactor,
                 metrics=metrics, room=room).setServiceParent(top)
    # Outbound results and alerts ([destinations.*], [routes.*]): see gateway.outbox_service.
    from .outbox_service import build_outbound_service

    outbound = build_outbound_service(app)
    if outbound is not None:
        outbound.setServiceParent(top)
    factory = MLLPServerFactory(
        receiver, max_frame_size=settings.mllp.max_frame_size,
        lenient_end=settings.mllp.lenient_end,
        idle_timeout=settings.mllp.idle_timeout or None,
        max_connections=settings.mllp.max_connections, clock=reactor, stats=stats,
        on_event=_on_mllp_event(metrics, stats))
    listener = ListenerService(reactor, settings.mllp.endpoint, factory, "mllp")
    listener.setServiceParent(top)
    if settings.http.enabled:
        build_http_service(settings, app, listener).setServiceParent(top)
    return app, top


def build_http_service(settings: Settings, app: GatewayApp,
                       listener: ListenerService | None = None) -> Service:
    """The REST API service: the RI job endpoints on the gateway's analysis pool (jobs kept
    in the audit database file, written by its writer), ``/health`` and ``/metrics`` of
    this gateway.

    Readiness checks: the database (added by the site), ``engine`` (the analysis pool is
    up) and, when ``listener`` is given, ``mllp_listener`` (it is listening).
    """
    from gateway.http import ConnectionLimit, JobStore, make_site

    checks = {"engine": lambda: bool(getattr(app.pool, "ready", True)),
              "message_store": lambda: app.receiver.store_failure is None}
    if listener is not None:
        checks["mllp_listener"] = lambda: listener.running and listener.port is not None

    site = make_site(
        # Job writes commit with the MLLP messages, on the audit writer's thread.
        analysis=app.pool, job_store=JobStore(settings.storage.db, write=app.committer.submit,
                                              files=app.writer_audit.files),
        api_keys=settings.http.api_keys,
        metrics=app.metrics, health_checks=checks,
        max_body_bytes=settings.http.max_body_bytes, clock=app.reactor,
        max_unfinished_jobs=settings.http.max_unfinished_jobs,
        # One per worker: an MLLP report waits behind no more REST jobs than that.
        max_running_jobs=int(getattr(app.pool, "workers", 0) or 0) or None)
    return ListenerService(app.reactor, settings.http.endpoint,
                           ConnectionLimit(site, settings.http.max_connections,
                                           clock=app.reactor), "http")
