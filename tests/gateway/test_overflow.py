"""Overflow (gateway.overflow): live reports beyond ``max_backlog`` wait in the database.

The pipeline and the overflow run on a real audit database, taking messages up at once
(no reactor); the end-to-end behaviour with ``ri-gateway serve`` is in
test_overflow_e2e.
"""

from __future__ import annotations

import sqlite3

from twisted.internet import defer
from twisted.internet.task import Clock

from gateway.audit import AuditLog, ReceivedMessage
from gateway.commit import GroupCommitter
from gateway.feed import FeedRoom, Resume
from gateway.overflow import Overflow
from gateway.pipeline import AcceptedMessage, AnalysisPipeline

from gateway_fake_engine import FakeEngine
from gateway_samples import immediate_writer
from test_feed import OrderAnalyzer
from test_pipeline import Log, _patient_text, report


def reread(raw, charset):
    text = raw.decode()
    return None, text, [report(text.split("|")[9])]


class Gateway:
    """A pipeline holding at most ``max_backlog`` reports in memory, two in the analysis
    pool (one worker), and its overflow; with ``resume``, the resume of the reports
    stored before :meth:`start`, sharing the overflow's room as in ``build_gateway``."""

    def __init__(self, tmp_path, max_backlog, resume=False, clock=None, log=None):
        self.audit = AuditLog(str(tmp_path / "a.sqlite3"))
        self.analyzer = OrderAnalyzer()
        self.pipeline = AnalysisPipeline(self.analyzer,
                                         GroupCommitter(self.audit, immediate_writer),
                                         max_backlog=max_backlog)
        room = FeedRoom(self.pipeline.max_in_flight)
        self.resume = Resume(self.audit, self.pipeline.committer, self.pipeline, reread,
                             room=room) if resume else None
        self.overflow = Overflow(self.audit, self.pipeline.committer, self.pipeline, reread,
                                 room=room, clock=clock, log=log)
        self.clock = clock
        self.pipeline.overflow = self.overflow

        def take_up(message_id):
            if self.resume is not None:
                self.resume.take_up(message_id)
            self.overflow.take_up(message_id)

        self.pipeline.take_up = take_up
        self.statuses = {}

    def store(self, cid, mrn, priority="R"):
        """A report stored and ACKed, its analysis not finished; its id."""
        return self.audit.record_received(ReceivedMessage(
            raw=_patient_text(cid, mrn, priority).encode(),
            received_at="2024-01-15T10:00:00.000Z", status="received", ack_code="AA",
            ack_payload=b"ACK", control_id=cid, sending_application="RIS",
            sending_facility="HOSP", message_type="ORU^R01"))

    def start(self):
        self.resume.startService()

    def receive(self, cid, mrn, priority="R"):
        """A live report, stored then handed over as the receiver does after its ACK."""
        text = _patient_text(cid, mrn, priority)
        message_id = self.store(cid, mrn, priority)
        message = AcceptedMessage(message_id, cid, None, text, (report(cid),))
        self.pipeline.submit(message).addBoth(
            lambda status: self.statuses.__setitem__(cid, status))

    @property
    def started(self):
        """The control ids in the order their analyses started."""
        return self.analyzer.order

    def drain(self):
        while self.analyzer.held:
            self.analyzer.release()
            if self.clock is not None:
                self.clock.advance(0)  # the overflow takes up the next on a later turn


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


def test_the_end_of_a_resume_keeps_the_places_of_the_reports_waiting_in_the_database(
        tmp_path):
    gw = Gateway(tmp_path, max_backlog=1, resume=True)
    for i in range(3):  # stored by the run before, not analysed
        gw.store(f"S{i}", f"MRN-S{i}")
    gw.start()
    gw.receive("L0", "MRN-D")  # in the backlog
    gw.receive("L1", "MRN-E")  # the backlog is full: these wait in the database
    gw.receive("L2", "MRN-F")
    assert gw.overflow.waiting == 2
    gw.analyzer.release()
    gw.analyzer.release()  # the resume has taken up all it had: it is over
    # A STAT report of L2's patient: L2, still waiting in the database, goes first.
    gw.receive("STAT", "MRN-F", priority="S")
    gw.drain()
    started = gw.started
    assert sorted(started) == sorted(["S0", "S1", "S2", "L0", "L1", "L2", "STAT"])
    assert started.index("L2") < started.index("STAT"), started
    assert gw.statuses == {cid: "analysed" for cid in ("L0", "L1", "L2", "STAT")}


def test_an_overflow_that_starts_soon_after_another_is_still_warned_about(tmp_path):
    # The warning comes at most once a minute: an overflow starting sooner after the last
    # one's went unannounced however long it lasted (and without analysis.overflow_cleared).
    clock, log = Clock(), Log()
    gw = Gateway(tmp_path, max_backlog=1, clock=clock, log=log)

    def lines(event):
        return [fields for name, fields in log.lines if name == event]

    for i in range(4):  # two in the pool, one in the backlog, one in the database
        gw.receive(f"A{i}", f"MRN-A{i}")
    assert len(lines("analysis.overflow")) == 1
    gw.drain()
    assert [c["reports"] for c in lines("analysis.overflow_cleared")] == [1]
    clock.advance(30)
    for i in range(8):
        gw.receive(f"B{i}", f"MRN-B{i}")
    clock.advance(0)  # two of the five in the database taken up, the rest wait
    assert gw.overflow.waiting == 3
    assert len(lines("analysis.overflow")) == 1  # 30 s after the last: not yet
    clock.advance(120)  # reports still wait in the database two minutes on
    gw.receive("B8", "MRN-B8")
    assert len(lines("analysis.overflow")) == 2
    gw.drain()
    assert [c["reports"] for c in lines("analysis.overflow_cleared")] == [1, 6]
    assert gw.statuses == {cid: "analysed" for cid in
                           [f"A{i}" for i in range(4)] + [f"B{i}" for i in range(9)]}


class TimedAnalyzer:
    """Two workers, each analysis taking ``delay`` seconds of ``clock``."""

    workers = 2

    def __init__(self, clock, delay):
        self.clock, self.delay = clock, delay
        self.engine = FakeEngine()
        self.finished = 0

    def analyze(self, data):
        d = defer.Deferred()

        def done():
            self.finished += 1
            d.callback(self.engine.analyze(data))

        self.clock.callLater(self.delay, done)
        return d


def test_under_a_sustained_flood_reports_waiting_in_the_database_are_analysed_at_full_speed(
        tmp_path):
    # The quiet period holds analysis back while reports arrive, until the oldest in the
    # backlog has waited max_wait. Read back from the database a few at a time, the
    # backlog held only reports handed over just now: each few waited max_wait, and
    # analysis fell to four reports per 5 s for as long as the flood lasted.
    clock = Clock()
    clock.advance(1000)
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = TimedAnalyzer(clock, 0.01)  # 400 reports a second, the flood sends 100
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                reactor=clock, clock=clock.seconds, quiet_period=0.05,
                                max_wait=5.0, max_backlog=20)
    pipeline.overflow = Overflow(audit, pipeline.committer, pipeline, reread, clock=clock)
    pipeline.take_up = pipeline.overflow.take_up
    for i in range(1000):
        cid = f"R{i}"
        text = _patient_text(cid, f"MRN{i % 50}")
        message_id = audit.record_received(ReceivedMessage(
            raw=text.encode(), received_at="2024-01-15T10:00:00.000Z", status="received",
            ack_code="AA", ack_payload=b"ACK", control_id=cid, sending_application="RIS",
            sending_facility="HOSP", message_type="ORU^R01"))
        pipeline.submit(AcceptedMessage(message_id, cid, None, text, (report(cid),)))
        for _ in range(10):
            clock.advance(0.001)
    assert pipeline.overflow.waiting < 100, pipeline.overflow.waiting
    assert analyzer.finished > 900


class FailingReads:
    """An audit log whose next ``failures`` reads of a stored message fail."""

    def __init__(self, audit, failures):
        self.audit, self.failures = audit, failures

    def stored(self, message_id):
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self.audit.stored(message_id)

    def __getattr__(self, name):
        return getattr(self.audit, name)


def test_a_failed_read_of_the_reports_waiting_in_the_database_is_tried_again(tmp_path):
    # Looked at again only when a stored report was recorded or a live one held: with
    # neither (the flood over), the reports waited for the next arrival, or a restart.
    clock = Clock()
    gw = Gateway(tmp_path, max_backlog=1, clock=clock)
    gw.overflow.audit = FailingReads(gw.audit, 1)
    for i in range(4):  # two in the pool, one in the backlog, one in the database
        gw.receive(f"R{i}", f"MRN{i}")
    clock.advance(0)  # its read fails
    assert gw.overflow.waiting == 1
    gw.drain()
    clock.advance(5)
    gw.drain()
    assert gw.statuses == {f"R{i}": "analysed" for i in range(4)}
