from __future__ import annotations

import pytest
from twisted.internet import defer

from gateway.audit import AuditLog, ReceivedMessage, received_op
from gateway.commit import GroupCommitter
from gateway.errors import DatabaseLost


class ManualWriter:
    """Runs nothing until the test says the write has finished."""

    def __init__(self):
        self.pending = []

    def __call__(self, fn):
        d = defer.Deferred()
        self.pending.append((fn, d))
        return d

    def finish_one(self):
        fn, d = self.pending.pop(0)
        d.callback(fn())


def msg(cid):
    return ReceivedMessage(raw=b"MSH|x", received_at="2024-01-15T10:00:00.000Z", status="received",
                           ack_code="AA", ack_payload=b"ack", control_id=cid,
                           sending_application="A", sending_facility="F")


def test_results_only_after_commit_and_batching(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    writer = ManualWriter()
    committer = GroupCommitter(audit, writer)
    fired = []
    committer.submit(received_op(msg("1"))).addCallback(fired.append)
    committer.submit(received_op(msg("2"))).addCallback(fired.append)
    committer.submit(received_op(msg("3"))).addCallback(fired.append)
    # The first op started a transaction alone; the others wait for it.
    assert fired == [] and len(writer.pending) == 1
    assert audit.messages_for("1") == []
    writer.finish_one()
    assert fired == [1]
    assert len(writer.pending) == 1  # 2 and 3 together
    writer.finish_one()
    assert fired == [1, 2, 3]
    assert committer.commits == 2


def test_failed_op_errbacks_only_itself(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    committer = GroupCommitter(audit, lambda fn: defer.maybeDeferred(fn))
    ok = []
    failed = []
    def failing(conn):
        raise RuntimeError("bug in an op")

    d1 = committer.submit(received_op(msg("1")))
    d2 = committer.submit(failing)
    d1.addCallback(ok.append)
    d2.addErrback(failed.append)
    assert ok == [1] and [f.value.args for f in failed] == [("bug in an op",)]


def test_whole_transaction_failure_errbacks_batch(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    committer = GroupCommitter(audit, lambda fn: defer.fail(OSError("disk full")))
    failed = []
    committer.submit(received_op(msg("1"))).addErrback(failed.append)
    assert [f.value.args for f in failed] == [("disk full",)]
    drained = []
    committer.drained().addCallback(drained.append)
    assert drained == [None]


class FailingCommitter:
    """Fails the first ``failures`` submits with ``error``, then commits (returns the op)."""

    def __init__(self, failures, error):
        self.failures = failures
        self.error = error
        self.submitted = 0

    def submit(self, op):
        self.submitted += 1
        if self.submitted <= self.failures:
            return defer.fail(self.error)
        return defer.succeed(op)


def _retrying(committer):
    from twisted.internet.task import Clock

    from gateway.commit import RetryingCommitter

    clock = Clock()
    return RetryingCommitter(committer, clock, first=1.0, longest=4.0), clock


def test_a_write_that_found_the_database_locked_is_committed_again_with_backoff():
    from gateway.errors import AuditError

    committer = FailingCommitter(4, AuditError("audit database x write failed: database is locked"))
    retrying, clock = _retrying(committer)
    waits, fired = [], []
    retrying.submit("the op", lambda failure, delay: waits.append(delay)).addCallback(fired.append)
    for _ in range(4):
        clock.advance(waits[-1])
    assert (waits, fired, committer.submitted) == ([1.0, 2.0, 4.0, 4.0], ["the op"], 5)


@pytest.mark.parametrize("error", [
    ValueError("a bug"),
    # Every later write fails the same way until a restart (gateway.database_files):
    # retried, each analysis in the pool logged analysis.not_recorded "retry_in 30" for ever.
    DatabaseLost("audit database x was deleted while the gateway was writing it"),
])
def test_an_error_that_a_retry_cannot_mend_is_not_retried(error):
    committer = FailingCommitter(1, error)
    retrying, clock = _retrying(committer)
    waits, failed = [], []
    retrying.submit("op", lambda failure, delay: waits.append(delay)).addErrback(
        lambda f: failed.append(f.type))
    assert (waits, failed, committer.submitted) == ([], [type(error)], 1)


def test_stop_fails_the_writes_waiting_to_be_retried_at_once():
    import sqlite3

    committer = FailingCommitter(10, sqlite3.OperationalError("database or disk is full"))
    retrying, clock = _retrying(committer)
    failed = []
    retrying.submit("op", lambda failure, delay: None).addErrback(lambda f: failed.append(f.type))
    retrying.stop()
    assert (failed, clock.getDelayedCalls()) == ([sqlite3.OperationalError], [])
    clock.advance(60)
    assert committer.submitted == 1
