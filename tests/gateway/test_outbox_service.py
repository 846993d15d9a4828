"""The analysis-pipeline hook: outbound messages commit with the analysis."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass

from gateway.audit import AuditLog
from gateway.outbox import Outbox
from gateway.outbox_service import OutboundHook
from gateway.routing import Router, parse_outbound_config
from mappings.ack import parse_ack
from mappings.header import read_header
from ri_engine.errors import AnalysisFailure
from ri_engine.models import (
    CriticalResult, CriticalResultInference, DocumentContent, InferenceResult, PatientDocument,
    PatientRecord, PatientResult, RadiologyInsightsData,
)

TEXT = ("MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115101500||ORU^R01|IN1|P|2.5.1|||{accept}|{app}\r"
        "PID|1||MRN1\rOBR|1|P1|F1|71045^XR CHEST^C4\rOBX|1|TX|X||Large pneumothorax.||||||F\r")
CONFIG = tomllib.loads("""
[outbound]
application_ack_destination = "ris"
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port=1"
[destinations.ris]
endpoint = "tcp:host=127.0.0.1:port=2"
[routes.alerts]
type = "alerts"
destinations = ["pager"]
""")


@dataclass(frozen=True)
class Message:
    message_id: int
    control_id: str
    header: object
    text: str
    reports: tuple
    replay: bool = False
    deliver: str = "all"


@dataclass(frozen=True)
class Report:
    request: RadiologyInsightsData
    obr_index: int = 1
    result_status: str | None = "F"
    accession: str | None = "F1"


@dataclass(frozen=True)
class Outcome:
    report: Report
    result: object = None
    error: BaseException | None = None


def report() -> Report:
    doc = PatientDocument(id="d", content=DocumentContent(value="Large pneumothorax."))
    return Report(RadiologyInsightsData(patients=[PatientRecord(id="MRN1", patient_documents=[doc])]))


def result(*inferences) -> InferenceResult:
    return InferenceResult(patient_results=[PatientResult(patient_id="MRN1", inferences=list(inferences))],
                           model_version="test")


CRIT = CriticalResultInference(result=CriticalResult(description="PNEUMOTHORAX"))


def run_hook(tmp_path, outcomes, accept="", app="", name="a.sqlite3", replay=False,
             deliver="all"):
    path = str(tmp_path / name)
    audit = AuditLog(path)
    Outbox.open(path).conn.close()
    ids = iter(f"OUT{n}" for n in range(1, 10))
    hook = OutboundHook(Router(parse_outbound_config(CONFIG), control_ids=lambda: next(ids)),
                        now=lambda: dt.datetime(2024, 1, 15, 10, 30))
    text = TEXT.format(accept=accept, app=app)
    message = Message(7, "IN1", read_header(text), text, tuple(o.report for o in outcomes),
                      replay, deliver)
    ops = hook(message, outcomes)
    results = audit.run_batch(ops)
    assert not [r for r in results if isinstance(r, BaseException)]
    rows = Outbox.open(path).list()
    events = [(e["event"], e["control_id"], e["fields"].get("destination")) for e in audit.events()]
    return hook, rows, events


def test_alert_is_enqueued_with_the_analysis_and_destinations_are_woken(tmp_path):
    hook, rows, events = run_hook(tmp_path, [Outcome(report(), result(CRIT))])
    assert [(r.destination, r.purpose, r.control_id, r.source_control_id, r.message_id) for r in rows] == [
        ("pager", "alerts", "OUT1", "IN1", 7)]
    assert events == [("enqueued", "IN1", "pager")]
    assert hook.take_written() == {"pager"}
    assert hook.take_written() == set()


def test_no_alerting_inference_enqueues_nothing(tmp_path):
    hook, rows, events = run_hook(tmp_path, [Outcome(report(), result())])
    assert (rows, events, hook.take_written()) == ([], [], set())


def test_enhanced_mode_application_ack_goes_to_the_return_route(tmp_path):
    _, rows, _ = run_hook(tmp_path, [Outcome(report(), result(CRIT))], accept="AL", app="AL")
    assert [(r.destination, r.purpose) for r in rows] == [("pager", "alerts"), ("ris", "application_ack")]
    ack = parse_ack(rows[1].payload)
    assert (ack.code, ack.acked_control_id) == ("AA", "IN1")
    assert rows[1].control_id == "OUT2"


def test_a_replay_sends_results_again_but_no_second_application_ack(tmp_path):
    _, rows, _ = run_hook(tmp_path, [Outcome(report(), result(CRIT))], accept="AL", app="AL",
                          replay=True)
    assert [(r.destination, r.purpose) for r in rows] == [("pager", "alerts")]


def test_a_replay_of_results_only_pages_no_one(tmp_path):
    _, rows, events = run_hook(tmp_path, [Outcome(report(), result(CRIT))], replay=True,
                               deliver="results")
    assert (rows, events) == ([], [])


def test_application_ack_reports_engine_failure_when_asked_for_errors_only(tmp_path):
    failed = [Outcome(report(), error=AnalysisFailure("boom"))]
    _, rows, _ = run_hook(tmp_path, failed, accept="AL", app="ER")
    assert [(r.destination, parse_ack(r.payload).code) for r in rows] == [("ris", "AR")]
    _, rows, _ = run_hook(tmp_path, [Outcome(report(), result())], accept="AL", app="ER",
                          name="b.sqlite3")
    assert rows == []  # success, and only errors were asked for


def test_a_message_that_cannot_be_built_is_recorded_not_raised(tmp_path):
    broken = Report(report().request, obr_index=5)
    _, rows, events = run_hook(tmp_path, [Outcome(broken, result(CRIT))])
    assert rows == []
    assert events == [("outbound_failed", "IN1", None)]


@dataclass(frozen=True)
class RoutedReport(Report):
    modality_hint: str | None = None


def test_alike_alerts_of_two_routes_are_both_queued_as_each_route_escalates_its_own(tmp_path):
    # One report under two orders pages a destination once; but when each order matched a
    # different alert route, each alert stays: escalation follows the route on the row.
    config = parse_outbound_config(tomllib.loads("""
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port=1"
[destinations.backup]
endpoint = "tcp:host=127.0.0.1:port=2"
[routes.ct]
type = "alerts"
destinations = ["pager"]
modalities = ["CT"]
[routes.mr]
type = "alerts"
destinations = ["pager"]
modalities = ["MR"]
escalate_to = ["backup"]
"""))
    path = str(tmp_path / "a.sqlite3")
    audit = AuditLog(path)
    ids = iter(f"OUT{n}" for n in range(1, 10))
    hook = OutboundHook(Router(config, control_ids=lambda: next(ids)),
                        now=lambda: dt.datetime(2024, 1, 15, 10, 30))
    text = (TEXT.format(accept="", app="")
            + "OBR|2|P2|F2|70551^MR BRAIN^C4\rOBX|1|TX|X||Large pneumothorax.||||||F\r")
    outcomes = [Outcome(RoutedReport(report().request, 1, modality_hint="CT"), result(CRIT)),
                Outcome(RoutedReport(report().request, 2, modality_hint="MR"), result(CRIT))]
    message = Message(7, "IN1", read_header(text), text, tuple(o.report for o in outcomes))
    assert not [r for r in audit.run_batch(hook(message, outcomes)) if isinstance(r, BaseException)]
    assert [(r.destination, r.route) for r in Outbox.open(path).list()] == [
        ("pager", "ct"), ("pager", "mr")]
