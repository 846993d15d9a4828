"""``ri-gateway serve`` started with both a resume backlog and a replay waiting: the two
feeds share the pipeline's places (``max_in_flight``, two with one worker thread), where
each used to keep that many in it, so a live report waited behind twice as many."""

from __future__ import annotations

from collections import Counter

from gateway.audit import AuditLog, ReceivedMessage, received_op
from gateway.replay import request_replay

from gateway_process import GatewayProcess
from gateway_samples import oru
from test_resume_e2e import IN_FLIGHT, query, statuses, wait_until


def stored(db, prefix: str, count: int, status: str) -> list[str]:
    control_ids = [f"{prefix}{i:04d}" for i in range(count)]
    audit = AuditLog(str(db))
    try:
        audit.run_batch([received_op(ReceivedMessage(
            raw=oru(cid), received_at="2024-01-15T10:00:00.000Z", status=status,
            ack_code="AA", ack_payload=b"ACK", control_id=cid, sending_application="RIS",
            sending_facility="HOSP", message_type="ORU^R01", version="2.5.1",
            processing_id="P")) for cid in control_ids])
        if status == "analysed":
            assert all(r.requested for r in request_replay(audit, control_ids=control_ids))
    finally:
        audit.close()
    return control_ids


def test_resume_and_replay_together_keep_at_most_max_in_flight_in_the_pipeline(tmp_path):
    db = tmp_path / "audit.sqlite3"
    resumed = stored(db, "R", 30, "received")
    replayed = stored(db, "P", 30, "analysed")
    gateway = GatewayProcess(db, FAKE_ENGINE_DELAY="0.02").start()
    try:
        wait_until("both analysed", lambda: statuses(db)["analysed"] == 60)
    finally:
        assert gateway.stop() == 0
    events = query(db, "SELECT event, control_id FROM events WHERE event IN "
                       "('resumed', 'replayed', 'analysed') ORDER BY id")
    taken = Counter(event for event, _ in events if event != "analysed")
    assert taken == {"resumed": 30, "replayed": 30}
    in_flight = most = 0
    for event, control_id in events:
        if control_id in resumed or control_id in replayed:
            in_flight += -1 if event == "analysed" else 1
            most = max(most, in_flight)
    assert most <= IN_FLIGHT
