"""``ri-gateway serve`` while the audit database is in trouble: an admin's lock on it,
the file or its WAL deleted under the running gateway."""

from __future__ import annotations

import json
import sqlite3

from gateway_process import GatewayProcess, exchange, json_event
from gateway_samples import oru, segments

# Seconds to wait for what follows a lock the gateway's writer waits out (its busy
# timeout is 5 s) and its first retry (1 s): an upper bound, never a sleep.
AFTER_LOCK = 30.0


def test_an_analysis_that_found_the_database_locked_is_recorded_once_the_lock_goes(tmp_path):
    gate = tmp_path / "analyse-now"
    gateway = GatewayProcess(tmp_path / "audit.sqlite3", FAKE_ENGINE_GATE=str(gate)).start()
    try:
        assert "MSA|AA|LOCK1" in segments(exchange(gateway.port, oru("LOCK1")))
        admin = sqlite3.connect(gateway.db, isolation_level=None)
        admin.execute("BEGIN IMMEDIATE")  # an admin's sqlite3 session holding the write lock
        try:
            gate.touch()  # the analysis finishes while the lock is held
            gateway.output.wait_for(json_event("analysis.not_recorded", control_id="LOCK1"),
                                    AFTER_LOCK)
        finally:
            admin.execute("COMMIT")
            admin.close()
        # Before, the ACKed report stayed 'received' (no results, no alerts) until a restart.
        gateway.output.wait_for(json_event("analysis", control_id="LOCK1", status="analysed"),
                                AFTER_LOCK)
        # The log says why, not only that an AuditError happened.
        line = gateway.output.wait_for(json_event("analysis.not_recorded", control_id="LOCK1"))
        assert "write failed: database is locked" in json.loads(line)["reason"]
        con = sqlite3.connect(gateway.db)
        assert con.execute("SELECT status FROM messages WHERE control_id = 'LOCK1'"
                           ).fetchall() == [("analysed",)]
        con.close()
    finally:
        gateway.stop()


def _refused(gateway: GatewayProcess, control_id: str, gone: str) -> None:
    ack = segments(exchange(gateway.port, oru(control_id)))
    assert ack[1] == f"MSA|AR|{control_id}|the message could not be stored; send it again"
    assert ack[2].startswith("ERR|||207^")
    line = gateway.output.wait_for(json_event("hl7.message", control_id=control_id))
    assert json.loads(line)["reason"].startswith(f"audit database {gone} was deleted")


def test_no_aa_once_the_audit_database_file_is_deleted_under_the_gateway(tmp_path):
    gateway = GatewayProcess(tmp_path / "audit.sqlite3").start()
    try:
        assert "MSA|AA|KEPT1" in segments(exchange(gateway.port, oru("KEPT1")))
        gateway.db.unlink()
        # SQLite goes on writing the deleted file: an AA would be for a message that no
        # restart finds. Every message is refused until the gateway is restarted.
        _refused(gateway, "GONE1", str(gateway.db))
        _refused(gateway, "GONE2", str(gateway.db))
    finally:
        gateway.stop()


def test_no_aa_once_the_wal_is_deleted_under_the_gateway(tmp_path):
    gateway = GatewayProcess(tmp_path / "audit.sqlite3").start()
    try:
        assert "MSA|AA|KEPT1" in segments(exchange(gateway.port, oru("KEPT1")))
        wal = tmp_path / "audit.sqlite3-wal"
        wal.unlink()
        _refused(gateway, "NOWAL1", str(wal))
    finally:
        gateway.stop()
