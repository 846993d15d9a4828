"""``ri-gateway serve`` fed faster than it analyses, beyond ``[analysis] max_backlog``.

A real gateway process on loopback (fake engine, one worker thread, each analysis slowed
down) gets a flood of reports on one connection: each is ACKed once stored, and those
beyond the backlog's bound wait in the database only (gateway.overflow). What it did is
read back from the audit events, in the order they were committed.
"""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest

from gateway_process import WAIT, GatewayProcess, json_event
from gateway_samples import frame, oru, segments
from test_resume_e2e import query, statuses, wait_until


def flood(port: int, count: int, patients: int) -> list[str]:
    """``count`` reports sent one after the other on one connection, each once the last
    is ACKed (AA checked); report ``i`` is of patient ``MRN-{i % patients}``."""
    sent = []
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        pending = b""
        for i in range(count):
            cid = f"F{i:05d}"
            sock.sendall(frame(oru(cid).replace(b"MRN12345", f"MRN-{i % patients}".encode())))
            while b"\x1c\x0d" not in pending:
                chunk = sock.recv(65536)
                assert chunk, "connection closed"
                pending += chunk
            ack, _, pending = pending.partition(b"\x1c\x0d")
            assert segments(ack[1:])[1].startswith(f"MSA|AA|{cid}"), ack
            sent.append(cid)
    return sent


def assert_analysed_once_in_patient_order(db, sent: list[str], patients: int) -> None:
    order = [cid for (cid,) in query(
        db, "SELECT control_id FROM events WHERE event = 'analysed' ORDER BY id")]
    assert Counter(order) == Counter(sent)  # each once
    for patient in range(patients):  # and each patient's reports in the order they came
        theirs = [cid for i, cid in enumerate(sent) if i % patients == patient]
        assert [cid for cid in order if cid in theirs] == theirs


def flooded(db, count: int, patients: int, *, delay: str, max_backlog: int,
            map_before_ack: str = "check"):
    """A gateway (each analysis taking ``delay`` seconds) sent a :func:`flood` of ``count``
    reports, once it has said that some wait in the database; (gateway, sent)."""
    gateway = GatewayProcess(db, FAKE_ENGINE_DELAY=delay,
                             RI_GATEWAY_ANALYSIS_MAX_BACKLOG=str(max_backlog),
                             RI_GATEWAY_ANALYSIS_QUIET_PERIOD="0",
                             RI_GATEWAY_MLLP_MAP_BEFORE_ACK=map_before_ack).start()
    try:
        sent = flood(gateway.port, count, patients)
        gateway.output.wait_for(json_event("analysis.overflow", max_backlog=max_backlog))
    except BaseException:
        gateway.stop()
        raise
    return gateway, sent


@pytest.mark.parametrize("map_before_ack", ["check", "none", "full"])
def test_a_flood_beyond_the_backlog_is_analysed_each_report_once_in_its_patients_order(
        tmp_path, map_before_ack):
    # Read back from the database, a report is decoded (and mapped) as the receiver would.
    db = tmp_path / "audit.sqlite3"
    gateway, sent = flooded(db, 150, 4, delay="0.01", max_backlog=10,
                            map_before_ack=map_before_ack)
    try:
        wait_until("the flood analysed", lambda: statuses(db)["analysed"] == 150)
        gateway.output.wait_for(json_event("analysis.overflow_cleared"))
    finally:
        assert gateway.stop() == 0
    assert_analysed_once_in_patient_order(db, sent, 4)


def test_reports_waiting_in_the_database_at_a_stop_are_analysed_at_the_next_start(tmp_path):
    db = tmp_path / "audit.sqlite3"
    first, sent = flooded(db, 40, 3, delay="0.2", max_backlog=5)
    assert first.stop() == 0
    # The stop says how many it leaves waiting in the database for the next start.
    stopped = json.loads(first.output.wait_for(json_event("analysis.stopped")))
    assert stopped["waiting_in_database"] > 0
    assert statuses(db)["received"] > 5  # more than the backlog held: some waited on disk
    second = GatewayProcess(db).start()
    try:
        wait_until("the rest analysed", lambda: statuses(db)["analysed"] == 40)
    finally:
        assert second.stop() == 0
    assert_analysed_once_in_patient_order(db, sent, 3)
