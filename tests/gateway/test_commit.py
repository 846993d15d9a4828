from __future__ import annotations

from twisted.internet import defer

from gateway.audit import AuditLog, ReceivedMessage, received_op
from gateway.commit import GroupCommitter


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
