"""Group commit: audit writes batched into transactions off the reactor thread.

:meth:`GroupCommitter.submit` queues an audit operation and returns a Deferred that
fires with the op's result only after the transaction holding it has been
committed.  The receiver sends an ACK from that Deferred, so an ACK can never leave
before its commit.

While one transaction is being written (on the single writer thread), new ops
queue up; when it finishes, everything queued (up to ``max_batch``) goes into the
next transaction.  Under load, one fsync therefore covers many messages; at low
load each message gets its own commit without waiting for a timer.

The writer is a seam: ``run_in_writer(fn) -> Deferred`` defaults to a one-thread
pool; tests pass their own to control when a commit "finishes".
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from .audit import AuditLog, Op
from .errors import AuditError, DatabaseLost

__all__ = ["GroupCommitter", "RetryingCommitter", "thread_writer"]

RunInWriter = Callable[[Callable[[], Any]], defer.Deferred]


def thread_writer(reactor: Any, name: str = "audit-writer"
                  ) -> tuple[RunInWriter, Callable[[], None]]:
    """A one-thread pool for database writes (or other work done one piece at a time off
    the reactor: ``name`` names its thread): ``(run_in_writer, stop)``.

    The thread starts with the first write, not here: the gateway is built before the
    reactor runs, and a build that fails after this call (a bad setting, a file that
    cannot be opened) would otherwise leave a non-daemon thread that nobody stops, and the
    process would never exit. Writes after ``stop`` do not start it again (Twisted drops
    them, as it did before).
    """
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    pool = ThreadPool(minthreads=1, maxthreads=1, name=name)

    def run(fn: Callable[[], Any]) -> defer.Deferred:
        if not pool.started and not pool.joined:
            pool.start()
        return deferToThreadPool(reactor, pool, fn)

    return run, pool.stop


class GroupCommitter:
    def __init__(self, audit: AuditLog, run_in_writer: RunInWriter, *, max_batch: int = 256,
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.audit = audit
        self.run_in_writer = run_in_writer
        self.max_batch = max_batch
        self.on_commit = on_commit  # called with the batch size after each commit
        self._queue: deque[tuple[Op[Any], defer.Deferred]] = deque()
        self._busy = False
        self._idle: list[defer.Deferred] = []
        self.commits = 0

    def submit(self, op: Op[Any]) -> defer.Deferred:
        """Queue ``op``; the Deferred fires with its result once committed (or fails)."""
        d: defer.Deferred = defer.Deferred()
        self._queue.append((op, d))
        if not self._busy:
            self._flush()
        return d

    def _flush(self) -> None:
        batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        if not batch:
            self._busy = False
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
            return
        self._busy = True
        ops = [op for op, _ in batch]
        d = self.run_in_writer(lambda: self.audit.run_batch(ops))
        d.addBoth(self._done, batch)

    def _done(self, outcome: Any, batch: list[tuple[Op[Any], defer.Deferred]]) -> None:
        self.commits += 1
        if isinstance(outcome, Failure):
            for _, d in batch:
                d.errback(outcome)
        else:
            if self.on_commit is not None:
                self.on_commit(len(batch))
            for (_, d), result in zip(batch, outcome):
                if isinstance(result, BaseException):
                    d.errback(Failure(result))
                else:
                    d.callback(result)
        self._flush()

    def drained(self) -> defer.Deferred:
        """Fires once nothing is queued or being written (used at shutdown)."""
        if not self._busy and not self._queue:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._idle.append(d)
        return d


class RetryingCommitter:
    """Submits ops to a committer again after a database failure, until they commit.

    For writes that must not be dropped although nobody waits for them: the record of
    an analysis (its inferences, its status and its outbound messages).  Such a write
    that failed once (a lock an admin's ``sqlite3`` session held longer than the busy
    timeout, a full disk) used to leave its message ``received`` until the next start,
    however soon the database took writes again: the report, ACKed long before, went
    unanalysed and its results and alerts unsent, for days if the gateway ran that long.

    A failed attempt is tried again after ``first`` seconds, then twice as long each
    time up to ``longest``; ``on_retry(failure, delay)`` is called before each wait (to
    log it).  Only database errors are retried (:class:`AuditError`, SQLite's
    ``OperationalError``): any other error would fail the same way again, and so would a
    :class:`DatabaseLost`.  :meth:`stop`
    fails every op still waiting, with its last error, at once.
    """

    def __init__(self, committer: Any, clock: Any, *, first: float = 1.0,
                 longest: float = 30.0) -> None:
        self.committer = committer
        self.clock = clock
        self.first = first
        self.longest = longest
        self._waiting: dict[int, tuple[Any, defer.Deferred, Failure]] = {}
        self._stopped = False

    def submit(self, op: Op[Any], on_retry: Callable[[Failure, float], None]
               ) -> defer.Deferred:
        """Fires with ``op``'s result once committed, or fails with an error not worth
        retrying, or with the last error once :meth:`stop` is called."""
        result: defer.Deferred = defer.Deferred()

        def attempt(delay: float) -> None:
            self.committer.submit(op).addCallbacks(
                result.callback, failed, errbackArgs=(delay,))

        def failed(failure: Failure, delay: float) -> None:
            # A database deleted or replaced under the gateway fails every write until a
            # restart: retried, it would only log the same error every 30 s.
            if (self._stopped or failure.check(DatabaseLost)
                    or not failure.check(AuditError, sqlite3.OperationalError)):
                result.errback(failure)
                return
            on_retry(failure, delay)
            key = id(result)

            def again() -> None:
                del self._waiting[key]
                attempt(min(2 * delay, self.longest))

            self._waiting[key] = (self.clock.callLater(delay, again), result, failure)

        attempt(self.first)
        return result

    def stop(self) -> None:
        self._stopped = True
        waiting, self._waiting = self._waiting, {}
        for call, result, failure in waiting.values():
            call.cancel()
            result.errback(failure)
