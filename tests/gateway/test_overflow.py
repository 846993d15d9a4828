"""Overflow (gateway.overflow): live reports beyond ``max_backlog`` wait in the database.

The pipeline and the overflow run on a real audit database, taking messages up at once
(no reactor); the end-to-end behaviour with ``ri-gateway serve`` is in
test_overflow_e2e.
"""

from __future__ import annotations

from gateway.audit import AuditLog, ReceivedMessage
from gateway.commit import GroupCommitter
from gateway.overflow import Overflow
from gateway.pipeline import AcceptedMessage, AnalysisPipeline

from gateway_samples import immediate_writer
from test_pipeline import HeldAnalyzer, _patient_text, report


def reread(raw, charset):
    text = raw.decode()
    return None, text, [report(text.split("|")[9])]


class StartOrder(HeldAnalyzer):
    """Analyses finish when released; ``started`` lists the control ids in the order their
    analyses started."""

    def __init__(self):
        super().__init__()
        self.started = []

    def analyze(self, data):
        self.started.append(data.patients[0].patient_documents[0].content.value)
        return super().analyze(data)


class Gateway:
    """A pipeline holding at most ``max_backlog`` reports in memory, two in the analysis
    pool (one worker), and its overflow."""

    def __init__(self, tmp_path, max_backlog):
        self.audit = AuditLog(str(tmp_path / "a.sqlite3"))
        self.analyzer = StartOrder()
        self.pipeline = AnalysisPipeline(self.analyzer,
                                         GroupCommitter(self.audit, immediate_writer),
                                         max_backlog=max_backlog)
        self.overflow = Overflow(self.audit, self.pipeline.committer, self.pipeline, reread)
        self.pipeline.overflow = self.overflow
        self.pipeline.take_up = self.overflow.take_up
        self.statuses = {}

    def receive(self, cid, mrn, priority="R"):
        """A live report, stored then handed over as the receiver does after its ACK."""
        text = _patient_text(cid, mrn, priority)
        message_id = self.audit.record_received(ReceivedMessage(
            raw=text.encode(), received_at="2024-01-15T10:00:00.000Z", status="received",
            ack_code="AA", ack_payload=b"ACK", control_id=cid, sending_application="RIS",
            sending_facility="HOSP", message_type="ORU^R01"))
        message = AcceptedMessage(message_id, cid, None, text, (report(cid),))
        self.pipeline.submit(message).addBoth(
            lambda status: self.statuses.__setitem__(cid, status))

    @property
    def started(self):
        return self.analyzer.started

    def drain(self):
        while self.analyzer.held:
            self.analyzer.release()


def test_reports_beyond_the_backlog_wait_in_the_database_and_keep_their_order(tmp_path):
    gw = Gateway(tmp_path, max_backlog=3)
    sent = [f"R{i}" for i in range(12)]
    for i, cid in enumerate(sent):
        gw.receive(cid, f"MRN{i % 4}")
    # Two in the pool, three in the backlog, and a place for two more that the overflow
    # took up (the room it shares with the resume): the rest wait in the database only.
    assert (gw.pipeline.in_progress, gw.pipeline.backlog, gw.overflow.waiting) == (2, 5, 5)
    gw.drain()
    assert gw.started == sent
    assert gw.statuses == {cid: "analysed" for cid in sent}
    assert gw.overflow.waiting == 0 and gw.pipeline.backlog == 0
    assert [m.control_id for m in gw.audit.pending_analysis()] == []


def test_a_stat_report_goes_ahead_taking_its_patients_waiting_report_along(tmp_path):
    gw = Gateway(tmp_path, max_backlog=2)
    for i in range(9):
        gw.receive(f"R{i}", f"MRN{i}")
    assert gw.overflow.waiting > 0 and "R8" not in gw.started
    gw.receive("STAT", "MRN8", priority="S")  # R8, of its patient, waits in the database
    gw.drain()
    started = gw.started
    assert sorted(started) == sorted([f"R{i}" for i in range(9)] + ["STAT"])
    # The STAT report waits for its patient's earlier report, for nothing else routine.
    assert started.index("R8") < started.index("STAT"), started
    assert started.index("STAT") < min(started.index(f"R{i}") for i in range(3, 8)), started


def test_a_report_no_longer_waiting_does_not_hold_up_its_patients_next(tmp_path):
    gw = Gateway(tmp_path, max_backlog=1)
    for i in range(8):
        gw.receive(f"R{i}", "MRN1" if i in (6, 7) else f"MRN{i}")
    assert gw.overflow.waiting == 3  # R5, R6, R7
    # An admin's replay takes R6 over while it waits (status "replay"): the overflow lets
    # it go, and R7, of the same patient, is analysed all the same.
    gw.audit.conn.execute("UPDATE messages SET status = 'replay' WHERE control_id = 'R6'")
    gw.audit.conn.commit()
    gw.drain()
    assert "R6" not in gw.started and "R7" in gw.started
    assert gw.statuses["R6"] == "replay" and gw.statuses["R7"] == "analysed"


def test_without_a_bound_every_report_waits_in_memory(tmp_path):
    gw = Gateway(tmp_path, max_backlog=0)
    for i in range(8):
        gw.receive(f"R{i}", f"MRN{i}")
    assert (gw.pipeline.backlog, gw.overflow.waiting) == (6, 0)
    gw.drain()
    assert gw.started == [f"R{i}" for i in range(8)]
