"""The outbox's own operations on a real SQLite file."""

from __future__ import annotations

import sqlite3
import threading
from types import SimpleNamespace

import pytest
from twisted.internet import task

from gateway.audit import AuditLog
from gateway.config import load_settings
from gateway.metrics import Metrics
from gateway.outbox import Outbox, OutboxError
from gateway.outbox_service import build_outbound_service
from gateway.routing import PlannedMessage

CONFIG = """
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port=1"
[routes.alerts]
type = "alerts"
destinations = ["pager"]
"""


def planned(control_id: str, size: int = 100) -> list[PlannedMessage]:
    payload = f"MSH|^~\\&|RIGW|HOSP|PAGER|HOSP|20240115||ORU^R01|{control_id}|P|2.5.1\r".encode()
    return [PlannedMessage("pager", "alerts", "alerts", control_id, payload + b"Z" * size)]


@pytest.fixture
def db(tmp_path) -> str:
    path = str(tmp_path / "audit.sqlite3")
    AuditLog(path).close()
    return path


def test_a_full_disk_is_reported_as_such_not_as_a_failed_rollback(db):
    # SQLite rolls the transaction back itself when the disk is full; the outbox's own
    # ROLLBACK then failed, and the error said "cannot rollback - no transaction is
    # active" instead of what had happened.
    outbox = Outbox.open(db)
    (pages,) = outbox.conn.execute("PRAGMA page_count").fetchone()
    outbox.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(OutboxError) as info:
        outbox.enqueue(planned("BIG1", size=200_000), source_control_id="IN1")
    assert str(info.value) == "outbox database write failed: database or disk is full"
    assert not outbox.conn.in_transaction
    outbox.conn.execute(f"PRAGMA max_page_count = {pages * 100}")
    assert outbox.enqueue(planned("SMALL1"), source_control_id="IN1") == [1]


def test_an_error_in_a_transaction_rolls_it_back_and_is_raised_as_it_came(db):
    outbox = Outbox.open(db)
    (row,) = [outbox.get(i) for i in outbox.enqueue(planned("M1"), source_control_id="IN1")]
    outbox.record_delivered(row, "AA")
    with pytest.raises(OutboxError, match="already delivered") as info:
        outbox.retry(row.id)
    assert type(info.value).__name__ == "NotRequeued"
    assert not outbox.conn.in_transaction
    assert outbox.get(row.id).status == "delivered"


def test_a_metrics_scrape_does_not_wait_for_the_delivery_writer(db, tmp_path):
    # /metrics reads the outbox depth on the reactor thread. It read it on the delivery
    # writer's connection, and so waited for whatever statement the writer thread was in:
    # a write waiting for the audit writer's lock held the reactor for as long.
    (tmp_path / "gateway.toml").write_text(CONFIG)
    settings = load_settings(str(tmp_path / "gateway.toml"), {"storage.db": db}, {})
    app = SimpleNamespace(
        settings=settings,
        reactor=task.Clock(), metrics=Metrics(), pipeline=SimpleNamespace(add_hook=lambda h: None),
        committer=SimpleNamespace(on_commit=None), writer_audit=SimpleNamespace(files=None))
    service = build_outbound_service(app)
    outbox = service.outbox
    (row,) = [outbox.get(i) for i in outbox.enqueue(planned("M1"), source_control_id="IN1")]
    # Long enough that, reading on the writer's connection, the scrape below would wait for
    # the write to give up (the lock is released only after the scrape).
    outbox.conn.execute("PRAGMA busy_timeout = 30000")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the audit writer, in a transaction
    waiting = threading.Event()
    outbox.conn.set_trace_callback(lambda sql: waiting.set() if sql == "BEGIN IMMEDIATE" else None)
    outcome: list[object] = []

    def write() -> None:
        try:
            outbox.record_delivered(row, "AA")
            outcome.append("delivered")
        except OutboxError as exc:
            outcome.append(str(exc))

    writer = threading.Thread(target=write)
    writer.start()
    assert waiting.wait(timeout=60)
    scraped = app.metrics.render()  # as GET /metrics does, on the reactor thread
    holder.execute("ROLLBACK")
    writer.join()
    holder.close()
    assert outcome == ["delivered"]
    assert 'ri_gateway_outbox_depth{destination="pager"} 1' in scraped.splitlines()
    service.stopService()
