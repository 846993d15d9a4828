"""Resume (gateway.feed): unfinished analyses taken up at start, a few at a time.

The pipeline and the feed run on a real audit database; the end-to-end behaviour with
``ri-gateway serve`` is in test_resume_e2e.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from gateway.audit import AuditLog
from gateway.commit import GroupCommitter
from gateway.feed import Resume
from gateway.pipeline import AcceptedMessage, AnalysisPipeline

from gateway_samples import immediate_writer
from test_pipeline import HeldAnalyzer, Log, make, report, run, store


def reread(raw, charset):
    return None, raw.decode(), [report("Pneumothorax.")]


def test_resume_reanalyses_unfinished_messages(tmp_path):
    audit, pipeline = make(tmp_path)
    first = store(audit, "C1")
    store(audit, "C2")
    run(pipeline, AcceptedMessage(first, "C1", None, "", (report("normal"),)))

    def only_c2(raw, charset):
        assert b"|C2|" in raw
        return reread(raw, charset)

    Resume(audit, pipeline.committer, pipeline, only_c2).startService()
    assert audit.pending_analysis() == []
    assert [e["event"] for e in audit.events(control_id="C2")] == ["received", "resumed", "analysed"]


def test_resume_marks_unmappable_messages_failed(tmp_path):
    audit, pipeline = make(tmp_path)
    store(audit, "C1")

    def unmappable(raw, charset):
        raise ValueError("cannot map")

    Resume(audit, pipeline.committer, pipeline, unmappable).startService()
    assert audit.messages_for("C1")[0]["status"] == "failed"
    failed = audit.events(control_id="C1")[-1]
    assert (failed["event"], failed["fields"]) == (
        "analysis_failed", {"error": "ValueError", "stage": "resume"})


def resuming(tmp_path, backlog, **pipeline_options):
    """A gateway's pipeline on a reactor clock, whose analyses finish when released, with
    ``backlog`` unfinished messages (B0, B1, ...) and the resume started on them."""
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    for i in range(backlog):
        store(audit, f"B{i}")
    analyzer = HeldAnalyzer()
    clock = Clock()
    clock.advance(10)
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                reactor=clock, clock=clock.seconds, **pipeline_options)
    resume = Resume(audit, pipeline.committer, pipeline, reread, clock=clock)
    resume.startService()
    clock.advance(0)
    return audit, analyzer, clock, pipeline, resume


def release_all(analyzer, clock):
    while analyzer.held:
        analyzer.release()
        clock.advance(0)


def test_a_message_received_while_resuming_is_left_to_the_receiver(tmp_path):
    """A report received after the start is ``received`` too, and the receiver hands it to
    the pipeline: taken up as well, it would be analysed twice."""
    audit, analyzer, clock, pipeline, resume = resuming(tmp_path, 3)
    live = store(audit, "LIVE")
    pipeline.submit(AcceptedMessage(live, "LIVE", None, "", (report("Pneumothorax."),)))
    release_all(analyzer, clock)
    assert analyzer.calls == 4
    assert [e["event"] for e in audit.events(control_id="LIVE")] == ["received", "analysed"]
    assert [audit.messages_for(f"B{i}")[0]["status"] for i in range(3)] == ["analysed"] * 3
    resume.stopService()
    assert not clock.getDelayedCalls()


def test_resumed_messages_are_not_arrivals_the_quiet_period_waits_out(tmp_path):
    """Each batch taken up would otherwise wait quiet_period before its analysis starts:
    a backlog of thousands would drain a few messages per quiet period."""
    audit, analyzer, clock, _, _ = resuming(tmp_path, 3, quiet_period=1.0, max_wait=5.0)
    assert analyzer.calls == 2
    analyzer.release()
    clock.advance(0)  # the next is taken up, and analysed at once
    clock.advance(0)
    assert analyzer.calls == 3


def test_a_stopped_resume_takes_nothing_more_up(tmp_path):
    audit, analyzer, clock, _, resume = resuming(tmp_path, 4)
    resume.stopService()
    release_all(analyzer, clock)
    assert [m.control_id for m in audit.pending_analysis()] == ["B2", "B3"]
    assert [e["control_id"] for e in audit.events() if e["event"] == "resumed"] == ["B0", "B1"]



def test_a_message_taken_up_for_a_resend_is_counted_among_those_resumed(tmp_path):
    # Taken up out of turn (its sender resent it and waits), it was analysed but left out
    # of analysis.resumed's count.
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    ids = [store(audit, f"B{i}") for i in range(3)]
    analyzer = HeldAnalyzer()
    clock = Clock()
    clock.advance(10)
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                reactor=clock, clock=clock.seconds)
    log = Log()
    resume = Resume(audit, pipeline.committer, pipeline, reread, clock=clock, log=log)
    resume.startService()
    clock.advance(0)
    later = store(audit, "LATER")  # received since the start: the receiver's, not resumed
    assert analyzer.calls == 2  # the room: two per worker
    resume.take_up(ids[2])
    resume.take_up(later)
    resume.take_up(ids[2])  # handed over already
    clock.advance(0)
    # The room exceeded by the one its sender waits for, and nothing more taken up.
    assert analyzer.calls == 2 and pipeline.backlog == 1
    release_all(analyzer, clock)
    assert analyzer.calls == 3
    assert [audit.messages_for(f"B{i}")[0]["status"] for i in range(3)] == ["analysed"] * 3
    assert audit.messages_for("LATER")[0]["status"] == "received"
    assert [e["control_id"] for e in audit.events() if e["event"] == "resumed"] == [
        "B0", "B1", "B2"]
    assert ("analysis.resumed", {"messages": 3}) in log.lines


class TurnClock(Clock):
    """A reactor clock whose turns are run one at a time: a call scheduled during a turn
    runs on the next one, as on the reactor."""

    def turn(self) -> None:
        due = [call for call in self.calls if call.getTime() <= self.seconds()]
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


class OrderAnalyzer(HeldAnalyzer):
    """Held analyses that remember which report each one was (its text)."""

    def __init__(self):
        super().__init__()
        self.order = []

    def analyze(self, data):
        self.order.append(data.patients[0].patient_documents[0].content.value)
        return super().analyze(data)


def store_report(audit, control_id, mrn):
    from gateway.audit import ReceivedMessage

    return audit.record_received(ReceivedMessage(
        raw=(f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|{control_id}|P|2.5.1\r"
             f"PID|1||{mrn}^^^HOSP^MR\rOBR|1|P|F|X\r").encode(),
        received_at="2024-01-15T10:00:00.000Z", status="received", ack_code="AA",
        ack_payload=b"ack", control_id=control_id, sending_application="RIS",
        sending_facility="HOSP", message_type="ORU^R01"))


def reread_control_id(raw, charset):
    """The stored message with its control id as its report's text."""
    text = raw.decode()
    return None, text, [report(text.split("|")[9])]


def live_report(audit, control_id, mrn):
    mid = store_report(audit, control_id, mrn)
    return AcceptedMessage(mid, control_id, None, audit.stored(mid).raw.decode(),
                           (report(control_id),))


def resume_with_patients(tmp_path, stored, clock, **options):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    for control_id, mrn in stored:
        store_report(audit, control_id, mrn)
    analyzer = OrderAnalyzer()
    clock.advance(10)
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                reactor=clock, clock=clock.seconds)
    resume = Resume(audit, pipeline.committer, pipeline, reread_control_id, clock=clock,
                    **options)
    resume.startService()
    return audit, analyzer, pipeline, resume


def test_a_live_report_waits_for_a_stored_report_of_its_patient_not_taken_up_yet(tmp_path):
    # After a restart the resume takes the stored backlog up a few at a time; a live
    # correction of a patient whose report is further back in it was analysed (and sent)
    # before that report, and the EHR kept the report it corrected.
    clock = Clock()
    stored = [(f"B{i}", f"OTHER{i}") for i in range(4)] + [("REPORT", "MRN1")]
    audit, analyzer, pipeline, resume = resume_with_patients(tmp_path, stored, clock)
    clock.advance(0)
    pipeline.submit(live_report(audit, "CORRECTION", "MRN1"))
    pipeline.submit(live_report(audit, "OTHER", "MRN2"))
    release_all(analyzer, clock)
    assert analyzer.order.index("REPORT") < analyzer.order.index("CORRECTION")
    # Another patient's live report does not wait for the backlog.
    assert analyzer.order.index("OTHER") < analyzer.order.index("REPORT")
    assert audit.pending_analysis() == []


def test_the_stored_report_a_live_report_waits_for_is_taken_up_out_of_turn(tmp_path):
    # The live correction waited for its patient's stored report, and that one for its turn
    # in the whole backlog: after a long outage, hours for a STAT report.
    clock = Clock()
    stored = [(f"B{i}", f"OTHER{i}") for i in range(30)] + [("REPORT", "MRN1")]
    audit, analyzer, pipeline, resume = resume_with_patients(tmp_path, stored, clock)
    pipeline.take_up = resume.take_up  # as build_gateway wires it
    clock.advance(0)
    pipeline.submit(live_report(audit, "CORRECTION", "MRN1"))
    release_all(analyzer, clock)
    order = analyzer.order
    assert order.index("REPORT") < order.index("CORRECTION") < order.index("B29")
    assert sorted(order) == sorted([c for c, _ in stored] + ["CORRECTION"])  # each once
    assert audit.pending_analysis() == []


def test_the_stored_backlogs_patients_are_read_a_chunk_per_reactor_turn(tmp_path):
    # Thousands of stored reports read at once would hold the listener up; a live report
    # submitted meanwhile waits until all are read, then goes in its place.
    from gateway.feed import stored_patient_keys

    read = []
    keys_of = stored_patient_keys()

    def counting(raw, charset):
        read.append(raw)
        return keys_of(raw, charset)

    clock = TurnClock()
    stored = [(f"B{i}", f"MRN{i}") for i in range(25)]
    audit, analyzer, pipeline, resume = resume_with_patients(
        tmp_path, stored, clock, keys_of=counting, scan_chunk=10)
    assert len(read) == 10
    live = pipeline.submit(live_report(audit, "LIVE", "MRN24"))
    clock.turn()
    assert len(read) == 20
    clock.turn()
    assert len(read) == 25 and "LIVE" not in analyzer.order
    release_all(analyzer, clock)
    assert analyzer.order == [f"B{i}" for i in range(25)] + ["LIVE"]
    assert live.called and len(read) == 25


def test_a_stored_report_that_no_longer_reads_holds_no_live_report_up(tmp_path):
    clock = Clock()
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    store_report(audit, "BROKEN", "MRN1")
    analyzer = OrderAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                reactor=clock, clock=clock.seconds)

    def unreadable(raw, charset):
        raise ValueError("cannot decode")

    Resume(audit, pipeline.committer, pipeline, unreadable, clock=clock).startService()
    pipeline.submit(live_report(audit, "LIVE", "MRN1"))
    release_all(analyzer, clock)
    clock.advance(0)
    assert analyzer.order == ["LIVE"]
    assert audit.messages_for("BROKEN")[0]["status"] == "failed"


def test_a_stored_report_no_longer_waiting_when_reached_holds_no_live_report_up(tmp_path):
    # Its status changed after its patients were read: the resume never takes it up, and
    # gives its place up when it is over.
    from gateway.audit import status_op

    clock = Clock()
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    store_report(audit, "B1", "MRN2")
    gone = store_report(audit, "GONE", "MRN1")
    analyzer = OrderAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                reactor=clock, clock=clock.seconds, max_in_flight=1)
    Resume(audit, pipeline.committer, pipeline, reread_control_id, clock=clock,
           batch=1).startService()
    audit.run(status_op(gone, "analysed"))
    pipeline.submit(live_report(audit, "LIVE", "MRN1"))
    release_all(analyzer, clock)
    clock.advance(0)
    release_all(analyzer, clock)
    assert analyzer.order == ["B1", "LIVE"]
