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
