"""``ri-gateway serve`` started on an audit database holding a backlog of unfinished analyses.

The backlog is written to a real audit database as the receiver stores accepted messages
(status ``received``, as a crash leaves them); the gateway is a real process on loopback
with the fake engine, one worker thread (so at most 2 analyses in the pipeline at once).
What the gateway did is read back from the audit events, in the order they were committed.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

from gateway.audit import AuditLog, ReceivedMessage, received_op

from gateway_process import WAIT, GatewayProcess, exchange, json_event
from gateway_samples import oru, segments

IN_FLIGHT = 2  # the pipeline's max_in_flight with one worker (two per worker)


def backlog(db, count: int, patient=lambda i: b"MRN12345") -> list[str]:
    """``count`` accepted messages whose analysis never finished, oldest first; message
    ``i`` of patient (PID-3.1) ``patient(i)``."""
    control_ids = [f"B{i:05d}" for i in range(count)]
    audit = AuditLog(str(db))
    try:
        audit.run_batch([received_op(ReceivedMessage(
            raw=oru(cid).replace(b"MRN12345", patient(i)),
            received_at="2024-01-15T10:00:00.000Z", status="received",
            ack_code="AA", ack_payload=b"ACK", control_id=cid, sending_application="RIS",
            sending_facility="HOSP", message_type="ORU^R01", version="2.5.1",
            processing_id="P")) for i, cid in enumerate(control_ids)])
    finally:
        audit.close()
    return control_ids


def query(db, sql: str, *params) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def statuses(db) -> Counter:
    return Counter(dict(query(db, "SELECT status, count(*) FROM messages GROUP BY status")))


def wait_until(what: str, check):
    """``check()`` once it is true (polled), or AssertionError after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        time.sleep(0.05)
    return value


def steps(db) -> list[tuple[str, str]]:
    """(event, control_id) of every resumed message's taking up and outcome, in commit order."""
    return query(db, "SELECT event, control_id FROM events WHERE event IN "
                     "('resumed', 'analysed', 'analysis_failed', 'skipped') ORDER BY id")


def most_in_flight(events: list[tuple[str, str]], control_ids: set[str]) -> int:
    """The most messages taken up and not yet recorded at any point of the event order."""
    in_flight = most = 0
    for event, control_id in events:
        if control_id in control_ids:
            in_flight += 1 if event == "resumed" else -1
            most = max(most, in_flight)
    return most


def test_a_large_backlog_is_resumed_a_few_at_a_time_oldest_first_each_once(tmp_path):
    db = tmp_path / "audit.sqlite3"
    waiting = backlog(db, 1500)
    gateway = GatewayProcess(db).start()
    try:
        wait_until("the backlog analysed", lambda: statuses(db)["analysed"] == 1500)
        # Logged once the last one is recorded, by the look for more on the next reactor
        # turn: stopped before that turn (a loaded machine), the gateway never logged it.
        gateway.output.wait_for(json_event("analysis.resumed", messages=1500))
    finally:
        assert gateway.stop() == 0
    events = steps(db)
    resumed = [cid for event, cid in events if event == "resumed"]
    assert resumed == waiting  # each once, oldest first
    assert Counter(cid for event, cid in events if event == "analysed") == Counter(waiting)
    # Taken up as places in the pipeline free up, never the whole backlog at once (it was
    # read, held and queued in one go: 1500 in flight).
    assert most_in_flight(events, set(waiting)) <= IN_FLIGHT
    # The log says how big the backlog was when it starts and when all of it is taken up.
    gateway.output.wait_for(json_event("analysis.resuming", messages=1500), timeout=0)


def test_a_report_arriving_meanwhile_waits_behind_a_few_not_the_whole_backlog(tmp_path):
    db = tmp_path / "audit.sqlite3"
    waiting = set(backlog(db, 400))
    # The ACK waits for the analysis: behind the whole backlog it took 400 analyses.
    gateway = GatewayProcess(db, FAKE_ENGINE_DELAY="0.02",
                             RI_GATEWAY_ANALYSIS_ACK_AFTER="analysis").start()
    try:
        # Another patient's: a report of a patient in the backlog waits for its reports.
        ack = exchange(gateway.port, oru("LIVE0001").replace(b"MRN12345", b"MRN99999"))
        assert segments(ack)[1].startswith("MSA|AA|LIVE0001"), ack
        assert statuses(db)["received"] > 0  # answered while the backlog still drains
        wait_until("the backlog analysed", lambda: statuses(db)["analysed"] == 401)
    finally:
        assert gateway.stop() == 0
    events = [(e, c) for e, c in query(
        db, "SELECT event, control_id FROM events WHERE event IN ('received', 'analysed') "
            "ORDER BY id")]
    arrived = events.index(("received", "LIVE0001"))
    analysed = events.index(("analysed", "LIVE0001"))
    ahead = [c for e, c in events[arrived:analysed] if e == "analysed" and c in waiting]
    # Those in the pipeline when it arrived, and at most as many taken up while its commit
    # was being answered: a few, where it waited behind every one of the 400.
    assert len(ahead) <= 2 * IN_FLIGHT, ahead


def test_a_live_report_of_a_patient_in_the_backlog_is_analysed_after_its_stored_one(tmp_path):
    # The resume takes the backlog up a few at a time: a live correction of the patient of
    # the last stored report was analysed, and its result sent, before that report.
    db = tmp_path / "audit.sqlite3"
    backlog(db, 60, lambda i: b"MRN-LAST" if i == 59 else f"MRN{i}".encode())
    gateway = GatewayProcess(db, FAKE_ENGINE_DELAY="0.01",
                             RI_GATEWAY_ANALYSIS_ACK_AFTER="analysis").start()
    try:
        ack = exchange(gateway.port, oru("LIVE0001").replace(b"MRN12345", b"MRN-LAST"))
        assert segments(ack)[1].startswith("MSA|AA|LIVE0001"), ack
        wait_until("the backlog analysed", lambda: statuses(db)["analysed"] == 61)
    finally:
        assert gateway.stop() == 0
    analysed = [c for e, c in steps(db) if e == "analysed"]
    assert analysed.index("B00059") < analysed.index("LIVE0001"), analysed


def test_a_stop_while_resuming_leaves_the_rest_to_the_next_start(tmp_path):
    db = tmp_path / "audit.sqlite3"
    waiting = backlog(db, 300)
    first = GatewayProcess(db, FAKE_ENGINE_DELAY="0.02").start()
    try:
        wait_until("some of the backlog analysed", lambda: statuses(db)["analysed"] >= 10)
    finally:
        assert first.stop() == 0
    analysed = {cid for (cid,) in query(
        db, "SELECT control_id FROM messages WHERE status = 'analysed'")}
    taken_up = {cid for (cid,) in query(
        db, "SELECT control_id FROM events WHERE event = 'resumed'")}
    assert 10 <= len(analysed) < len(waiting)
    # What was not taken up before the stop was never read: only the few in flight.
    assert analysed <= taken_up and len(taken_up - analysed) <= IN_FLIGHT
    assert set(waiting) - taken_up

    before = len(steps(db))
    second = GatewayProcess(db).start()
    try:
        wait_until("the rest analysed", lambda: statuses(db)["analysed"] == len(waiting))
    finally:
        assert second.stop() == 0
    events = steps(db)
    assert Counter(cid for event, cid in events if event == "analysed") == Counter(waiting)
    resumed = Counter(cid for event, cid in events if event == "resumed")
    # Taken up again only where the first life stopped before recording the analysis.
    assert set(resumed) == set(waiting)
    assert {cid for cid, n in resumed.items() if n > 1} <= taken_up - analysed
    # The second life takes up exactly what the first did not finish, oldest first.
    again = [cid for event, cid in events[before:] if event == "resumed"]
    assert again == [cid for cid in waiting if cid not in analysed]
