"""``ri-gateway serve``: run the gateway until interrupted (SIGINT/SIGTERM/SIGHUP)."""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Any

import click

from gateway.errors import PeerUnavailable
from gateway.stop_signals import StopSignals, catch

from .options import config_option, db_option, settings_from

_FORMATS = {"auto": None, "json": True, "console": False}


def _stop_on_signal(reactor: Any) -> Any:
    """``stop(signum)`` for :meth:`gateway.stop_signals.StopSignals.deliver_to`: schedules
    the stop on the reactor thread, where ``shutdown`` is logged.

    Twisted's own handlers log from inside the signal handler.  When the signal lands while
    the main thread is writing a log line, that nested write waits for the lock the
    interrupted write holds, and the process never exits.  Logging from the reactor thread,
    after the handler has returned, cannot deadlock.  Scheduled before the reactor runs,
    the stop comes once it runs, after the services started.
    """
    from gateway.logging import get_logger

    log = get_logger("gateway.serve")

    def stop(signum: int) -> None:
        from twisted.internet.error import ReactorNotRunning

        log.info("shutdown", signal=signal.Signals(signum).name)
        try:
            reactor.stop()
        except ReactorNotRunning:  # stopping already (a listener could not listen)
            pass

    return lambda signum: reactor.callFromThread(stop, signum)


@click.command()
@config_option
@click.option("--mllp", "mllp_endpoint", metavar="ENDPOINT",
              help="MLLP listener, a Twisted endpoint string (tcp:2575:interface=127.0.0.1, "
                   "ssl:2576:privateKey=key.pem:certKey=cert.pem).")
@click.option("--http", "http_endpoint", metavar="ENDPOINT",
              help="REST API listener, a Twisted endpoint string (enables the REST API).")
@db_option
@click.pass_obj
def serve(obj: Any, config_path: str | None, mllp_endpoint: str | None,
          http_endpoint: str | None, db_path: str | None) -> None:
    """Receive HL7 v2 over MLLP, persist, ACK, analyse; serve the REST API."""
    signals = catch()  # already caught by gateway.cli when run from the command line
    # Not restored afterwards: they stay caught until the process ends (gateway.stop_signals).
    _serve(obj, config_path, mllp_endpoint, http_endpoint, db_path, signals)


def _serve(obj: Any, config_path: str | None, mllp_endpoint: str | None,
           http_endpoint: str | None, db_path: str | None, signals: StopSignals) -> None:
    from gateway.logging import configure_logging

    settings = settings_from(config_path, {
        "mllp.endpoint": mllp_endpoint, "http.endpoint": http_endpoint,
        "http.enabled": True if http_endpoint else None, "storage.db": db_path},
        # Checked here, before the audit database is created: a route naming a missing
        # destination left a new database behind a gateway that never started.
        cross_checks=True)
    configure_logging(settings.logging.level, _FORMATS[settings.logging.format])

    from twisted.internet import reactor

    from gateway.service import build_gateway

    engine_factory = (obj or {}).get("engine_factory")
    app, service = build_gateway(settings, reactor=reactor, engine_factory=engine_factory)
    failed: list[str] = []

    def listen_failed(failure: Any, key: str) -> None:
        # The key the endpoint came from: "cannot listen" alone left the reader to guess
        # which of the two listeners, and which setting to change.
        where = settings.origins.where(key) if settings.origins is not None else None
        failed.append(f"{key}: cannot listen: {failure.getErrorMessage()}"
                      f" ({where or 'the default'})")
        if reactor.running:
            reactor.stop()

    for child in service:
        listening = getattr(child, "listening", None)
        if listening is not None:
            listening.addErrback(listen_failed, f"{child.name}.endpoint")
    # Everything loaded so far lives as long as the process: moving it out of the
    # collector's generations keeps full collections short while messages flow.
    gc.collect()
    gc.freeze()
    from gateway.logging import get_logger
    from gateway.process_exit import ForcedStop

    forced = ForcedStop(get_logger("gateway.serve"))
    signals.deliver_to(_stop_on_signal(reactor), forced)
    # Twisted installs its SIGTERM handler as the reactor starts: this one, so that no
    # SIGTERM meets Twisted's (SIGINT's it leaves alone, being handled already).
    reactor.sigTerm = signals.handler
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    signals.stop_under_way()  # a signal from now on forces the stop, whatever stopped it
    forced.reactor_stopped()  # a forced stop ends the process here
    _end_despite_stragglers(app, failed, settings.analysis.stop_grace)
    if failed:
        raise PeerUnavailable(failed[0])
    sys.stdout.flush()


def _end_despite_stragglers(app: Any, failed: list[str], grace: float) -> None:
    """Wait up to ``grace`` seconds for what Python waits for at exit (threads, worker
    processes); end the process now if some are still running then.

    A thread cannot be stopped: one given up at ``[analysis] timeout`` (or analysing a
    report that hangs when the stop came) held the process for ever after SIGTERM.  Nothing
    is lost by not waiting: the queued writes are committed by now, a report whose analysis
    had not finished is still ``received`` (a REST job still ``running``) and is taken up at
    the next start, and one given up at its timeout was recorded ``failed`` then.  Waited for
    here rather than by Python's exit, so that a second stop signal meanwhile forces the stop
    (gateway.process_exit).
    """
    from gateway.process_exit import wait_for_exit_waits

    running = getattr(app.pool, "analysis_threads", list)()
    left = wait_for_exit_waits(grace, running)
    if not left:
        return
    from gateway.logging import get_logger

    log = get_logger("gateway.serve")
    threads = sum(thread.is_alive() for thread in running)
    if threads:
        log.error("analysis.abandoned", threads=threads, messages=app.pipeline.analysing,
                  grace_seconds=grace)
    else:  # not the analysis: named so that it can be found
        log.error("shutdown.abandoned", grace_seconds=grace,
                  waits=sorted(getattr(wait, "name", "") for wait in left))
    if failed:
        click.echo(f"ri-gateway: {failed[0]}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skips Python's wait for the threads at exit (and nothing else of use: the audit
    # database is closed and the log flushed).
    os._exit(3 if failed else 0)
