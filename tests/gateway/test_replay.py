"""``ri-gateway replay`` and the gateway's replay poller: stored messages analysed again."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from twisted.internet import task

from gateway.audit import AuditLog, ReceivedMessage, event_op, status_op
from gateway.cli import main
from gateway.commit import GroupCommitter
from gateway.metrics import Metrics
from gateway.inputs import TextMetadata, text_request
from gateway.pipeline import AcceptedMessage, AnalysisPipeline
from gateway.replay import ReplayPoller, request_replay

from gateway_samples import FakeReport, immediate_writer
from test_pipeline import HeldAnalyzer, SyncAnalyzer

# Dates in options and in the text output are local time: these read them as UTC.
pytestmark = pytest.mark.usefixtures("utc_zone")


def store(audit, control_id, *, status="received", ack_code="AA", app="RIS", facility="HOSP",
          received_at="2024-01-15T10:00:00.000Z"):
    return audit.record_received(ReceivedMessage(
        raw=f"MSH|^~\\&|{app}|{facility}|||||ORU^R01|{control_id}|P|2.5".encode(),
        received_at=received_at, status=status, ack_code=ack_code, ack_payload=b"ack",
        control_id=control_id, sending_application=app, sending_facility=facility,
        message_type="ORU^R01"))


def report(text):
    return FakeReport(request=text_request(text, TextMetadata()))


class Rig:
    """A pipeline on a real audit database, a hook that records what it was given, and a
    poller whose reread maps every stored message to one report of ``text``."""

    def __init__(self, tmp_path, text="Large pneumothorax.", hook_fails=False):
        self.path = str(tmp_path / "audit.sqlite3")
        self.audit = AuditLog(self.path)
        self.analyzer = SyncAnalyzer()
        self.hooked = []
        self.hook_fails = hook_fails
        self.text = text
        self.committer = GroupCommitter(self.audit, immediate_writer)
        self.pipeline = AnalysisPipeline(self.analyzer, self.committer, hooks=[self.hook])

    def hook(self, message, outcomes):
        self.hooked.append((message.control_id, message.replay))

        def op(conn):
            if self.hook_fails:
                raise RuntimeError("outbox unavailable")
        return [op]

    def reread(self, raw, charset):
        if self.text is None:
            raise ValueError("no longer maps")
        return None, raw.decode(), [report(self.text)]

    def poller(self, clock=None, metrics=None):
        return ReplayPoller(self.audit, self.committer, self.pipeline, self.reread, clock=clock,
                            metrics=metrics)

    def analysed(self, control_id):
        mid = store(self.audit, control_id)
        results = []
        self.pipeline.submit(AcceptedMessage(mid, control_id, None, "", (report(self.text),))
                             ).addBoth(results.append)
        assert results == ["analysed"]
        return mid

    def status(self, mid):
        return self.audit.conn.execute("SELECT status FROM messages WHERE id = ?",
                                       (mid,)).fetchone()[0]

    def events(self, control_id):
        return [e["event"] for e in self.audit.events(control_id=control_id)]


def fired(deferreds):
    results = []
    for d in deferreds:
        d.addBoth(results.append)
    return results


def test_a_replay_replaces_the_inferences_and_runs_the_hooks_again(tmp_path):
    rig = Rig(tmp_path)
    mid = rig.analysed("C1")
    before = rig.audit.inferences_for(mid)
    assert len(before) == 1

    (done,) = request_replay(rig.audit, control_ids=["C1"])
    assert (done.requested, done.status, rig.status(mid)) == (True, "analysed", "replay")
    assert fired(rig.poller().poll()) == ["analysed"]

    assert rig.audit.inferences_for(mid) == before  # replaced, not added to
    assert rig.status(mid) == "analysed"
    assert rig.events("C1") == ["received", "analysed", "replay_requested", "replayed",
                                "analysed"]
    requested = rig.audit.events(control_id="C1")[2]["fields"]
    assert requested == {"previous_status": "analysed", "deliver": "results"}
    assert rig.hooked == [("C1", False), ("C1", True)]
    assert rig.analyzer.calls == 2


def test_replays_are_counted_in_the_metrics(tmp_path):
    rig = Rig(tmp_path)
    rig.analysed("C1")
    rig.analysed("C2")
    metrics = Metrics()
    poller = rig.poller(metrics=metrics)
    request_replay(rig.audit, control_ids=["C1", "C2"])
    fired(poller.poll())
    assert "ri_gateway_replays_total 2" in metrics.render()


def test_a_replay_without_delivery_records_the_analysis_and_skips_the_hooks(tmp_path):
    rig = Rig(tmp_path)
    mid = rig.analysed("C1")
    request_replay(rig.audit, control_ids=["C1"], deliver="none")
    assert fired(rig.poller().poll()) == ["analysed"]
    assert rig.hooked == [("C1", False)]
    assert rig.audit.events(control_id="C1")[3]["fields"] == {"deliver": "none"}
    assert len(rig.audit.inferences_for(mid)) == 1


def test_the_new_analysis_is_what_is_kept_when_the_outcome_changes(tmp_path):
    rig = Rig(tmp_path)
    mid = rig.analysed("C1")
    rig.text = "No pneumothorax."  # e.g. an engine upgrade reads the report differently
    request_replay(rig.audit, control_ids=["C1"])
    assert fired(rig.poller().poll()) == ["analysed"]
    assert rig.audit.inferences_for(mid) == []


def test_a_message_that_no_longer_maps_is_marked_failed(tmp_path):
    rig = Rig(tmp_path)
    mid = rig.analysed("C1")
    rig.text = None
    request_replay(rig.audit, control_ids=["C1"])
    assert fired(rig.poller().poll()) == ["failed"]
    assert rig.status(mid) == "failed"
    # Its inferences are those of its latest analysis, which found none: the reports must
    # not count a message that now fails (as when the workers find that it no longer maps).
    assert rig.audit.inferences_for(mid) == []
    failed = rig.audit.events(control_id="C1")[-1]
    assert (failed["event"], failed["fields"]["stage"]) == ("analysis_failed", "replay")


def test_a_replay_that_cannot_be_recorded_waits_for_the_next_start(tmp_path):
    rig = Rig(tmp_path)
    mid = rig.analysed("C1")
    rig.hook_fails = True
    request_replay(rig.audit, control_ids=["C1"])
    poller = rig.poller()
    assert fired(poller.poll()) == [None]  # not recorded
    assert rig.status(mid) == "replay"
    assert len(rig.audit.inferences_for(mid)) == 1  # the earlier analysis is kept meanwhile
    assert poller.poll() == []  # not handed over again by the same process
    rig.hook_fails = False
    assert fired(rig.poller().poll()) == ["analysed"]  # a restart takes it up
    assert rig.status(mid) == "analysed" and len(rig.audit.inferences_for(mid)) == 1


def test_the_poller_looks_at_start_and_then_every_interval(tmp_path):
    rig = Rig(tmp_path)
    rig.analysed("C1")
    rig.analysed("C2")
    clock = task.Clock()
    poller = rig.poller(clock)
    request_replay(rig.audit, control_ids=["C1"])
    poller.startService()
    assert rig.analyzer.calls == 3  # C1 at start
    request_replay(rig.audit, control_ids=["C2"])
    clock.advance(poller.interval - 0.1)
    assert rig.analyzer.calls == 3
    clock.advance(0.1)
    assert rig.analyzer.calls == 4
    clock.advance(poller.interval)
    assert rig.analyzer.calls == 4  # nothing waiting: nothing analysed
    poller.stopService()
    assert not clock.getDelayedCalls()


def test_a_large_replay_leaves_room_for_the_reports_arriving_meanwhile(tmp_path):
    """Replays enter the pipeline a few at a time, so a live report waits behind no more
    than the pipeline's max_in_flight of them (not behind the whole replay: with
    ack_after = "analysis" its ACK would), and the replay still drains without the timer."""
    rig = Rig(tmp_path)
    replayed = [rig.analysed(f"R{i}") for i in range(10)]
    rig.analyzer = HeldAnalyzer()
    rig.pipeline = AnalysisPipeline(rig.analyzer, rig.committer, hooks=[rig.hook])
    rig.hooked.clear()
    request_replay(rig.audit, statuses=["analysed"])
    clock = task.Clock()
    poller = rig.poller(clock)
    poller.startService()
    assert len(rig.analyzer.held) + rig.pipeline.backlog == rig.pipeline.max_in_flight == 2
    live = store(rig.audit, "LIVE")
    rig.pipeline.submit(AcceptedMessage(live, "LIVE", None, "", (report(rig.text),)))
    while rig.analyzer.held:
        rig.analyzer.release()
        clock.advance(0)  # the poller takes the next replay on a later reactor turn
    order = [control_id for control_id, _ in rig.hooked]
    assert order.index("LIVE") <= rig.pipeline.max_in_flight
    assert sorted(order) == sorted(["LIVE", *(f"R{i}" for i in range(10))])
    assert [rig.status(mid) for mid in replayed] == ["analysed"] * 10
    assert all(len(rig.audit.inferences_for(mid)) == 1 for mid in replayed)
    poller.stopService()
    assert not clock.getDelayedCalls()


def test_only_finished_accepted_messages_are_marked(tmp_path):
    rig = Rig(tmp_path)
    rig.analysed("DONE")
    pending = store(rig.audit, "PENDING")
    rejected = store(rig.audit, "BAD", status="rejected", ack_code="AE")
    failed = store(rig.audit, "FAILED")
    rig.committer.submit(status_op(failed, "failed"))
    done = {r.control_id: r for r in request_replay(
        rig.audit, control_ids=["DONE", "PENDING", "BAD", "FAILED"])}
    assert {cid: r.requested for cid, r in done.items()} == {
        "DONE": True, "PENDING": False, "BAD": False, "FAILED": True}
    assert "must send it again" in done["BAD"].reason
    assert "not finished" in done["PENDING"].reason
    assert (rig.status(pending), rig.status(rejected)) == ("received", "rejected")
    again = request_replay(rig.audit, control_ids=["DONE"])
    assert [(r.requested, r.waiting) for r in again] == [(False, True)]
    assert rig.events("DONE").count("replay_requested") == 1



def test_many_messages_are_marked_a_chunk_to_a_transaction(tmp_path, monkeypatch):
    """--status over a large audit log must not hold the write lock the gateway's ACK path
    needs for the whole selection: each transaction marks at most MARK_CHUNK messages."""
    import gateway.replay

    monkeypatch.setattr(gateway.replay, "MARK_CHUNK", 3, raising=False)
    rig = Rig(tmp_path)
    mids = [rig.analysed(f"C{i}") for i in range(7)]
    marked_per_transaction, marked = [], 0

    def trace(statement):
        nonlocal marked
        if statement.startswith("UPDATE messages SET status"):
            marked += 1
        elif statement == "COMMIT":
            marked_per_transaction.append(marked)
            marked = 0

    rig.audit.conn.set_trace_callback(trace)
    done = request_replay(rig.audit, statuses=["analysed"])
    rig.audit.conn.set_trace_callback(None)
    assert [r.message_id for r in done] == mids and all(r.requested for r in done)
    assert marked_per_transaction == [3, 3, 1]
    assert {rig.status(mid) for mid in mids} == {"replay"}

# --- the command line --------------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "audit.sqlite3")
    audit = AuditLog(path)
    for cid, status, app, at in [("C1", "analysed", "RIS", "2024-01-15T10:00:00.000Z"),
                                 ("C2", "failed", "RIS", "2024-01-15T11:00:00.000Z"),
                                 ("C3", "failed", "PACS", "2024-01-16T09:00:00.000Z"),
                                 ("C4", "skipped", "RIS", "2024-01-16T10:00:00.000Z")]:
        mid = store(audit, cid, app=app, received_at=at)
        audit.run(status_op(mid, status))
    store(audit, "R1", status="rejected", ack_code="AR")
    audit.close()
    return path


def cli(*args):
    result = CliRunner().invoke(main, ["replay", *args], catch_exceptions=False)
    return result.exit_code, result.output


def column(path, name="status"):
    audit = AuditLog(path, readonly=True)
    try:
        return dict(audit.conn.execute(f"SELECT control_id, {name} FROM messages").fetchall())
    finally:
        audit.close()


def test_cli_replays_by_control_id(db):
    analysed_at = column(db, "analysed_at")
    code, out = cli("C1", "C4", "--db", db)
    assert code == 0, out
    assert out.splitlines() == [
        "replay requested: message 1 C1 from RIS^HOSP (was analysed)",
        "replay requested: message 4 C4 from RIS^HOSP (was skipped)",
        "2 message(s) will be analysed again by the running gateway within 5 s, or at its "
        "next start; results are sent again, alerts are not"]
    assert column(db) == {"C1": "replay", "C2": "failed", "C3": "failed", "C4": "replay",
                            "R1": "rejected"}
    assert column(db, "analysed_at") == analysed_at  # still when the last analysis finished


def test_cli_selects_by_status_date_and_sender(db):
    code, out = cli("--status", "failed", "--since", "2024-01-15T10:30:00", "--sender", "RIS",
                    "--deliver", "none", "--db", db)
    assert code == 0, out
    assert out.splitlines()[0] == "replay requested: message 2 C2 from RIS^HOSP (was failed)"
    assert out.splitlines()[-1].endswith("nothing is sent downstream")
    assert column(db)["C2"] == "replay" and column(db)["C3"] == "failed"
    code, out = cli("--status", "failed", "--since", "2024-01-16", "--db", db)
    assert code == 0 and "C3 from PACS^HOSP" in out and "C2" not in out
    code, out = cli("--status", "analysed", "--since", "2030-01-01", "--db", db)
    assert (code, out.splitlines()[-1].split(" ")[0]) == (0, "0")  # nothing chosen is fine


def test_cli_says_why_a_message_is_not_replayed_and_exits_1(db):
    code, out = cli("R1", "NOPE", "C1", "--db", db)
    assert code == 1
    assert "not replayed: message 5 R1 from RIS^HOSP: rejected at receipt" in out
    assert "not replayed: no stored message with control id NOPE matches" in out
    assert "replay requested: message 1 C1" in out  # the others are still replayed
    code, out = cli("C1", "--sender", "PACS", "--db", db)
    assert code == 1 and "no stored message with control id C1 matches" in out


def test_a_rejected_message_its_sender_resent_is_no_failure(db):
    """R1 was rejected, and its sender sent it again under the same MSH-10 (as HL7 resends
    do) and had it accepted: replaying R1 replays the resend and succeeds."""
    audit = AuditLog(db)
    resend = store(audit, "R1", received_at="2024-01-17T10:00:00.000Z")
    audit.run(status_op(resend, "analysed"))
    store(audit, "R1", app="PACS", status="rejected", ack_code="AR")  # another sender's
    audit.close()
    code, out = cli("R1", "--sender", "RIS", "--db", db)
    assert code == 0, out
    assert out.splitlines()[:2] == [
        "not replayed: message 5 R1 from RIS^HOSP: rejected at receipt; the one to replay is "
        f"its resend, message {resend}",
        f"replay requested: message {resend} R1 from RIS^HOSP (was analysed)"]
    code, out = cli("R1", "--db", db)  # PACS never had its R1 accepted
    assert code == 1 and "from PACS^HOSP: rejected at receipt; the sender must send it" in out


def test_a_second_request_says_which_delivery_the_waiting_replay_keeps(db):
    """A message already waiting keeps its first request's --deliver: the command must not
    say that results are sent for it."""
    code, out = cli("C1", "--deliver", "none", "--db", db)
    assert code == 0 and out.splitlines()[-1].endswith("nothing is sent downstream")
    code, out = cli("C1", "C4", "--db", db)
    assert code == 0, out
    assert out.splitlines() == [
        "already waiting for replay: message 1 C1 from RIS^HOSP (nothing is sent, as first "
        "requested)",
        "replay requested: message 4 C4 from RIS^HOSP (was skipped)",
        "2 message(s) will be analysed again by the running gateway within 5 s, or at its "
        "next start; for 1: nothing is sent downstream, for 1: results are sent again, alerts "
        "are not (a message already waiting keeps its first request's --deliver)"]
    code, out = cli("C1", "--db", db)
    assert out.splitlines()[-1].endswith("; nothing is sent downstream")


def test_cli_usage_errors_and_a_missing_database(db, tmp_path):
    assert cli("--db", db)[0] == 2
    assert cli("C1", "--status", "failed", "--db", db)[0] == 2
    assert cli("--status", "rejected", "--db", db)[0] == 2
    code, out = cli("--status", "failed", "--since", "last tuesday", "--db", db)
    assert code == 2 and "ISO 8601" in out
    missing = str(tmp_path / "none" / "audit.sqlite3")
    result = CliRunner().invoke(main, ["replay", "C1", "--db", missing])
    assert result.exit_code == 3 and "no audit database" in result.output
    assert not os.path.exists(missing)


def test_replayed_messages_show_in_audit_show(db):
    cli("C1", "--db", db)
    result = CliRunner().invoke(main, ["audit", "show", "C1", "--db", db])
    assert [line for line in result.output.splitlines() if "replay_requested" in line]


def test_an_event_recorded_for_another_message_does_not_change_the_flag(tmp_path):
    rig = Rig(tmp_path)
    rig.analysed("C1")
    request_replay(rig.audit, control_ids=["C1"], deliver="none")
    rig.committer.submit(event_op("replay_requested", "C9", None, deliver="all"))
    assert fired(rig.poller().poll()) == ["analysed"]
    assert rig.hooked == [("C1", False)]
