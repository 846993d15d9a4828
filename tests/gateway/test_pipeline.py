"""AnalysisPipeline: results, statuses, events and hooks committed together."""

from __future__ import annotations

from twisted.internet import defer

from gateway.audit import AuditLog, ReceivedMessage, event_op
from gateway.commit import GroupCommitter
from gateway.inputs import TextMetadata, text_request
from gateway.pipeline import AcceptedMessage, AnalysisPipeline
from ri_engine.errors import AnalysisFailure

from gateway_fake_engine import FakeEngine
from gateway_samples import FakeReport, immediate_writer


class SyncAnalyzer:
    def __init__(self):
        self.engine = FakeEngine()
        self.calls = 0

    def analyze(self, data):
        self.calls += 1
        try:
            return defer.succeed(self.engine.analyze(data))
        except Exception as exc:  # noqa: BLE001
            return defer.fail(AnalysisFailure(str(exc)))


def store(audit, control_id="C1"):
    return audit.record_received(ReceivedMessage(
        raw=b"MSH|^~\\&|RIS|HOSP|||||ORU^R01|" + control_id.encode() + b"|P|2.5",
        received_at="2024-01-15T10:00:00.000Z", status="received", ack_code="AA",
        ack_payload=b"ack", control_id=control_id, sending_application="RIS",
        sending_facility="HOSP", message_type="ORU^R01"))


def report(text, index=1, analyse=True, reason=None):
    return FakeReport(request=text_request(text, TextMetadata()), obr_index=index,
                      accession=f"ACC{index}", analyse=analyse, skip_reason=reason)


def make(tmp_path, hooks=()):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pipeline = AnalysisPipeline(SyncAnalyzer(), GroupCommitter(audit, immediate_writer),
                                hooks=hooks)
    return audit, pipeline


def run(pipeline, message):
    results = []
    pipeline.submit(message).addBoth(results.append)
    return results[0]


def test_inferences_status_events_and_hook_in_one_transaction(tmp_path):
    seen = []

    def hook(message, outcomes):
        seen.append([o.inferences for o in outcomes])
        return [event_op("outbound_planned", message.control_id, message.message_id, count=1)]

    audit, pipeline = make(tmp_path, hooks=[hook])
    mid = store(audit)
    message = AcceptedMessage(mid, "C1", None, "", (
        report("Large pneumothorax."), report("cancelled", 2, analyse=False, reason="cancelled")))
    assert run(pipeline, message) == "analysed"
    assert audit.inferences_for(mid) == [{
        "obr_index": 1, "accession": "ACC1", "kind": "criticalResult",
        "inference": {"kind": "criticalResult", "result": {"description": "PNEUMOTHORAX"}}}]
    events = [(e["event"], e["fields"].get("inferences")) for e in audit.events(control_id="C1")]
    assert events == [("received", None), ("analysed", 1), ("outbound_planned", None)]
    assert audit.messages_for("C1")[0]["status"] == "analysed"
    assert audit.pending_analysis() == []
    assert len(seen) == 1


def test_nothing_to_analyse_is_skipped(tmp_path):
    audit, pipeline = make(tmp_path)
    mid = store(audit)
    message = AcceptedMessage(mid, "C1", None, "", (report("x", analyse=False, reason="cancelled"),))
    assert run(pipeline, message) == "skipped"
    skipped = audit.events(control_id="C1")[-1]
    assert (skipped["event"], skipped["fields"]) == ("skipped", {"reasons": ["cancelled"]})


def test_engine_failure_marks_failed(tmp_path):
    audit, pipeline = make(tmp_path)
    mid = store(audit)
    assert run(pipeline, AcceptedMessage(mid, "C1", None, "", (report("CRASH"),))) == "failed"
    failed = audit.events(control_id="C1")[-1]
    assert (failed["event"], failed["fields"]["error"]) == ("analysis_failed", "AnalysisFailure")


def test_a_failing_hook_rolls_back_the_results(tmp_path):
    def hook(message, outcomes):
        def op(conn):
            raise RuntimeError("outbox broken")
        return [op]

    audit, pipeline = make(tmp_path, hooks=[hook])
    mid = store(audit)
    result = run(pipeline, AcceptedMessage(mid, "C1", None, "", (report("pneumothorax"),)))
    assert result is None
    # Neither inferences nor status were recorded: the message is resumed next start.
    assert audit.inferences_for(mid) == []
    assert [m.id for m in audit.pending_analysis()] == [mid]


def test_mapping_after_the_ack(tmp_path):
    from mappings.errors import ContentError

    class Mapping(SyncAnalyzer):
        def map_message(self, text, config):
            if "bad" in text:
                return defer.fail(ContentError("OBR segment is missing", err_code="100",
                                               location="OBR"))
            return defer.succeed([report("Pneumothorax.")])

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pipeline = AnalysisPipeline(Mapping(), GroupCommitter(audit, immediate_writer))
    good, bad = store(audit, "G1"), store(audit, "B1")
    assert run(pipeline, AcceptedMessage(good, "G1", None, "good", None)) == "analysed"
    assert run(pipeline, AcceptedMessage(bad, "B1", None, "bad", None)) == "failed"
    event = audit.events(control_id="B1")[-1]
    assert (event["event"], event["fields"]) == ("content_error", {
        "error_code": "100", "location": "OBR", "error": "OBR segment is missing"})
    assert len(audit.inferences_for(good)) == 1


class HeldAnalyzer(SyncAnalyzer):
    """Analyses finish only when the test releases them."""

    workers = 1

    def __init__(self):
        super().__init__()
        self.held = []

    def analyze(self, data):
        self.calls += 1
        d = defer.Deferred()
        self.held.append((d, data))
        return d

    def release(self):
        d, data = self.held.pop(0)
        d.callback(self.engine.analyze(data))


def test_at_most_max_in_flight_analyses_the_rest_wait_in_order(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer))
    done = []
    for cid in ("C1", "C2", "C3"):
        message = AcceptedMessage(store(audit, cid), cid, None, "text", (report(cid),))
        pipeline.submit(message).addCallback(lambda status, c=cid: done.append((c, status)))
    # Two per worker in the pool; the third waits without touching the analyzer.
    assert (analyzer.calls, pipeline.backlog, pipeline.in_progress) == (2, 1, 2)
    analyzer.release()
    assert (analyzer.calls, pipeline.backlog, done) == (3, 0, [("C1", "analysed")])
    analyzer.release()
    analyzer.release()
    assert done == [("C1", "analysed"), ("C2", "analysed"), ("C3", "analysed")]


def test_with_a_reactor_analysis_starts_on_a_later_turn(tmp_path):
    from twisted.internet.task import Clock

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    clock = Clock()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer), reactor=clock)
    pipeline.submit(AcceptedMessage(store(audit), "C1", None, "text", (report("x"),)))
    # The ACK of this commit is written first.
    assert (analyzer.calls, pipeline.backlog) == (0, 1)
    clock.advance(0)
    assert (analyzer.calls, pipeline.backlog) == (1, 0)


def test_text_read_as_sent_is_split_into_segments_before_mapping(tmp_path):
    seen = []

    class Mapping(SyncAnalyzer):
        def map_message(self, text, config):
            seen.append(text)
            return defer.succeed([report("No pneumothorax.")])

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pipeline = AnalysisPipeline(Mapping(), GroupCommitter(audit, immediate_writer))
    sent = "MSH|^~\\&|RIS|HOSP|||||ORU^R01|C1|P|2.5\r\nPID|1||MRN1\nOBR|1\r\n"
    assert run(pipeline, AcceptedMessage(store(audit), "C1", None, sent, None,
                                         normalised=False)) == "analysed"
    assert seen == ["MSH|^~\\&|RIS|HOSP|||||ORU^R01|C1|P|2.5\rPID|1||MRN1\rOBR|1"]


def test_content_error_after_the_ack_reaches_the_hooks(tmp_path):
    from mappings.errors import ContentError

    error = ContentError("OBR segment is missing", err_code="100", location="OBR")
    seen = []

    class Mapping(SyncAnalyzer):
        def map_message(self, text, config):
            return defer.fail(error)

    def hook(message, outcomes):
        seen.append([(o.report, o.error) for o in outcomes])
        return [event_op("hooked", message.control_id, message.message_id)]

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pipeline = AnalysisPipeline(Mapping(), GroupCommitter(audit, immediate_writer), hooks=[hook])
    assert run(pipeline, AcceptedMessage(store(audit), "C1", None, "MSH|x", None)) == "failed"
    assert seen == [[(None, error)]]
    assert [e["event"] for e in audit.events(control_id="C1")] == [
        "received", "content_error", "hooked"]


def test_analysis_waits_while_messages_keep_arriving_at_most_max_wait(tmp_path):
    from twisted.internet.task import Clock

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    clock = Clock()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer), reactor=clock,
                                clock=clock.seconds, quiet_period=0.05, max_wait=0.2)

    def arrive(cid):
        pipeline.submit(AcceptedMessage(store(audit, cid), cid, None, "text", (report(cid),)))

    arrive("Q1")
    clock.advance(0.04)
    assert analyzer.calls == 0  # the listener is busy
    clock.advance(0.01)
    assert analyzer.calls == 1  # quiet for quiet_period
    for i in range(25):  # a burst: one message every 10 ms
        arrive(f"B{i}")
        clock.advance(0.01)
        if i == 18:
            assert analyzer.calls == 1
    # B0 has waited max_wait: analysis runs beside the listener again.
    assert analyzer.calls == 2


class MapAndAnalyze(SyncAnalyzer):
    """The pool's one-call path, run synchronously with the worker's own function."""

    def __init__(self):
        super().__init__()
        self.calls_with = []

    def map_and_analyze(self, text, mapping_config=None, configuration=None, *, with_result=True):
        from gateway.analysis import _map_and_run, _outcome, _report_outcomes

        self.calls_with.append(with_result)
        try:
            return defer.succeed(_report_outcomes(_outcome(
                _map_and_run(self.engine, text, mapping_config, configuration, with_result))))
        except Exception as exc:  # noqa: BLE001 - as the pool delivers it
            return defer.fail(exc)


def two_group_oru(control_id):
    from gateway_samples import oru

    text = oru(control_id, report="Large pneumothorax.").decode().rstrip("\r")
    return text + ("\rOBR|2|PLC2|FIL2|71250^CT CHEST^CPT||20240115093000|20240115094500"
                   "|||||||||||ACC2||||20240115101000|||P\rOBX|1|TX|18782-3^Obs^LN||Prelim.||||||P")


def test_mapped_and_analysed_in_one_call_without_hooks(tmp_path):
    from gateway.analysis import ReportInfo

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = MapAndAnalyze()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer))
    mid = store(audit, "O1")
    assert run(pipeline, AcceptedMessage(mid, "O1", None, two_group_oru("O1"), None)) == "analysed"
    assert (analyzer.calls_with, analyzer.calls) == ([False], 0)  # one call, no analyze()
    assert [(e["event"], e["fields"].get("obr_index")) for e in audit.events(control_id="O1")
            if e["event"] in ("analysed", "skipped")] == [("analysed", 1)]
    assert [i["kind"] for i in audit.inferences_for(mid)] == ["criticalResult"]
    assert audit.messages_for("O1")[0]["reports"] == 2


def test_hooks_get_the_mapped_reports_and_results_from_the_one_call(tmp_path):
    seen = []

    def hook(message, outcomes):
        seen.append([(o.report.obr_index, o.report.document_text, o.result is not None,
                      o.error) for o in outcomes])
        return []

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = MapAndAnalyze()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer), hooks=[hook])
    mid = store(audit, "O2")
    assert run(pipeline, AcceptedMessage(mid, "O2", None, two_group_oru("O2"), None)) == "analysed"
    assert analyzer.calls_with == [True]
    assert seen == [[(1, "FINDINGS:\nLarge pneumothorax.", True, None),
                     (2, "FINDINGS:\nPrelim.", False, None)]]


def test_content_error_from_the_one_call_is_recorded(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pipeline = AnalysisPipeline(MapAndAnalyze(), GroupCommitter(audit, immediate_writer))
    text = "\r".join(s for s in two_group_oru("O3").split("\r") if not s.startswith("PID"))
    assert run(pipeline, AcceptedMessage(store(audit, "O3"), "O3", None, text, None)) == "failed"
    event = audit.events(control_id="O3")[-1]
    assert (event["event"], event["fields"]["error_code"], event["fields"]["location"]) == (
        "content_error", "100", "PID")


def test_a_mapping_bug_after_the_ack_is_recorded_as_failed(tmp_path):
    from gateway.analysis import MappingFailure

    seen = []

    class Buggy(SyncAnalyzer):
        def map_and_analyze(self, text, mapping_config=None, configuration=None, *,
                            with_result=True):
            return defer.fail(MappingFailure("mapping failed: KeyError", code="InternalError"))

    def hook(message, outcomes):
        seen.append([(o.report, type(o.error).__name__) for o in outcomes])
        return []

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pipeline = AnalysisPipeline(Buggy(), GroupCommitter(audit, immediate_writer), hooks=[hook])
    assert run(pipeline, AcceptedMessage(store(audit, "K1"), "K1", None, "text", None)) == "failed"
    event = audit.events(control_id="K1")[-1]
    assert (event["event"], event["fields"]) == (
        "analysis_failed", {"stage": "mapping", "error": "mapping failed: KeyError"})
    assert audit.messages_for("K1")[0]["status"] == "failed"
    assert seen == [[(None, "MappingFailure")]]


def test_a_worker_that_died_leaves_the_message_to_the_next_start(tmp_path):
    class Dead(SyncAnalyzer):
        def map_and_analyze(self, text, mapping_config=None, configuration=None, *,
                            with_result=True):
            return defer.fail(AnalysisFailure("analysis worker failed: BrokenProcessPool"))

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pipeline = AnalysisPipeline(Dead(), GroupCommitter(audit, immediate_writer))
    assert run(pipeline, AcceptedMessage(store(audit, "D1"), "D1", None, "text", None)) is None
    assert audit.messages_for("D1")[0]["status"] == "received"


def test_stopped_pipeline_starts_nothing_more_and_leaves_the_backlog_received(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer))
    for cid in ("S1", "S2", "S3"):
        pipeline.submit(AcceptedMessage(store(audit, cid), cid, None, "text", (report(cid),)))
    pipeline.stop()
    analyzer.release()  # an analysis in flight still completes and is recorded
    assert (analyzer.calls, pipeline.backlog) == (2, 1)
    assert [audit.messages_for(c)[0]["status"] for c in ("S1", "S2", "S3")] == [
        "analysed", "received", "received"]


def _quiet_pipeline(tmp_path):
    """A pipeline on a reactor clock with a quiet period of 1 s (max_wait 5 s)."""
    from twisted.internet.task import Clock

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    clock = Clock()
    clock.advance(10)
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer), reactor=clock,
                                clock=clock.seconds, quiet_period=1.0, max_wait=5.0)
    return audit, analyzer, clock, pipeline


def test_a_replay_is_not_an_arrival_the_quiet_period_waits_out(tmp_path):
    """The quiet period holds analysis back while senders are busy; a replay taken up by the
    gateway is not a sender, and each one held back quiet_period slowed a replay down."""
    audit, analyzer, clock, pipeline = _quiet_pipeline(tmp_path)
    pipeline.submit(AcceptedMessage(store(audit, "R1"), "R1", None, "text", (report("R1"),),
                                    replay=True))
    clock.advance(0)
    assert analyzer.calls == 1
    pipeline.submit(AcceptedMessage(store(audit, "L1"), "L1", None, "text", (report("L1"),)))
    clock.advance(0.5)
    assert analyzer.calls == 1  # a report that did arrive is waited out as before
    clock.advance(0.5)
    assert analyzer.calls == 2


def test_a_stored_report_is_not_held_back_while_senders_keep_sending(tmp_path):
    """A report the resume takes up at a restart has waited already: held max_wait from when
    it was read, the few the resume takes up at a time each waited that long while a busy
    feed kept the quiet period from ever passing."""
    audit, analyzer, clock, pipeline = _quiet_pipeline(tmp_path)
    pipeline.submit(AcceptedMessage(store(audit, "L1"), "L1", None, "text", (report("L1"),)))
    clock.advance(0.2)
    assert analyzer.calls == 0  # a sender is busy: held back
    pipeline.submit(AcceptedMessage(store(audit, "S1"), "S1", None, "text", (report("S1"),)),
                    arrival=False)
    clock.advance(0)
    assert analyzer.calls == 2  # the stored one, and the live one beside it
    analyzer.release()
    analyzer.release()
    pipeline.submit(AcceptedMessage(store(audit, "L2"), "L2", None, "text", (report("L2"),)))
    clock.advance(0.2)
    assert analyzer.calls == 2  # live reports alone are waited out as before


def test_a_stat_order_is_analysed_before_the_routine_ones_waiting(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                max_in_flight=1)
    msh = "MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|{}|P|2.5.1\r"
    priorities = {"R1": "R", "R2": "R", "OLD": "R", "A1": "A", "S1": "S^Stat", "R3": ""}
    started = []
    for cid, priority in priorities.items():
        text = msh.format(cid) + f"TQ1|1||||||||{priority}\rOBR|1|P|F|X\r"
        message = AcceptedMessage(store(audit, cid), cid, None, text, (report(cid),),
                                  replay=cid == "OLD")
        pipeline.submit(message).addCallback(lambda status, c=cid: started.append(c))
    # R1 took the one place; the others wait: STAT, then ASAP, then routine oldest first,
    # and the replay of an old report after every report of today.
    for _ in priorities:
        analyzer.release()
    assert started == ["R1", "S1", "A1", "R2", "R3", "OLD"]


def test_priority_is_read_only_when_messages_wait_together(tmp_path, monkeypatch):
    import gateway.pipeline

    read = []
    real = gateway.pipeline.urgency
    monkeypatch.setattr(gateway.pipeline, "urgency", lambda text: read.append(text) or real(text))
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                max_in_flight=1)
    for cid in ("C1", "C2"):  # one at a time: nothing to compare
        pipeline.submit(AcceptedMessage(store(audit, cid), cid, None, "text", (report(cid),)))
        analyzer.release()
    assert read == []
    for cid in ("C3", "C4", "C5"):  # C3 runs, C4 and C5 wait together: each read once
        pipeline.submit(AcceptedMessage(store(audit, cid), cid, None, cid, (report(cid),)))
    for _ in range(3):
        analyzer.release()
    assert sorted(read) == ["C4", "C5"]


class PoolDouble:
    """An analysis pool whose analyses the test ends: each call waits in ``calls`` as
    (report text, Deferred)."""

    workers = 1

    def __init__(self):
        self.calls = []
        self.engine = FakeEngine()

    def analyze(self, data, alone=None):
        d = defer.Deferred()
        self.calls.append((data.patients[0].patient_documents[0].content.value, d))
        return d

    def in_flight(self):
        return [text for text, d in self.calls if not d.called]

    def end(self, text, outcome):
        d = next(d for t, d in self.calls if t == text and not d.called)
        if isinstance(outcome, Exception):
            d.errback(outcome)
        else:
            d.callback(self.engine.analyze(text_request(text, TextMetadata())))


def test_a_report_that_kills_its_worker_is_found_alone_and_recorded_failed(tmp_path):
    from gateway.analysis import WorkerDied

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pool = PoolDouble()
    pipeline = AnalysisPipeline(pool, GroupCommitter(audit, immediate_writer), max_in_flight=2)
    results = {}
    for cid, text in (("P1", "poison"), ("G1", "pneumothorax"), ("G2", "pneumothorax 2")):
        message = AcceptedMessage(store(audit, cid), cid, None, "", (report(text),))
        pipeline.submit(message).addBoth(lambda r, c=cid: results.__setitem__(c, r))
    assert pool.in_flight() == ["poison", "pneumothorax"]
    # The pool dies under both: neither is blamed yet, each is tried again alone.
    pool.end("poison", WorkerDied("analysis worker died"))
    pool.end("pneumothorax", WorkerDied("analysis worker died"))
    assert pool.in_flight() == ["poison"] and results == {}
    pool.end("poison", WorkerDied("analysis worker died"))  # alone: one death forgiven
    # In turn: the other one alone, then the suspect alone again.
    assert pool.in_flight() == ["pneumothorax"]
    pool.end("pneumothorax", None)
    assert results == {"G1": "analysed"} and pool.in_flight() == ["poison"]
    pool.end("poison", WorkerDied("analysis worker died"))  # alone again: recorded
    assert results == {"G1": "analysed", "P1": "failed"}
    event = audit.events(control_id="P1")[-1]
    assert (event["event"], event["fields"]["stage"]) == ("analysis_failed", "worker")
    assert "died 2 times" in event["fields"]["error"]
    # Then the pool is shared again.
    assert pool.in_flight() == ["pneumothorax 2"]
    pool.end("pneumothorax 2", None)
    assert results == {"P1": "failed", "G1": "analysed", "G2": "analysed"}
    assert [m["status"] for c in ("P1", "G1", "G2") for m in audit.messages_for(c)] == [
        "failed", "analysed", "analysed"]


def test_an_analysis_that_timed_out_is_recorded_failed_at_once(tmp_path):
    from gateway.analysis import AnalysisTimedOut

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pool = PoolDouble()
    pipeline = AnalysisPipeline(pool, GroupCommitter(audit, immediate_writer))
    results = []
    pipeline.submit(AcceptedMessage(store(audit, "T1"), "T1", None, "", (report("loops"),))
                    ).addBoth(results.append)
    pool.end("loops", AnalysisTimedOut("analysis took longer than 120 s"))
    assert results == ["failed"] and pool.in_flight() == []
    event = audit.events(control_id="T1")[-1]
    assert (event["event"], event["fields"]) == ("analysis_failed", {
        "stage": "timeout", "error": "analysis took longer than 120 s"})


def test_a_worker_death_while_stopping_leaves_the_message_to_the_next_start(tmp_path):
    from gateway.analysis import WorkerDied

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pool = PoolDouble()
    pipeline = AnalysisPipeline(pool, GroupCommitter(audit, immediate_writer))
    mid = store(audit, "S1")
    pipeline.submit(AcceptedMessage(mid, "S1", None, "", (report("x"),)))
    pipeline.stop()
    pool.end("x", WorkerDied("analysis worker died"))
    assert pool.in_flight() == [] and [m.id for m in audit.pending_analysis()] == [mid]


class Log:
    def __init__(self):
        self.lines = []

    def _line(self, event, **fields):
        self.lines.append((event, fields))

    info = warning = error = _line


def test_stopping_with_messages_to_try_again_alone_says_they_are_left(tmp_path):
    # Only the backlog was counted: messages waiting to be tried alone were left
    # (received, resumed at the next start) without a word.
    from gateway.analysis import WorkerDied

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pool, log = PoolDouble(), Log()
    pipeline = AnalysisPipeline(pool, GroupCommitter(audit, immediate_writer), log=log,
                                max_in_flight=2)
    for cid in ("R1", "R2"):
        pipeline.submit(AcceptedMessage(store(audit, cid), cid, None, "", (report(cid),)))
    pool.end("R1", WorkerDied("analysis worker died"))
    pool.end("R2", WorkerDied("analysis worker died"))
    assert pool.in_flight() == ["R1"]  # alone; R2 waits its turn
    pipeline.stop()
    assert ("analysis.stopped", {"backlog": 0, "retry_alone": 1}) in log.lines
    pool.end("R1", None)
    assert pool.in_flight() == [] and [m.control_id for m in audit.pending_analysis()] == ["R2"]


def _patient_text(cid: str, mrn: str, priority: str = "R") -> str:
    return (f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|{cid}|P|2.5.1\r"
            f"PID|1||{mrn}^^^HOSP^MR\rTQ1|1||||||||{priority}\rOBR|1|P|F|X\r")


def _start_order(tmp_path, messages):
    """The order in which ``messages`` ((control id, MRN, priority, replay)) are analysed,
    one at a time."""
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                max_in_flight=1)
    started = []
    for cid, mrn, priority, replay in messages:
        message = AcceptedMessage(store(audit, cid), cid, None, _patient_text(cid, mrn, priority),
                                  (report(cid),), replay=replay)
        pipeline.submit(message).addCallback(lambda status, c=cid: started.append(c))
    for _ in messages:
        analyzer.release()
    return started


def test_a_patients_reports_are_analysed_in_arrival_order_whatever_their_priority(tmp_path):
    # The outbox sends in the order results are recorded: a STAT correction analysed
    # before its routine original reached the EHR first, and the original was filed last.
    started = _start_order(tmp_path, (("R1", "MRN9", "R", False), ("ORIG", "MRN1", "R", False),
                                      ("R2", "MRN2", "R", False), ("CORR", "MRN1", "S", False)))
    # The STAT correction takes its original along, ahead of the other routine report.
    assert started == ["R1", "ORIG", "CORR", "R2"]


def test_a_stat_report_takes_the_earlier_routine_report_of_its_patient_along(tmp_path):
    # A STAT report must wait for the earlier report of its patient (arrival order), but
    # not for every routine report queued before that one: after an outage the STAT head CT
    # of a patient with a routine chest film in the backlog waited for the whole backlog.
    started = _start_order(tmp_path, (
        ("R1", "MRN9", "R", False), ("R2", "MRN2", "R", False), ("OLD", "MRN1", "R", True),
        ("ORIG", "MRN1", "R", False), ("R3", "MRN3", "R", False), ("STAT", "MRN1", "S", False)))
    # The replay and the original go first, in the order they arrived, then the STAT one.
    assert started == ["R1", "OLD", "ORIG", "STAT", "R2", "R3"]


def test_a_later_report_of_the_patient_starts_once_the_earlier_one_timed_out(tmp_path):
    from gateway.analysis import AnalysisTimedOut, WorkerDied

    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    pool = PoolDouble()
    pipeline = AnalysisPipeline(pool, GroupCommitter(audit, immediate_writer), max_in_flight=2)
    results = {}
    for cid, text in (("T1", "loops"), ("T2", "corrected"), ("T3", "addendum")):
        message = AcceptedMessage(store(audit, cid), cid, None, _patient_text(cid, "MRN1"),
                                  (report(text),))
        pipeline.submit(message).addBoth(lambda r, c=cid: results.__setitem__(c, r))
    assert pool.in_flight() == ["loops"]
    pool.end("loops", AnalysisTimedOut("analysis took longer than 120 s"))
    assert results == {"T1": "failed"} and pool.in_flight() == ["corrected"]
    # A worker death: tried again alone, and the addendum still waits for it.
    pool.end("corrected", WorkerDied("analysis worker died"))
    assert pool.in_flight() == ["corrected"]
    pool.end("corrected", None)
    assert pool.in_flight() == ["addendum"]
    pool.end("addendum", None)
    assert results == {"T1": "failed", "T2": "analysed", "T3": "analysed"}


class _NoDisk:
    """A committer that commits nothing: the test measures the pipeline's own work."""

    def submit(self, op):
        return defer.succeed(None)


def _seconds_to_analyse(mrns):
    import time

    analyzer = HeldAnalyzer()
    pipeline = AnalysisPipeline(analyzer, _NoDisk(), max_in_flight=2)
    reports = (report("x"),)
    started = time.perf_counter()
    for mid, mrn in enumerate(mrns, 1):
        pipeline.submit(AcceptedMessage(mid, f"C{mid}", None, _patient_text(f"C{mid}", mrn),
                                        reports))
    while analyzer.held:
        analyzer.release()
    assert pipeline.backlog == 0 and pipeline.in_progress == 0
    return time.perf_counter() - started


def test_a_long_backlog_of_one_patient_costs_no_more_than_one_of_many_patients():
    # Each free place in the pool looked through every waiting report of the patient
    # again: with a few thousand of them the reactor spent seconds per thousand reports.
    count = 3000
    many = _seconds_to_analyse([f"MRN{n}" for n in range(count)])
    one = _seconds_to_analyse(["MRN1"] * count)
    assert one < 3 * many + 0.2, (one, many)


def test_one_patients_identifier_with_and_without_its_authority_is_analysed_in_order(tmp_path):
    # The report names PID-3 without its assigning authority (or without its OID), the
    # correction with it: two keys let the correction be analysed, and sent, first.
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    analyzer = HeldAnalyzer()
    pipeline = AnalysisPipeline(analyzer, GroupCommitter(audit, immediate_writer),
                                max_in_flight=4)
    for cid, pid3 in (("R1", "123"), ("C1", "123^^^HOSP^MR"),
                      ("R2", "MRN1^^^GENHOSP^MR"), ("C2", "MRN1^^^GENHOSP&1.2.3.4&ISO^MR")):
        text = (f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|{cid}|P|2.5.1\r"
                f"PID|1||{pid3}\rOBR|1|P|F|X\r")
        pipeline.submit(AcceptedMessage(store(audit, cid), cid, None, text, (report(cid),)))
    assert [data.patients[0].patient_documents[0].content.value for _, data in analyzer.held] \
        == ["R1", "R2"]
