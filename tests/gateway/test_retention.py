"""``ri-gateway audit purge --before DATE``: retention over a real audit database, and
against a running gateway on loopback."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from gateway.audit import AuditLog, ReceivedMessage, event_op, inferences_op, status_op
from gateway.cli import main
from gateway.outbox import Outbox
from gateway.routing import PlannedMessage
from test_pipeline_e2e import BASE, CRITICAL_TEXT, free_port, oru, rig, wait_for  # noqa: F401

# Dates in options and in the text output are local time: these read them as UTC.
pytestmark = pytest.mark.usefixtures("utc_zone")

OLD, NEW = "2024-01-10T10:00:00.000Z", "2024-03-10T10:00:00.000Z"


def store(audit: AuditLog, control_id: str, received_at: str, status: str,
          ack_code: str = "AA") -> int:
    message_id = audit.record_received(ReceivedMessage(
        raw=f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240110||ORU^R01|{control_id}|P|2.5.1\r".encode(),
        received_at=received_at, status="received" if status != "rejected" else "rejected",
        ack_code=ack_code, ack_payload=b"ack", control_id=control_id,
        sending_application="RIS", sending_facility="HOSP", message_type="ORU^R01"))
    if status in ("analysed", "skipped", "failed"):
        audit.run(inferences_op(message_id, 1, f"ACC-{control_id}",
                                [{"kind": "finding"}, {"kind": "criticalResult"}]))
        audit.run(status_op(message_id, status))
    elif status == "replay":
        audit.run(status_op(message_id, "replay"))
    return message_id


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "audit.sqlite3")
    with AuditLog(path) as audit:
        done = store(audit, "DONE", OLD, "analysed")
        store(audit, "REJ", OLD, "rejected", ack_code="AE")
        store(audit, "WAIT", OLD, "received")  # never analysed: unfinished
        store(audit, "AGAIN", OLD, "replay")  # a replay requested, not yet taken up
        paging = store(audit, "PAGING", OLD, "analysed")
        store(audit, "RECENT", NEW, "analysed")
        audit.run(event_op("duplicate", "GONE", None, OLD, same_content=True))
        audit.run(event_op("duplicate", "LATER", None, NEW, same_content=True))
    box = Outbox.open(path)
    box.enqueue([PlannedMessage("ehr", "all", "results", "OUT1", b"MSH|1")],
                source_control_id="DONE", message_id=done)
    box.enqueue([PlannedMessage("pager", "crit", "alerts", "OUT2", b"MSH|2")],
                source_control_id="PAGING", message_id=paging)
    box.record_delivered(box.list()[0], "AA")  # DONE's result delivered, PAGING's alert pending
    box.conn.close()
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def rows(path: str) -> dict[str, list]:
    with sqlite3.connect(path) as conn:
        return {
            "messages": [r[0] for r in conn.execute("SELECT control_id FROM messages ORDER BY id")],
            "events": [(r[0], r[1]) for r in conn.execute(
                "SELECT event, control_id FROM events WHERE event != 'purged' ORDER BY id")],
            "inferences": [r[0] for r in conn.execute("SELECT message_id FROM inferences")],
            "outbox": [r[0] for r in conn.execute("SELECT control_id FROM outbox ORDER BY id")],
        }


def test_finished_messages_before_the_date_go_with_everything_about_them(db):
    before = rows(db)
    code, out = run("audit", "purge", "--before", "2024-02-01", "--dry-run", "--json", "--db", db)
    assert code == 0, out
    planned = json.loads(out)
    assert rows(db) == before  # a dry run changes nothing
    code, out = run("audit", "purge", "--before", "2024-02-01", "--json", "--db", db)
    assert code == 0, out
    done = json.loads(out)
    assert {k: v for k, v in planned.items() if k != "dry_run"} == {
        k: v for k, v in done.items() if k != "dry_run"}
    assert (done["messages"], done["inferences"], done["outbox"]) == (2, 2, 1)
    assert done["kept"] == {"received": 1, "replay": 1, "outbox_pending": 1}
    after = rows(db)
    assert after["messages"] == ["WAIT", "AGAIN", "PAGING", "RECENT"]
    assert not {cid for _, cid in after["events"]} & {"DONE", "REJ", "GONE"}
    assert ("duplicate", "LATER") in after["events"]  # after the date: kept
    assert after["outbox"] == ["OUT2"]  # the pending alert stays with its message
    assert done["events"] == len(before["events"]) - len(after["events"])
    # The purge is itself on record, with its date and counts.
    code, out = run("audit", "tail", "-n", "1", "--json", "--db", db)
    event = json.loads(out)
    assert event["event"] == "purged" and event["before"] == "2024-02-01T00:00:00.000Z"
    assert event["messages"] == 2
    code, out = run("audit", "show", "DONE", "--db", db)
    assert code == 1


def test_a_message_whose_alert_is_held_behind_an_earlier_one_is_kept(tmp_path):
    # A held alert (gateway.held_alerts) is sent if the earlier alert of its study is
    # dead-lettered: purged with its message, that page was lost.
    from gateway.audit import transaction

    path = str(tmp_path / "audit.sqlite3")
    with AuditLog(path) as audit:
        held = store(audit, "HELD", OLD, "analysed")
    box = Outbox.open(path)
    with transaction(box.conn) as conn:
        Outbox.enqueue_in(conn, [PlannedMessage("pager", "crit", "alerts", "OUT9", b"MSH|9")],
                          source_control_id="HELD", message_id=held,
                          held=[{"reason": "earlier_alert_pending"}])
    box.conn.close()
    code, out = run("audit", "purge", "--before", "2024-02-01", "--json", "--db", path)
    assert code == 0, out
    assert json.loads(out)["kept"] == {"outbox_pending": 1}
    assert rows(path)["messages"] == ["HELD"] and rows(path)["outbox"] == ["OUT9"]


def test_text_output_and_refusals(db, tmp_path):
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", db)
    assert code == 0 and out.startswith(
        "purged 2 message(s) received before 2024-02-01T00:00:00+00:00")
    assert out.rstrip().endswith("kept as unfinished: 1 outbox_pending, 1 received, 1 replay")
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", db)
    assert code == 0 and out.startswith("purged 0 message(s)")
    assert run("audit", "purge", "--db", db)[0] == 2  # --before is required
    assert run("audit", "purge", "--before", "soon", "--db", db)[0] == 2
    missing = tmp_path / "none.sqlite3"
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", str(missing))
    assert code == 3 and not missing.exists()


def test_purge_beside_a_running_gateway(rig):  # noqa: F811
    mllp = free_port()
    rig.serve(BASE, mllp)
    for n in (1, 2):
        sent = rig.send(mllp, f"m{n}", oru(f"RET000{n}", f"ACC{n}", "MRN1", CRITICAL_TEXT))
        assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("both analysed", lambda: all(rig.events(f"RET000{n}", "analysed") for n in (1, 2)))
    purged = rig.run("audit", "purge", "--before", "2999-01-01", "--json", "--db", rig.db)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert json.loads(purged.stdout)["messages"] == 2
    # The gateway goes on; a resend of a purged control id is no longer a duplicate.
    again = rig.send(mllp, "again", oru("RET0001", "ACC1", "MRN1", CRITICAL_TEXT))
    assert again.returncode == 0 and "MSA|AA|RET0001" in again.stdout
    wait_for("the resend analysed", lambda: rig.events("RET0001", "analysed"))
    assert [e["event"] for e in rig.audit("RET0001") if e["event"] == "duplicate"] == []


def test_a_message_replayed_or_retried_while_the_purge_runs_is_kept(tmp_path, monkeypatch):
    # Ids are read a chunk at a time and checked again under the write lock: an operator's
    # ``replay`` or ``outbox retry`` between the two keeps the message and all it has.
    from gateway import retention

    path = str(tmp_path / "audit.sqlite3")
    with AuditLog(path) as audit:
        ids = {cid: store(audit, cid, OLD, "analysed") for cid in ("A", "B", "C")}
    box = Outbox.open(path)
    box.enqueue([PlannedMessage("ehr", "all", "results", "OUTC", b"MSH|c")],
                source_control_id="C", message_id=ids["C"])
    (row,) = box.list()
    box.record_failed(row, "refused", retry_at=None)  # dead-lettered: C is purgeable
    box.conn.close()
    with AuditLog(path, create=False) as audit:
        run_op = audit.run

        def meanwhile(op):  # type: ignore[no-untyped-def]
            if not meanwhile.done:  # type: ignore[attr-defined]
                meanwhile.done = True  # type: ignore[attr-defined]
                with AuditLog(path, create=False) as other:
                    other.run(status_op(ids["B"], "replay"))
                other_box = Outbox.open(path)
                other_box.retry(row.id)
                other_box.conn.close()
            return run_op(op)

        meanwhile.done = False  # type: ignore[attr-defined]
        monkeypatch.setattr(audit, "run", meanwhile)
        counts = retention.purge(audit, "2024-02-01T00:00:00.000Z")
    assert counts.messages == 1
    after = rows(path)
    assert after["messages"] == ["B", "C"] and after["outbox"] == ["OUTC"]
    assert sorted(set(after["inferences"])) == [ids["B"], ids["C"]]


def test_a_dry_run_or_a_purge_reads_a_chunk_of_ids_at_a_time(db, monkeypatch):
    from gateway import retention

    monkeypatch.setattr(retention, "PURGE_CHUNK", 1)
    code, out = run("audit", "purge", "--before", "2024-02-01", "--dry-run", "--json", "--db", db)
    assert code == 0 and json.loads(out)["messages"] == 2
    code, out = run("audit", "purge", "--before", "2024-02-01", "--json", "--db", db)
    assert code == 0 and json.loads(out)["messages"] == 2
    assert rows(db)["messages"] == ["WAIT", "AGAIN", "PAGING", "RECENT"]


def _fail_on(db: str, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)


def test_a_purge_that_fails_part_way_records_what_it_deleted(db, monkeypatch):
    from gateway import retention

    monkeypatch.setattr(retention, "PURGE_CHUNK", 1)  # DONE, then REJ, each its own chunk
    _fail_on(db, "CREATE TRIGGER stuck BEFORE DELETE ON messages WHEN old.control_id = 'REJ' "
                 "BEGIN SELECT RAISE(ABORT, 'database is locked'); END")
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", db)
    assert code == 3
    assert "purge stopped part-way" in out and "database is locked" in out
    assert "recorded in a purged event: 1 message(s)" in out and "run it again" in out
    assert "Traceback" not in out
    assert rows(db)["messages"] == ["REJ", "WAIT", "AGAIN", "PAGING", "RECENT"]
    code, out = run("audit", "tail", "-n", "1", "--json", "--db", db)
    event = json.loads(out)
    assert (event["event"], event["complete"], event["messages"]) == ("purged", False, 1)
    assert "database is locked" in event["error"]
    # Once the cause is gone, running it again finishes the job and says so.
    _fail_on(db, "DROP TRIGGER stuck")
    code, out = run("audit", "purge", "--before", "2024-02-01", "--json", "--db", db)
    assert code == 0 and json.loads(out)["messages"] == 1
    assert rows(db)["messages"] == ["WAIT", "AGAIN", "PAGING", "RECENT"]
    code, out = run("audit", "tail", "-n", "1", "--json", "--db", db)
    assert json.loads(out)["event"] == "purged" and "complete" not in json.loads(out)


def test_a_purge_that_fails_part_way_and_cannot_record_it_says_so(db, monkeypatch):
    from gateway import retention

    monkeypatch.setattr(retention, "PURGE_CHUNK", 1)
    _fail_on(db, "CREATE TRIGGER stuck BEFORE DELETE ON messages WHEN old.control_id = 'REJ' "
                 "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    _fail_on(db, "CREATE TRIGGER full BEFORE INSERT ON events WHEN new.event = 'purged' "
                 "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", db)
    assert code == 3 and "NOT recorded in the log: 1 message(s)" in out


def test_a_purge_that_fails_before_deleting_anything_reports_only_the_failure(db):
    _fail_on(db, "CREATE TRIGGER stuck BEFORE DELETE ON messages "
                 "BEGIN SELECT RAISE(ABORT, 'database is locked'); END")
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", db)
    assert code == 3 and "database is locked" in out and "part-way" not in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events WHERE event = 'purged'").fetchone() == (0,)


def test_a_purge_that_deletes_everything_but_cannot_record_it_gives_the_counts(db):
    # The final purged event failed: exit 3 with only the database error, the rows gone
    # and nothing, in the log or on the screen, saying how many.
    _fail_on(db, "CREATE TRIGGER full BEFORE INSERT ON events WHEN new.event = 'purged' "
                 "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", db)
    assert code == 3 and "database or disk is full" in out
    assert "purge done but NOT recorded in the log" in out and "deleted 2 message(s)" in out
    assert "run it again" not in out and "Traceback" not in out
    assert rows(db)["messages"] == ["WAIT", "AGAIN", "PAGING", "RECENT"]


def test_a_purge_stopped_with_ctrl_c_records_what_it_deleted(db, monkeypatch):
    # Ctrl-C between two chunks: the first chunk's rows were gone with no event ("Aborted!").
    from gateway import retention

    monkeypatch.setattr(retention, "PURGE_CHUNK", 1)  # DONE, then REJ, each its own chunk
    delete_messages, chunks = retention._delete_messages, []

    def interrupted_on_the_second(chunk, attached):
        chunks.append(chunk)
        if len(chunks) == 2:
            raise KeyboardInterrupt
        return delete_messages(chunk, attached)

    monkeypatch.setattr(retention, "_delete_messages", interrupted_on_the_second)
    code, out = run("audit", "purge", "--before", "2024-02-01", "--db", db)
    assert code == 3 and "purge stopped part-way (interrupted)" in out
    assert "recorded in a purged event: 1 message(s)" in out
    assert rows(db)["messages"] == ["REJ", "WAIT", "AGAIN", "PAGING", "RECENT"]
    code, out = run("audit", "tail", "-n", "1", "--json", "--db", db)
    event = json.loads(out)
    assert (event["event"], event["complete"], event["messages"], event["error"]) == (
        "purged", False, 1, "interrupted")


def test_a_report_whose_follow_up_is_not_yet_due_is_kept(tmp_path):
    # A 90-day retention purge deleted the CT that recommended a follow-up CT in 6 months
    # before the follow-up was even due: report followups then never showed it, neither
    # open, nor overdue, nor completed. A report whose recommendation is past due goes.
    import datetime as dt

    from test_reports import CT_CHEST, NODULE_6_MONTHS, Log

    today = dt.datetime.now(dt.timezone.utc).date()
    recent, old = (f"{today - dt.timedelta(days=days):%Y%m%d}" for days in (100, 400))
    path = str(tmp_path / "audit.sqlite3")
    log = Log(path)
    log.add("OPEN1", "MRN-O", "ACC-O1", CT_CHEST, recent, NODULE_6_MONTHS)
    log.add("PAST1", "MRN-P", "ACC-P1", CT_CHEST, old, NODULE_6_MONTHS)
    log.add("NONE1", "MRN-N", "ACC-N1", CT_CHEST, recent, "FINDINGS: Clear lungs.")
    log.audit.close()
    before = (today - dt.timedelta(days=90)).isoformat()
    code, out = run("audit", "purge", "--before", before, "--json", "--db", path)
    assert code == 0, out
    counts = json.loads(out)
    assert (counts["messages"], counts["kept"]) == (2, {"followup_open": 1})
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT control_id FROM messages")] == ["OPEN1"]
    code, out = run("report", "followups", "--db", path, "--json")
    assert code == 0, out
    (item,) = map(json.loads, out.splitlines())
    assert (item["control_id"], item["status"]) == ("OPEN1", "open")
