from __future__ import annotations

import os
import stat
from dataclasses import replace

import pytest

from gateway.audit import (
    AuditLog, Duplicate, ReceivedMessage, duplicate_op, event_op, inferences_op, received_op,
    status_op,
)
from gateway.errors import AuditError


def message(control_id="C1", ack_code="AA", status="received", app="RIS", fac="HOSP", **kw):
    return ReceivedMessage(
        raw=f"MSH|^~\\&|{app}|{fac}|||||ORU^R01|{control_id}|P|2.5".encode(),
        received_at="2024-01-15T10:00:00.000Z", status=status, ack_code=ack_code,
        ack_payload=b"MSH|ack", ack_control_id="A1", conn_id=1, peer="127.0.0.1:5000",
        control_id=control_id, sending_application=app, sending_facility=fac,
        message_type="ORU^R01", version="2.5", processing_id="P", charset="utf-8", **kw)


def test_created_with_owner_only_permissions(tmp_path):
    path = tmp_path / "new" / "audit.sqlite3"
    audit = AuditLog(str(path))
    audit.record_received(message())
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    wal = str(path) + "-wal"
    assert os.path.exists(wal)
    assert stat.S_IMODE(os.stat(wal).st_mode) == 0o600
    assert audit.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_received_message_and_events(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    message_id = audit.record_received(message())
    audit.record_event("analysed", "C1", message_id, inferences=2)
    events = audit.events()
    assert [(e["event"], e["control_id"], e["message_type"], e["sender"], e["ack_code"])
            for e in events] == [("received", "C1", "ORU^R01", "RIS^HOSP", "AA"),
                                 ("analysed", "C1", "ORU^R01", "RIS^HOSP", "AA")]
    assert events[1]["fields"] == {"inferences": 2}
    assert audit.events(last=1) == events[1:]
    assert audit.events(after_id=events[0]["id"]) == events[1:]


def test_duplicate_key_only_counts_accepted_messages(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    audit.record_received(message(ack_code="AR", status="rejected"))
    assert audit.find_accepted("RIS", "HOSP", "C1") is None
    first = audit.record_received(message())
    stored = audit.find_accepted("RIS", "HOSP", "C1")
    assert (stored.id, stored.ack_payload, stored.status) == (first, b"MSH|ack", "received")
    assert audit.find_accepted("RIS", "OTHER", "C1") is None


def test_a_duplicate_is_not_stored_but_answered_with_the_original_ack(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    first = audit.record_received(message())
    again = audit.record_received(message())
    changed = audit.record_received(replace(message(ack_code="AR", status="rejected"),
                                            raw=b"MSH|^~\\&|RIS|HOSP|||||ORU^R01|C1|P|9.9"))
    assert [again, changed] == [Duplicate(first, "AA", b"MSH|ack", True),
                                Duplicate(first, "AA", b"MSH|ack", False)]
    assert [m["id"] for m in audit.messages_for("C1")] == [first]
    assert [(e["event"], e["message_id"], e["fields"]) for e in audit.events()] == [
        ("received", first, {"ack_code": "AA", "conn_id": 1, "peer": "127.0.0.1:5000",
                             "size": 38}),
        ("duplicate", first, {"conn_id": 1, "peer": "127.0.0.1:5000", "size": 38,
                              "same_content": True, "ack_code": "AA"}),
        ("duplicate", first, {"conn_id": 1, "peer": "127.0.0.1:5000", "size": 38,
                              "same_content": False, "ack_code": "AA"}),
    ]


def test_duplicate_op_records_what_a_later_duplicate_gets(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    first = audit.record_received(message())
    later = audit.record_received(message())  # found by the commit itself: the reference
    dup = message()
    waited = audit.run(duplicate_op(first, dup.raw, dup.received_at, dup.control_id,
                                    dup.conn_id, dup.peer))
    assert waited == later == Duplicate(first, "AA", b"MSH|ack", True)
    *_, reference, recorded = audit.events()
    assert {k: v for k, v in recorded.items() if k != "id"} == {
        k: v for k, v in reference.items() if k != "id"}


def test_duplicate_op_finds_the_original_by_id_whatever_its_ack(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    # Answered AR after analysis: not in the accepted-key index, still the original.
    first = audit.record_received(message(ack_code="AR", status="failed"))
    dup = message()
    changed = audit.run(duplicate_op(first, dup.raw + b"\rOBX|1", dup.received_at, "C1", 2,
                                     "127.0.0.1:5001"))
    assert changed == Duplicate(first, "AR", b"MSH|ack", False)
    assert [(e["event"], e["message_id"], e["ack_code"]) for e in audit.events()][-1] == (
        "duplicate", first, "AR")
    with pytest.raises(AuditError, match="not stored"):
        audit.run(duplicate_op(first + 1, dup.raw, dup.received_at, "C1", 2, "127.0.0.1:5001"))


def test_batch_isolates_a_failing_op(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    def failing(conn):
        conn.execute("INSERT INTO messages (id) VALUES (1)")
        raise RuntimeError("after a write")

    results = audit.run_batch([received_op(message("C1")), failing, received_op(message("C2"))])
    assert isinstance(results[1], Exception)
    assert [type(r) for r in (results[0], results[2])] == [int, int]
    assert [m["control_id"] for m in audit.messages_for("C1") + audit.messages_for("C2")] == ["C1", "C2"]
    assert audit.conn.execute("SELECT COUNT(*) FROM messages").fetchone() == (2,)


def test_pending_analysis_and_inferences(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    first = audit.record_received(message("C1"))
    second = audit.record_received(message("C2"))
    audit.run_batch([inferences_op(first, 1, "ACC1", [{"kind": "finding", "x": 1}]),
                     status_op(first, "analysed", reports=1),
                     event_op("analysed", "C1", first)])
    assert [m.control_id for m in audit.pending_analysis()] == ["C2"]
    assert audit.inferences_for(first) == [
        {"obr_index": 1, "accession": "ACC1", "kind": "finding",
         "inference": {"kind": "finding", "x": 1}}]
    assert audit.messages_for("C1")[0]["status"] == "analysed"
    assert second != first


def test_readonly_needs_an_existing_file(tmp_path):
    with pytest.raises(AuditError):
        AuditLog(str(tmp_path / "none.sqlite3"), readonly=True)
    AuditLog(str(tmp_path / "a.sqlite3")).record_received(message())
    reader = AuditLog(str(tmp_path / "a.sqlite3"), readonly=True)
    assert [e["event"] for e in reader.events()] == ["received"]


def _rows(audit):
    messages = audit.conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
    events = audit.conn.execute(
        "SELECT time, event, control_id, message_id, fields FROM events ORDER BY id").fetchall()
    return messages, events


def test_a_batch_of_accepted_messages_is_stored_as_one_by_one(tmp_path):
    """Accepted messages committed together (the ACK path's batches) give the same rows,
    ids and events as the same messages committed one at a time."""
    batch = [replace(message(f"C{i}"), conn_id=i) for i in range(1, 41)]
    together = AuditLog(str(tmp_path / "together.sqlite3"))
    together.record_received(message("C0"))
    ids = together.run_batch([received_op(m, replaced=True if i % 2 else None)
                              for i, m in enumerate(batch)])
    alone = AuditLog(str(tmp_path / "alone.sqlite3"))
    alone.record_received(message("C0"))
    expected = [alone.run_batch([received_op(m, replaced=True if i % 2 else None)])[0]
                for i, m in enumerate(batch)]
    assert ids == expected == list(range(2, 42))
    assert _rows(together) == _rows(alone)


def test_a_duplicate_inside_a_batch_of_accepted_messages(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    first = audit.record_received(message("C1"))
    results = audit.run_batch([received_op(message("C2")), received_op(message("C1")),
                               received_op(message("C3"))])
    assert results[1] == Duplicate(first, "AA", b"MSH|ack", True)
    assert [type(r) for r in (results[0], results[2])] == [int, int]
    assert [e["event"] for e in audit.events()] == ["received", "received", "duplicate",
                                                     "received"]
    assert audit.conn.execute("SELECT COUNT(*) FROM messages").fetchone() == (3,)


def test_the_same_message_twice_in_one_batch(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    results = audit.run_batch([received_op(message("C1")), received_op(message("C1"))])
    assert isinstance(results[0], int)
    assert results[1] == Duplicate(results[0], "AA", b"MSH|ack", True)
