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


def _health(port: int) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_health_fails_while_messages_cannot_be_stored(tmp_path):
    # The health probe's own write is small: on a full disk it still fit where a message did
    # not, and /health said "pass" while every sender was answered AR. Here a lock makes
    # the message's write fail; the probe's write, after the lock, succeeds.
    gateway = GatewayProcess(tmp_path / "audit.sqlite3", RI_GATEWAY_HTTP_ENABLED="true",
                             RI_GATEWAY_HTTP_ENDPOINT="tcp:0:interface=127.0.0.1").start()
    try:
        http_port = gateway.http_port()
        gateway.output.wait_for(json_event("analysis.ready"))
        assert _health(http_port)[0] == 200
        admin = sqlite3.connect(gateway.db, isolation_level=None)
        admin.execute("BEGIN IMMEDIATE")
        try:
            ack = segments(exchange(gateway.port, oru("LOCKED1")))
            assert ack[1].startswith("MSA|AR|LOCKED1")
        finally:
            admin.execute("COMMIT")
            admin.close()
        status, body = _health(http_port)
        assert (status, body["checks"]["database"], body["checks"]["message_store"]) == (
            503, "pass", "fail")
        # The next message stored clears it.
        assert "MSA|AA|AFTER1" in segments(exchange(gateway.port, oru("AFTER1")))
        assert _health(http_port)[0] == 200
    finally:
        gateway.stop()
