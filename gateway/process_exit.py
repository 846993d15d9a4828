"""The end of the ``ri-gateway serve`` process: the waits Python makes at exit, bounded, and
the stop forced by a second stop signal.

Python waits at exit for every non-daemon thread (an analysis thread, a process pool's
management thread) and every child process (an analysis worker).  ``serve`` makes those
waits itself once the reactor has stopped (:func:`wait_for_exit_waits`), for at most
``[analysis] stop_grace`` seconds, while its stop-signal handlers are still installed:
a second signal there forces the stop instead of interrupting Python's own wait with a
``KeyboardInterrupt`` traceback.

A forced stop (:class:`ForcedStop`) logs ``shutdown.forced``, lets the stop under way
commit its queued writes (for at most :data:`FORCE_WAIT` seconds), waits for no analysis,
kills the worker processes and ends the process with status 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a process ended by
that signal.  Nothing ACKed is lost by not waiting: an ACK is sent after its message is
committed, and a report whose analysis was cut short is still ``received`` and is analysed
at the next start.  The second signal may be the first one sent again (``timeout`` sends
it to the process and then to its process group): the writes it lets finish keep such a
stop as complete as one that was not forced.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

__all__ = ["FORCE_WAIT", "ForcedStop", "exit_waits", "forced_status", "wait_for_exit_waits"]

# Seconds a forced stop gives the stop under way (its queued writes) and its own log line;
# past that (a write that cannot finish: a database locked, stdout a full pipe) the
# process ends without them.
FORCE_WAIT = 2.0
# Seconds the end of a stop waits for what is not an analysis (worker processes killed by
# then, threads ending) to be gone, whatever [analysis] stop_grace (for analyses) says.
REAP_WAIT = 2.0


def exit_waits() -> list[Any]:
    """What Python would wait for at exit now: non-daemon threads other than this main one,
    and child processes."""
    main = threading.main_thread()
    threads = [thread for thread in threading.enumerate()
               if thread is not main and not thread.daemon and thread.is_alive()]
    return [*threads, *multiprocessing.active_children()]


def wait_for_exit_waits(grace: float, analyses: Collection[Any] = ()) -> list[Any]:
    """Wait up to ``grace`` seconds in all for the ``analyses`` threads among
    :func:`exit_waits`, and at least :data:`REAP_WAIT` for the rest; those still running.

    The rest are the analysis pool's worker processes, killed as it closed, and the threads
    that watched them or served the reactor: they end at once, but a worker with the
    engine's models loaded takes a moment to, and its pool's thread waits for that.
    Without this wait a ``stop_grace`` of 0 found them at every stop."""
    started = time.monotonic()
    slow = set(analyses)
    deadlines = (started + max(grace, REAP_WAIT), started + grace)  # the rest, analyses
    while True:
        waits = exit_waits()
        now = time.monotonic()
        pending = [(wait, deadlines[wait in slow]) for wait in waits]
        pending = [(wait, deadline) for wait, deadline in pending if deadline > now]
        if not pending:
            return waits
        wait, deadline = pending[0]
        wait.join(deadline - now)  # a thread or a process: join(timeout) either way


def forced_status(signum: int) -> int:
    """The exit status of a stop forced by ``signum``."""
    return 128 + signum


def _kill_children() -> int:
    killed = 0
    for child in multiprocessing.active_children():
        try:
            child.kill()
            killed += 1
        except (OSError, ValueError, AttributeError):  # gone meanwhile
            pass
    return killed


def _end(status: int) -> None:
    _kill_children()
    # The named semaphores of a process pool's queues are unlinked by finalizers that
    # os._exit skips; the resource tracker would then unlink them and warn on stderr of
    # "leaked semaphore objects".  Those of priority 0 and up only close and unlink (the
    # lower ones join threads).  No public way before os._exit.
    try:
        from multiprocessing import util

        util._run_finalizers(0)
    except Exception:  # noqa: BLE001 - only a warning avoided; the exit must happen
        pass
    os._exit(status)


class ForcedStop:
    """``force(signum)`` for :meth:`gateway.stop_signals.StopSignals.deliver_to`.

    Called inside the signal handler, which must not log (the line it interrupted holds
    the log's lock): a thread does the work, and takes that lock once the handler has
    returned and the interrupted line is written.  ``serve`` calls :meth:`reactor_stopped`
    once the reactor's stop is over (the queued writes committed)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def reactor_stopped(self) -> None:
        """The reactor's stop is over.  When the stop was forced, wait here for the end:
        the main thread going on to Python's exit would end the process with status 0."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def __call__(self, signum: int) -> None:
        thread = threading.Thread(target=self._end, args=(signum,), name="forced-stop",
                                  daemon=True)
        try:
            thread.start()
        except RuntimeError:  # the interpreter is finalizing: no new thread, end unlogged
            _end(forced_status(signum))
        self._thread = thread

    def _end(self, signum: int) -> None:
        status = forced_status(signum)
        deadline = time.monotonic() + FORCE_WAIT
        # Should the log line or the writes never finish, the process still ends.
        fallback = threading.Timer(FORCE_WAIT, _end, (status,))
        fallback.daemon = True
        fallback.start()
        self.log.warning("shutdown.forced", signal=signal.Signals(signum).name,
                         exit_status=status)
        self._stopped.wait(max(0.0, deadline - time.monotonic()))
        sys.stdout.flush()
        sys.stderr.flush()
        _end(status)
