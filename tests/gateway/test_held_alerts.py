"""Alerts held behind an earlier version's alert still pending (gateway.held_alerts): the
versions of one study go through the outbox hook as the pipeline runs it, and the pagers
are fake downstreams on StringTransports driven by a task.Clock."""

from __future__ import annotations

import datetime as dt
import time
import tomllib

import pytest
from click.testing import CliRunner
from test_delivery import Downstream, ack, clock  # noqa: F401
from test_outbox_service import CRIT, TEXT, Message, Outcome, report, result

from gateway.audit import AuditLog
from gateway.cli import main
from gateway.delivery import DeliveryService
from gateway.escalation import Escalation
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.outbox_service import OutboundHook
from gateway.routing import Router, parse_outbound_config
from mappings.header import read_header
from ri_engine.models import CriticalResult, CriticalResultInference

CONFIG = """
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port=1"
max_attempts = 2
backoff_initial = 10.0
jitter = 0.0
[destinations.backup]
endpoint = "tcp:host=127.0.0.1:port=2"
max_attempts = 1
[routes.critical]
type = "alerts"
destinations = ["pager"]
"""
EMBOLISM = CriticalResultInference(result=CriticalResult(description="PULMONARY EMBOLISM"))


class Study:
    """One study's versions (message ids 1, 2, ...: control ids IN1, IN2, ...) through the
    hook, an outbox and its delivery service, all on one clock."""

    def __init__(self, path: str, clock, *, escalate: bool = False) -> None:  # noqa: F811
        self.path = path
        self.audit = AuditLog(path)
        # The hook queues at the wall clock's time, as in the gateway, where the reactor's
        # clock is the wall clock too: no message is due before the clock reaches it.
        clock.advance(max(0.0, time.time() + 1 - clock.seconds()))
        config = parse_outbound_config(tomllib.loads(
            CONFIG + ('escalate_to = ["backup"]\n' if escalate else "")))
        ids = iter(f"OUT{n}" for n in range(1, 100))
        copies = iter(f"ESC{n}" for n in range(1, 100))
        self.hook = OutboundHook(Router(config, control_ids=lambda: next(ids)),
                                 now=lambda: dt.datetime(2024, 1, 15, 10, 30))
        self.outbox = Outbox.open(path, clock=clock)
        self.downs = {name: Downstream(clock) for name in config.destinations}
        self.metrics = Metrics()
        self.service = DeliveryService(
            self.outbox, config.destinations, reactor=clock, metrics=self.metrics,
            connect=lambda dest: self.downs[dest.name].connect(dest),
            escalation=Escalation(config, control_ids=lambda: next(copies)))
        self.service.startService()

    def version(self, message_id: int, *inferences, patient: str = "MRN1") -> None:
        control_id = f"IN{message_id}"
        text = (TEXT.format(accept="", app="").replace("|IN1|", f"|{control_id}|")
                .replace("PID|1||MRN1", f"PID|1||{patient}"))
        message = Message(message_id, control_id, read_header(text), text, (report(),))
        done = self.audit.run_batch(self.hook(message, [Outcome(report(), result(*inferences))]))
        assert not [r for r in done if isinstance(r, BaseException)]
        self.service.notify(self.hook.take_written())

    def rows(self) -> list[tuple[int, str, str, str]]:
        return [(r.id, r.destination, r.source_control_id, r.status) for r in self.outbox.list()]

    def events(self, name: str) -> list[tuple[str, dict]]:
        return [(e["control_id"], e["fields"]) for e in self.audit.events() if e["event"] == name]

    def sent(self, destination: str) -> list[str]:
        """The control ids sent to ``destination``, over all its connections."""
        down = self.downs[destination]
        return [c for n in range(len(down.connections)) for c in down.control_ids(n)]

    def close(self) -> None:
        self.service.stopService()
        self.audit.close()


@pytest.fixture
def study(tmp_path, clock):  # noqa: F811
    s = Study(str(tmp_path / "audit.sqlite3"), clock)
    yield s
    s.close()


def test_a_version_held_behind_a_page_that_is_delivered_is_not_sent(study):
    study.version(1, CRIT)
    assert study.sent("pager") == ["OUT1"]  # awaiting its ACK
    study.version(2, CRIT)
    assert study.rows() == [(1, "pager", "IN1", "pending"), (2, "pager", "IN2", "held")]
    (held,) = study.events("alert_held")
    assert held == ("IN2", {"destination": "pager", "route": "critical", "purpose": "alerts",
                            "outbound_control_id": "OUT2", "outbox_id": 2,
                            "reason": "earlier_alert_pending", "results": 1,
                            "alerted_by": ["IN1"], "outbox_ids": [1]})
    assert study.events("enqueued") == [("IN1", study.events("enqueued")[0][1])]
    study.downs["pager"].reply(ack("OUT1"))
    # The page reached the pager: the held version is suppressed as it would have been at
    # once, and leaves the outbox.
    assert study.rows() == [(1, "pager", "IN1", "delivered")]
    assert study.events("alert_suppressed") == [("IN2", {
        "destination": "pager", "route": "critical", "reason": "already_alerted",
        "results": 1, "alerted_by": ["IN1"], "outbox_ids": [1]})]
    assert study.sent("pager") == ["OUT1"]


def test_a_version_held_behind_a_page_that_is_dead_lettered_is_sent(study, clock):  # noqa: F811
    study.version(1, CRIT)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))  # retried in 10 s
    study.version(2, CRIT)
    assert study.rows() == [(1, "pager", "IN1", "pending"), (2, "pager", "IN2", "held")]
    clock.advance(10)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))  # the last of its 2 attempts
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "pending")]
    (released,) = study.events("alert_released")
    assert released == ("IN2", {"destination": "pager", "route": "critical", "purpose": "alerts",
                                "outbound_control_id": "OUT2", "outbox_id": 2,
                                "reason": "earlier_alert_dead_lettered", "dead_lettered": [1]})
    assert study.sent("pager")[-1] == "OUT2"  # sent at once
    study.downs["pager"].reply(ack("OUT2"))
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "delivered")]
    assert study.events("alert_suppressed") == []


def test_a_held_version_waits_while_the_earlier_page_is_escalated_and_then_is_suppressed(
        tmp_path, clock):  # noqa: F811
    study = Study(str(tmp_path / "audit.sqlite3"), clock, escalate=True)
    study.version(1, CRIT)
    study.version(2, CRIT)
    study.downs["pager"].reply(ack("OUT1", "AR", "101"))  # refused for good: escalated
    # The copy to the backup pager is pending: the page may still reach someone.
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "held"),
                            (3, "backup", "IN1", "pending")]
    assert study.sent("backup") == ["ESC1"]
    study.downs["backup"].reply(ack("ESC1"))
    assert study.rows() == [(1, "pager", "IN1", "dead"), (3, "backup", "IN1", "delivered")]
    (suppressed,) = study.events("alert_suppressed")
    assert suppressed[1]["alerted_by"] == ["IN1"] and suppressed[1]["outbox_ids"] == [1]
    study.close()


def test_a_held_version_pages_through_escalation_once_the_page_and_its_copy_are_dead(
        tmp_path, clock):  # noqa: F811
    study = Study(str(tmp_path / "audit.sqlite3"), clock, escalate=True)
    study.version(1, CRIT)
    study.version(2, CRIT)
    study.downs["pager"].reply(ack("OUT1", "AR", "101"))
    study.downs["backup"].reply(ack("ESC1", "AR", "207"))  # its one attempt: dead too
    # Released at the pager by the backup's dead-letter: the pager is woken for it.
    assert study.rows()[:2] == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "pending")]
    assert study.sent("pager") == ["OUT1", "OUT2"]
    study.downs["pager"].reply(ack("OUT2", "AR", "101"))  # and escalated as its route says
    assert study.sent("backup") == ["ESC1", "ESC2"]
    study.downs["backup"].reply(ack("ESC2"))
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "dead"),
                            (3, "backup", "IN1", "dead"), (4, "backup", "IN2", "delivered")]
    study.close()


def test_retrying_the_dead_keeps_dead_a_page_a_released_version_delivered(
        study, clock):  # noqa: F811
    study.version(1, CRIT)
    study.version(2, CRIT)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    clock.advance(10)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    study.downs["pager"].reply(ack("OUT2"))  # released, and it reached the pager
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "delivered")]
    # After the outage the operator re-queues what was dead-lettered: the pneumothorax was
    # paged already, by the second version.
    retried = CliRunner().invoke(main, ["outbox", "retry", "--dead", "--db", study.path])
    assert retried.exit_code == 0, retried.output
    assert retried.output.splitlines() == [
        "re-queued 0 dead-lettered message(s)",
        "kept dead 1 for pager: the same alert was delivered as 2 "
        "(name it to send it again: outbox retry 1)"]
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "delivered")]


def test_versions_held_behind_one_page_go_out_one_at_a_time(study, clock):  # noqa: F811
    study.version(1, CRIT)
    study.version(2, CRIT)
    study.version(3, CRIT)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    clock.advance(10)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    # The first one held goes out in its place, and the second waits for that one now.
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "pending"),
                            (3, "pager", "IN3", "held")]
    study.downs["pager"].reply(ack("OUT2"))
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "delivered")]
    assert [(c, f["alerted_by"]) for c, f in study.events("alert_suppressed")] == [
        ("IN3", ["IN2"])]


def test_a_held_version_whose_result_a_later_version_withdrew_is_not_sent(
        study, clock):  # noqa: F811
    study.version(1, CRIT)
    study.version(2, CRIT)
    study.version(3)  # the correction: no pneumothorax after all
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    clock.advance(10)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    assert study.rows() == [(1, "pager", "IN1", "dead")]
    assert study.events("alert_suppressed") == [("IN2", {
        "destination": "pager", "route": "critical", "reason": "withdrawn", "results": 1,
        "alerted_by": [], "outbox_ids": []})]
    assert study.sent("pager") == ["OUT1", "OUT1"]


def test_another_patients_report_under_the_accession_does_not_drop_a_held_page(
        study, clock):  # noqa: F811
    study.version(1, CRIT)
    study.version(2, CRIT)
    # Another patient's study filed under the same accession number, with no critical
    # result: it says nothing of this patient's pneumothorax.
    study.version(3, patient="MRN2")
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    clock.advance(10)
    study.downs["pager"].reply(ack("OUT1", "AR", "207"))
    assert study.rows() == [(1, "pager", "IN1", "dead"), (2, "pager", "IN2", "pending")]
    assert study.events("alert_suppressed") == []
    assert study.sent("pager")[-1] == "OUT2"


def test_a_version_that_adds_a_result_is_sent_not_held(study):
    study.version(1, CRIT)
    study.version(2, CRIT, EMBOLISM)
    assert study.rows() == [(1, "pager", "IN1", "pending"), (2, "pager", "IN2", "pending")]
    assert study.events("alert_held") == []


def test_held_alerts_are_listed_and_counted(study):
    study.version(1, CRIT)
    study.version(2, CRIT)
    text = study.metrics.render()
    assert 'ri_gateway_outbox_held{destination="pager"} 1' in text.splitlines()
    assert 'ri_gateway_outbox_held{destination="backup"} 0' in text.splitlines()
    listed = CliRunner().invoke(main, ["outbox", "list", "--status", "held", "--db", study.path])
    assert listed.exit_code == 0, listed.output
    (line,) = listed.output.splitlines()
    assert line.split()[:5] == ["2", "held", "pager", "alerts", "OUT2"]
    # Retried by its id, it is sent now (as the operator asked), whatever the other does.
    retried = CliRunner().invoke(main, ["outbox", "retry", "2", "--db", study.path])
    assert retried.output == "re-queued 2 (held -> pending) for pager\n"
