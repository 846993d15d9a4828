"""The check that the audit database is still at its path, when ``stat`` cannot tell.

Only ENOENT and ENOTDIR say the file is gone. Any other error from ``stat`` (EACCES after
a directory's permissions changed, EIO from a failing disk) leaves the question open: the
gateway keeps taking messages, logs a warning naming the errno and checks again at the next
commit. Tests run as root, so the error is made by ``os.stat`` for the database's path only.
"""

from __future__ import annotations

import errno
import itertools
import json
import os

import pytest
from structlog.testing import capture_logs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.audit import AuditLog, event_op
from gateway.commit import GroupCommitter
from gateway.config import MLLPSettings
from gateway.errors import AuditError
from gateway.http import JobStore, make_site
from gateway.metrics import Metrics
from gateway.receiver import Receiver
from mllp.server import MLLPServerFactory

from gateway_samples import FakeReport, frame, immediate_writer, oru, segments, unframe_all


class StatFails:
    """``os.stat`` raising ``code`` for the given paths while ``on``; every other path as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, code: int, *paths: str) -> None:
        self.code = code
        self.paths = set(paths)
        self.on = True
        real = os.stat

        def stat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.on and os.fspath(path) in self.paths:
                raise OSError(self.code, os.strerror(self.code), os.fspath(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)


class Gateway:
    """The gateway's receive path and /health over its audit writer, without sockets."""

    def __init__(self, tmp_path) -> None:
        self.db = str(tmp_path / "audit.sqlite3")
        self.audit = AuditLog(self.db, single_writer=True)
        self.committer = GroupCommitter(self.audit, immediate_writer)
        counter = itertools.count(1)
        self.receiver = Receiver(
            self.committer, settings=MLLPSettings(map_before_ack="check"),
            mapper=lambda text: [FakeReport(request=None)], on_accepted=lambda msg: None,
            ids=lambda: f"ACK{next(counter)}", clock=lambda: 0.0)
        self.factory = MLLPServerFactory(self.receiver, clock=Clock())
        self.store = JobStore(self.db, write=self.committer.submit)
        self.site = make_site(
            analysis=None, job_store=self.store, api_keys=(), metrics=Metrics(),
            health_checks={"message_store": lambda: self.receiver.store_failure is None},
            max_body_bytes=1000, clock=Clock())

    def send(self, control_id: str) -> list[str]:
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
        proto.makeConnection(transport)
        proto.dataReceived(frame(oru(control_id)))
        (ack,) = unframe_all(transport.value())
        return segments(ack)

    def health(self) -> tuple[int, dict]:
        proto = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), json.loads(body)

    def close(self) -> None:
        self.store.close()
        self.audit.close()


@pytest.fixture
def gateway(tmp_path):
    gw = Gateway(tmp_path)
    assert gw.send("BEFORE1")[1] == "MSA|AA|BEFORE1"
    yield gw
    gw.close()


HEALTHY = (200, {"status": "pass", "checks": {"database": "pass", "message_store": "pass"}})


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO])
def test_a_stat_error_other_than_gone_keeps_the_gateway_taking_messages(
        monkeypatch, gateway, code):
    failing = StatFails(monkeypatch, code, gateway.db)
    with capture_logs() as logs:
        assert gateway.send("UNSURE1")[1] == "MSA|AA|UNSURE1"
        assert gateway.send("UNSURE2")[1] == "MSA|AA|UNSURE2"
        assert gateway.health() == HEALTHY
        failing.on = False
        assert gateway.send("AFTER1")[1] == "MSA|AA|AFTER1"
    name = errno.errorcode[code]
    # One warning while it lasts (not one per commit), one line when the check passes again.
    assert [(e["event"], e["log_level"], e.get("errno"), e["file"]) for e in logs
            if e["event"].startswith("audit.files_check")] == [
        ("audit.files_check_inconclusive", "warning", name, gateway.db),
        ("audit.files_check_passed_again", "info", None, gateway.db)]
    assert [m["ack_code"] for c in ("UNSURE1", "UNSURE2", "AFTER1")
            for m in gateway.audit.messages_for(c)] == ["AA", "AA", "AA"]


def test_a_stat_error_on_the_wal_is_inconclusive_too(monkeypatch, gateway):
    StatFails(monkeypatch, errno.EIO, f"{gateway.db}-wal")
    assert gateway.send("UNSURE1")[1] == "MSA|AA|UNSURE1"
    assert gateway.health() == HEALTHY


def test_a_database_deleted_after_an_inconclusive_check_is_still_found(monkeypatch, gateway):
    failing = StatFails(monkeypatch, errno.EACCES, gateway.db)
    assert gateway.send("UNSURE1")[1] == "MSA|AA|UNSURE1"
    failing.on = False
    os.unlink(gateway.db)
    ack = gateway.send("GONE1")
    assert ack[1] == "MSA|AR|GONE1|the message could not be stored; send it again"
    assert gateway.health()[0] == 503


def test_a_directory_replaced_by_a_file_is_a_deleted_database(tmp_path):
    # ENOTDIR: the path's directory is no longer one (moved away, a file in its place).
    where = tmp_path / "data"
    where.mkdir()
    audit = AuditLog(str(where / "audit.sqlite3"), single_writer=True)
    try:
        audit.run(event_op("test", None))
        where.rename(tmp_path / "data.old")
        where.write_bytes(b"")
        with pytest.raises(AuditError, match=f"audit database {where / 'audit.sqlite3'} was "
                                             "deleted"):
            audit.run(event_op("test", None))
    finally:
        audit.close()


def test_audit_tail_follow_goes_on_when_stat_cannot_tell(monkeypatch, tmp_path):
    db = str(tmp_path / "audit.sqlite3")
    AuditLog(db).close()
    with AuditLog(db, readonly=True) as follower:
        StatFails(monkeypatch, errno.EACCES, db)
        follower.check_same_file()  # no "was deleted": the next poll checks again
