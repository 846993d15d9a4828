"""The signals that stop ``ri-gateway serve`` (SIGTERM, SIGINT, SIGHUP), caught from the
start of the process.

The handlers used to be installed once the reactor ran, a second or more after start
(imports, the configuration, the database, the analysis pool): a SIGHUP in that time ended
the process at once (its default action; exit 129, nothing logged), a SIGTERM too, and a
SIGINT gave a traceback. :func:`catch` is called as soon as the command line is known to
be ``serve`` (``gateway.cli``, before the commands are imported) and again by ``serve``
itself: a signal that arrives before the reactor can stop is kept, and
:meth:`StopSignals.deliver_to` hands it over once it can, so that ``serve`` stops as it
does later (``shutdown`` logged, queued writes committed, exit 0). Nothing is logged
inside a handler: a log line interrupted by the signal holds the lock a nested one needs.

A second stop signal (Ctrl-C pressed again, or the signal sent twice: ``timeout`` sends it
to the process and to its process group) forces the stop: it calls the ``force`` given to
:meth:`StopSignals.deliver_to`.  The handlers stay installed until the process ends, so
that one arriving while Python waits for threads and processes at exit is handled too:
restoring Python's own SIGINT handler there printed a ``KeyboardInterrupt`` traceback.

stdlib only: it is imported before anything else of the gateway.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

__all__ = ["STOP_SIGNALS", "StopSignals", "catch"]

# SIGHUP too: its default action ended the process at once, without a word in the log,
# and the configuration is read only at start, so there is nothing to reload.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopSignals:
    """The stop signals' handler: keeps what arrives until :meth:`deliver_to`."""

    def __init__(self) -> None:
        self._stop: Callable[[int], None] | None = None
        self._force: Callable[[int], None] | None = None
        self.stopping: int | None = None  # the signal that asked for the stop (0: none did)
        self.forced: int | None = None  # the later one that forced it
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle the stop signals here (once; again after :meth:`restore`)."""
        if self._previous:
            return
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            # A SIGHUP ignored from the start stays ignored: `nohup ri-gateway serve` must
            # outlive its terminal.
            if signum == signal.SIGHUP and previous == signal.SIG_IGN:
                continue
            self._previous[signum] = previous
            signal.signal(signum, self.handler)

    def handler(self, signum: int, frame: Any = None) -> None:
        """The signal handler (also Twisted's SIGTERM handler: see ``serve``)."""
        if self.stopping is None:
            self.stopping = signum
            if self._stop is not None:
                self._stop(signum)
        elif self.forced is None:
            self.forced = signum
            if self._force is not None:
                self._force(signum)

    def deliver_to(self, stop: Callable[[int], None],
                   force: Callable[[int], None] | None = None) -> None:
        """From now on the first stop signal calls ``stop(signum)`` and the next one
        ``force(signum)`` (later ones nothing more); those that arrived before are
        delivered now.  Both run inside the signal handler: they must not log, nor wait."""
        self._stop, self._force = stop, force
        if self.stopping:  # a signal (0: a stop of the process's own, nothing to deliver)
            stop(self.stopping)
        if self.forced is not None and force is not None:
            force(self.forced)

    def stop_under_way(self) -> None:
        """The process is stopping for a reason of its own (a listener that failed, a
        stop by the reactor): a stop signal from now on forces the stop. As a first
        signal it would only have asked the stopped reactor to stop, and been lost."""
        if self.stopping is None:
            self.stopping = 0

    def restore(self) -> None:
        """Put back the handlers found at :meth:`install` (``serve`` run in a process that
        goes on: tests)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        self._stop = self._force = None
        self.stopping = self.forced = None


_SIGNALS = StopSignals()


def catch() -> StopSignals:
    """Install the process's stop-signal handlers (idempotent) and return them."""
    _SIGNALS.install()
    return _SIGNALS
