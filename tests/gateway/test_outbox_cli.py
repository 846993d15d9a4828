"""``ri-gateway outbox list | retry | purge`` against a real audit database."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from twisted.internet import task

from gateway.audit import AuditLog
from gateway.cli import main
from gateway.outbox import NotRequeued, Outbox
from gateway.routing import PlannedMessage

# Dates in options and in the text output are local time: these read them as UTC.
pytestmark = pytest.mark.usefixtures("utc_zone")

DAY = 86400.0
T0 = 1_705_276_800.0  # 2024-01-15T00:00:00Z


def new_outbox(tmp_path) -> tuple[str, task.Clock, Outbox]:
    """An audit database with an empty outbox, its clock at T0."""
    path = str(tmp_path / "audit.sqlite3")
    AuditLog(path).close()
    clock = task.Clock()
    clock.advance(T0)
    return path, clock, Outbox.open(path, clock=clock)


@pytest.fixture
def db(tmp_path):
    path, clock, box = new_outbox(tmp_path)
    box.enqueue([PlannedMessage("ehr", "all", "results", f"OUT{n}", b"MSH|x") for n in (1, 2, 3)],
                source_control_id="IN1")
    rows = box.list()
    box.record_delivered(rows[0], "AA")
    box.record_failed(rows[1], "AR", retry_at=None, ack_code="AR")
    clock.advance(2 * DAY)
    box.conn.close()
    return path


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_list_json(db):
    code, out = run("outbox", "list", "--db", db, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["status"], r["control_id"], r["attempts"], r["ack_code"]) for r in rows] == [
        (1, "delivered", "OUT1", 1, "AA"), (2, "dead", "OUT2", 1, "AR"), (3, "pending", "OUT3", 0, None)]
    assert rows[0]["delivered_at"] == "2024-01-15T00:00:00Z"
    code, out = run("outbox", "list", "--db", db, "--status", "dead")
    assert code == 0 and len(out.splitlines()) == 1 and "OUT2" in out and "AR" in out


def test_retry_by_id_and_dead(db):
    assert run("outbox", "retry", "--db", db, "2") == (0, "re-queued 2 (dead -> pending) for ehr\n")
    assert run("outbox", "retry", "--db", db, "--dead") == (0, "re-queued 0 dead-lettered message(s)\n")
    # An id not found is a negative outcome (exit 1), as a control id replay or audit show
    # does not find; it exited 2, the code for unusable input, and scripts told the two
    # commands' "not found" apart by number.
    code, out = run("outbox", "retry", "--db", db, "99")
    assert code == 1 and "no outbox message with id 99" in out
    code, out = run("outbox", "retry", "--db", db, "1")  # already delivered
    assert code == 1 and "already delivered" in out
    code, _ = run("outbox", "retry", "--db", db)  # usage: no ids and no --dead
    assert code == 2


def test_purge_only_delivered_before_the_date(db):
    assert run("outbox", "purge", "--db", db, "--delivered", "--before", "2024-01-14") == (
        0, "purged 0 delivered message(s)\n")
    assert run("outbox", "purge", "--db", db, "--delivered", "--before", "2024-01-16") == (
        0, "purged 1 delivered message(s)\n")
    code, out = run("outbox", "list", "--db", db, "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2, 3]
    code, _ = run("outbox", "purge", "--db", db, "--before", "2024-01-16")
    assert code == 2
    code, _ = run("outbox", "purge", "--db", db, "--delivered", "--before", "yesterday")
    assert code == 2


def test_missing_database_is_exit_3(tmp_path):
    code, _ = run("outbox", "list", "--db", str(tmp_path / "none.sqlite3"))
    assert code == 3


def test_retry_with_an_unknown_id_re_queues_none_of_the_others(db):
    # "retry 2 99" re-queued 2, then failed on 99: an error exit after a change was made.
    code, out = run("outbox", "retry", "--db", db, "2", "99")
    assert code == 1 and "no outbox message with id 99 (nothing re-queued)" in out
    code, out = run("outbox", "list", "--db", db, "--json")
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["delivered", "dead", "pending"]
    # An id given twice is one message: re-queued (and audited) once.
    assert run("outbox", "retry", "--db", db, "2", "3", "2") == (
        0, "re-queued 2 (dead -> pending) for ehr\nre-queued 3 (pending -> pending) for ehr\n")


def test_retry_refuses_destination_without_dead(db):
    # --destination was silently ignored with IDs: message 2 (for "ehr") went back to the
    # queue although the operator asked for the pager's.
    code, out = run("outbox", "retry", "--db", db, "2", "--destination", "pager")
    assert code == 2 and "--destination applies only with --dead" in out
    code, out = run("outbox", "list", "--db", db, "--status", "dead")
    assert code == 0 and "OUT2" in out


def test_retry_says_what_is_missing_or_too_much(db):
    # Neither IDs nor --dead was answered "(not both)", as if the operator had given both.
    code, out = run("outbox", "retry", "--db", db)
    assert code == 2 and "give the IDs of the messages to re-queue, or --dead" in out
    assert "not both" not in out
    code, out = run("outbox", "retry", "--db", db, "2", "--dead")
    assert code == 2 and "give message IDs or --dead, not both" in out


def test_list_on_a_file_that_is_not_a_database_is_exit_3(tmp_path):
    # It ended in a traceback (sqlite3.DatabaseError), where retry and purge said why.
    path = tmp_path / "audit.sqlite3"
    path.write_bytes(b"not a database, not even close to one" * 100)
    code, out = run("outbox", "list", "--db", str(path))
    assert code == 3
    assert f"ri-gateway: cannot open audit database {path}: file is not a database" in out


def test_list_on_an_audit_database_without_an_outbox_lists_nothing(tmp_path):
    path = str(tmp_path / "audit.sqlite3")
    AuditLog(path).close()
    assert run("outbox", "list", "--db", path) == (0, "")


def test_a_dead_message_is_listed_with_when_it_was_dead_lettered(tmp_path, local_zone):
    local_zone("Asia/Kolkata")  # the text in local time, with its offset; JSON in UTC
    path, clock, box = new_outbox(tmp_path)
    box.enqueue([PlannedMessage("pager", "crit", "alerts", "OUT1", b"MSH|x")], source_control_id="IN1")
    clock.advance(DAY)
    box.record_failed(box.list()[0], "AR", retry_at=None, ack_code="AR")
    box.conn.close()
    code, out = run("outbox", "list", "--db", path)
    assert code == 0 and "attempts=1 2024-01-16T05:30:00+05:30  AR" in out, out
    code, out = run("outbox", "list", "--db", path, "--json")
    row = json.loads(out)
    assert (row["created_at"], row["updated_at"]) == ("2024-01-15T00:00:00Z", "2024-01-16T00:00:00Z")


def test_a_retry_sees_a_delivery_committed_before_it_re_queues(tmp_path):
    """`outbox retry ID` of a pending message that the running gateway delivers meanwhile:
    the check (not delivered) was read before the re-queue took the write lock, so a
    delivery committed in between was overwritten with `pending` and the message was sent
    a second time. The delivery here commits just as the retry asks for the lock."""
    import sqlite3

    path, clock, gateway = new_outbox(tmp_path)
    gateway.enqueue([PlannedMessage("pager", "crit", "alerts", "OUT1", b"MSH|x")],
                    source_control_id="IN1")
    (row,) = gateway.list()
    delivered: list[bool] = []

    class DeliveredMeanwhile(sqlite3.Connection):
        def execute(self, sql, *args):  # type: ignore[no-untyped-def]
            if sql == "BEGIN IMMEDIATE" and not delivered:
                delivered.append(True)
                gateway.record_delivered(row, "AA")
            return super().execute(sql, *args)

    operator = Outbox(sqlite3.connect(path, isolation_level=None, factory=DeliveredMeanwhile),
                      clock=clock)
    with pytest.raises(NotRequeued, match="already delivered"):
        operator.retry(row.id)
    assert [(r.status, r.attempts) for r in gateway.list()] == [("delivered", 1)]
    operator.conn.close()
    gateway.conn.close()


def result(control_id: str, accession: str | None, patients: tuple[str, ...],
           destination: str = "ehr") -> PlannedMessage:
    return PlannedMessage(destination, "to-ehr", "results", control_id, b"MSH|x",
                          accession=accession, patients=patients)


def test_retry_dead_keeps_a_result_whose_later_version_is_queued(tmp_path):
    # Version 1 dead-lettered, version 2 (a correction) pending: version 2 replaces it, and
    # re-queued while version 2 was in flight, version 1 reached the EHR after it. Another
    # patient's report under the accession, a result naming no study and one to another
    # destination go back.
    path, _, box = new_outbox(tmp_path)
    for message_id, planned in enumerate([
            result("V1", "ACC1", ("p1",)), result("OTHER", "ACC1", ("p2",)),
            result("NOSTUDY", None, ()), result("ELSEWHERE", "ACC1", ("p1",), "archive"),
            result("V2", "ACC1", ("p1", "p3"))], start=1):
        box.enqueue([planned], source_control_id=f"IN{message_id}", message_id=message_id)
    for row in box.list()[:4]:
        box.record_failed(row, "AE", retry_at=None, ack_code="AE")
    box.conn.close()
    assert run("outbox", "retry", "--db", path, "--dead") == (0, (
        "re-queued 3 dead-lettered message(s)\n"
        "kept dead 1 for ehr: a later version of the report is queued as 5 "
        "(name it to send it again: outbox retry 1)\n"))
    result_ = CliRunner().invoke(main, ["outbox", "retry", "--db", path, "1"],
                                 catch_exceptions=False)
    assert (result_.exit_code, result_.stdout, result_.stderr) == (
        0, "re-queued 1 (dead -> pending) for ehr\n",
        "warning: 1 is an older version of a report whose later version is queued to ehr "
        "as 5: ehr may file it as the current result\n")


def test_retry_of_both_versions_together_warns_of_none(tmp_path):
    # Both versions dead-lettered (an EHR refusing until the patient was registered), both
    # named: they go back in the order they came, the older one first, so the EHR files the
    # later one last. Nothing can be filed out of order, and no warning says otherwise.
    path, _, box = new_outbox(tmp_path)
    for message_id, planned in enumerate([result("V1", "ACC1", ("p1",)),
                                          result("V2", "ACC1", ("p1",))], start=1):
        box.enqueue([planned], source_control_id=f"IN{message_id}", message_id=message_id)
    for row in box.list():
        box.record_failed(row, "AE", retry_at=None, ack_code="AE")
    box.conn.close()
    result_ = CliRunner().invoke(main, ["outbox", "retry", "--db", path, "1", "2"],
                                 catch_exceptions=False)
    assert (result_.exit_code, result_.stdout, result_.stderr) == (
        0, "re-queued 1 (dead -> pending) for ehr\nre-queued 2 (dead -> pending) for ehr\n", "")
