"""``ri-gateway report quality | followups``: aggregates over an audit log of analysed reports.

The audit log is filled the way the gateway fills it: synthetic ORU^R01 messages are stored,
mapped with the inbound mapping and analysed with the real engine, and the inferences are
recorded with the pipeline's own operation.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gateway.audit import AuditLog, ReceivedMessage, inferences_op, status_op
from gateway.cli import main
from gateway.pipeline import engine_configuration
from gateway.analysis import with_configuration
from mappings.inbound import map_oru
from ri_engine import Engine

# Dates in options and in the text output are local time: these read them as UTC.
pytestmark = pytest.mark.usefixtures("utc_zone")

MEASURES = ("mips364", "mips405")


def oru(control_id: str, mrn: str, accession: str, procedure: str, date: str, text: str) -> str:
    code, display = procedure.split("^")
    return "\r".join([
        f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|{date}1000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||TESTPATIENT^SAM||19600101|M",
        f"OBR|1|P{accession}|{accession}|{code}^{display}^C4|||{date}0900|||||||||"
        f"||{accession}|||||||F",
        f"OBX|1|TX|18782-3^Radiology Study observation^LN||{text}||||||F",
    ]) + "\r"


CT_CHEST = "71250^CT CHEST WO CONTRAST"
CT_ABDOMEN = "74176^CT ABDOMEN AND PELVIS WO CONTRAST"
US_ABDOMEN = "76700^US ABDOMEN COMPLETE"
MR_BRAIN = "70553^MRI BRAIN WO AND W CONTRAST"
NODULE_6_MONTHS = ("FINDINGS: 7 mm solid nodule in the right upper lobe. "
                   "IMPRESSION: 7 mm right upper lobe nodule. Recommend follow-up CT chest in "
                   "6 months.")
NODULE_STABLE = "FINDINGS: Stable 7 mm right upper lobe nodule. IMPRESSION: Stable nodule."
SMALL_NODULE = ("FINDINGS: Incidental 4 mm solid nodule in the left lower lobe. "
                "IMPRESSION: 4 mm nodule. No follow-up needed per Fleischner guidelines.")
LIVER_MRI = ("FINDINGS: 2 cm indeterminate lesion in the liver. IMPRESSION: Indeterminate "
             "hepatic lesion. Recommend MRI abdomen in 3 months. Discussed with Dr. Lee at "
             "10:15 on 1/15/2024.")


class Log:
    """An audit log filled by storing, mapping and analysing ORU messages."""

    engine = None

    def __init__(self, path: str) -> None:
        self.path = path
        self.audit = AuditLog(path)
        if Log.engine is None:
            Log.engine = Engine()
        self.configuration = engine_configuration(quality_measures=MEASURES)

    def add(self, control_id, mrn, accession, procedure, date, text, received_at=None):
        return self.add_message(control_id, date,
                                oru(control_id, mrn, accession, procedure, date, text),
                                received_at)

    def add_message(self, control_id, date, message, received_at=None):
        """``received_at``: when the gateway took it (UTC, ``...Z``); 10:00 on ``date``
        without it."""
        iso = received_at or f"{date[:4]}-{date[4:6]}-{date[6:8]}T10:00:00.000Z"
        mid = self.audit.record_received(ReceivedMessage(
            raw=message.encode(), received_at=iso, status="received", ack_code="AA",
            ack_payload=b"ack", control_id=control_id, sending_application="RIS",
            sending_facility="HOSP", message_type="ORU^R01", charset="ascii"))
        for report in map_oru(message):
            result = self.engine.analyze(with_configuration(report.request, self.configuration))
            inferences = [inf.to_json() for pr in result.patient_results for inf in pr.inferences]
            self.audit.run(inferences_op(mid, report.obr_index, report.accession, inferences))
        self.audit.run(status_op(mid, "analysed"))
        return mid


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    log = Log(str(tmp_path_factory.mktemp("reports") / "audit.sqlite3"))
    # Patient A: a CT follow-up done 5 months later (a CT of the chest).
    log.add("A1", "MRN-A", "ACC-A1", CT_CHEST, "20240115", NODULE_6_MONTHS)
    log.add("A2", "MRN-A", "ACC-A2", CT_CHEST, "20240620", NODULE_STABLE)
    # Patient B: the same recommendation, then only an ultrasound: not completed.
    log.add("B1", "MRN-B", "ACC-B1", CT_CHEST, "20240201", NODULE_6_MONTHS)
    log.add("B2", "MRN-B", "ACC-B2", US_ABDOMEN, "20240301", "FINDINGS: Normal liver.")
    # Patient C: an MRI recommended; the only later MRI is another patient's (D).
    log.add("C1", "MRN-C", "ACC-C1", CT_ABDOMEN, "20240115", LIVER_MRI)
    log.add("D1", "MRN-D", "ACC-D1", CT_CHEST, "20240110", SMALL_NODULE)
    log.add("D2", "MRN-D", "ACC-D2", MR_BRAIN, "20240301", "FINDINGS: Normal brain.")
    # Patient E: a CT of the chest recommended, then only a CT of the abdomen and pelvis.
    log.add("E1", "MRN-E", "ACC-E1", CT_CHEST, "20240105", NODULE_6_MONTHS)
    log.add("E2", "MRN-E", "ACC-E2", CT_ABDOMEN, "20240601", "FINDINGS: Normal abdomen.")
    log.audit.close()
    return log.path


def run(*args):
    result = CliRunner().invoke(main, ["report", *args], catch_exceptions=False)
    return result.exit_code, result.output


def followups(log, *args):
    code, out = run("followups", "--db", log, "--json", *args)
    assert code == 0, out
    return {item["control_id"]: item for item in map(json.loads, out.splitlines())}


def test_a_later_exam_of_the_recommended_modality_completes_the_follow_up(log):
    items = followups(log, "--as-of", "2024-12-01")
    assert items["A1"]["status"] == "completed"
    assert items["A1"]["completed_by"] == {"control_id": "A2", "accession": "ACC-A2",
                                           "received_at": "2024-06-20T10:00:00.000Z"}
    assert items["A1"]["modalities"] == ["COMPUTERIZED AXIAL TOMOGRAPHY (PROCEDURE)"]
    assert items["B1"]["status"] == "overdue"  # an ultrasound is not the CT asked for
    assert items["B1"]["completed_by"] is None
    assert items["C1"]["status"] == "overdue"  # an MRI, but of another patient
    assert items["E1"]["status"] == "overdue"  # a CT, but not of the chest


def test_a_follow_up_done_well_before_its_due_date_is_early(log):
    # A1: "follow-up CT chest in 6 months" from 2024-01-15 (due mid-July), done 2024-06-20.
    assert followups(log, "--as-of", "2024-12-01")["A1"]["timing"] == "on_time"
    items = followups(log, "--as-of", "2024-12-01", "--tolerance", "7")
    assert items["A1"]["status"] == "completed" and items["A1"]["timing"] == "early"
    assert items["B1"]["timing"] is None  # not completed
    code, out = run("followups", "--db", log, "--as-of", "2024-12-01", "--tolerance", "7")
    assert code == 0 and out.splitlines()[-1].endswith("0 on time (within 7 days), 1 early, 0 late")
    assert run("followups", "--db", log, "--tolerance", "-1")[0] == 2


def test_a_follow_up_done_long_after_its_due_date_is_late(tmp_path):
    late = Log(str(tmp_path / "audit.sqlite3"))
    late.add("L1", "MRN-L", "ACC-L1", CT_CHEST, "20240115", NODULE_6_MONTHS)
    late.add("L2", "MRN-L", "ACC-L2", CT_CHEST, "20250301", NODULE_STABLE)
    (item,) = followups(late.path, "--as-of", "2025-06-01").values()
    assert (item["status"], item["timing"]) == ("completed", "late")


NODULE_6_TO_12_MONTHS = ("FINDINGS: 6 mm solid nodule in the right upper lobe. IMPRESSION: "
                         "6 mm nodule. Recommend follow-up CT chest in 6 to 12 months.")


def test_a_follow_up_done_within_its_recommended_period_is_on_time(tmp_path):
    # "in 6 to 12 months" from 2024-01-15: any time from mid-July 2024 to mid-January 2025.
    # An exam in September is on time, not early against the period's end.
    period = Log(str(tmp_path / "audit.sqlite3"))
    period.add("P1", "MRN-P", "ACC-P1", CT_CHEST, "20240115", NODULE_6_TO_12_MONTHS)
    period.add("P2", "MRN-P", "ACC-P2", CT_CHEST, "20240910", NODULE_STABLE)
    item = followups(period.path, "--as-of", "2025-06-01")["P1"]
    assert (item["status"], item["timing"]) == ("completed", "on_time")
    # With no tolerance too: September is inside the period.
    item = followups(period.path, "--as-of", "2025-06-01", "--tolerance", "0")["P1"]
    assert item["timing"] == "on_time"
    # Before the period opens (less the tolerance), it is early.
    period.add("Q1", "MRN-Q", "ACC-Q1", CT_CHEST, "20240115", NODULE_6_TO_12_MONTHS)
    period.add("Q2", "MRN-Q", "ACC-Q2", CT_CHEST, "20240415", NODULE_STABLE)
    assert followups(period.path, "--as-of", "2025-06-01")["Q1"]["timing"] == "early"


def test_the_follow_up_exam_is_credited_over_an_earlier_unrelated_one(tmp_path):
    # A CT of the chest a week after a 6-month recommendation (a visit for something else),
    # then the follow-up CT at six months: the second one is the follow-up, done on time.
    two = Log(str(tmp_path / "audit.sqlite3"))
    two.add("F1", "MRN-F", "ACC-F1", CT_CHEST, "20240115", NODULE_6_MONTHS)
    two.add("F2", "MRN-F", "ACC-F2", CT_CHEST, "20240122", NODULE_STABLE)
    two.add("F3", "MRN-F", "ACC-F3", CT_CHEST, "20240712", NODULE_STABLE)
    items = followups(two.path, "--as-of", "2025-06-01")
    assert items["F1"]["completed_by"]["control_id"] == "F3"
    assert items["F1"]["timing"] == "on_time"
    # The exam a week later recommends nothing: it is not tracked, only a candidate.
    assert set(items) == {"F1"}


def test_due_dates_and_communication(log):
    items = followups(log, "--as-of", "2024-03-01")
    assert items["B1"]["status"] == "open"
    assert items["B1"]["due"] > "2024-07-01"
    assert items["C1"]["status"] == "open" and items["C1"]["communicated"] is True
    assert items["B1"]["communicated"] is False
    assert "D1" not in items  # no recommendation in that report
    late = followups(log, "--as-of", "2025-01-01")
    assert late["C1"]["status"] == "overdue"


def test_window_and_status_filters(log):
    items = followups(log, "--since", "2024-01-20", "--until", "2024-06-01",
                      "--as-of", "2024-12-01")
    assert set(items) == {"B1"}
    items = followups(log, "--status", "completed", "--as-of", "2024-12-01")
    assert set(items) == {"A1"}


def test_text_output_ends_with_the_completion_rate(log):
    code, out = run("followups", "--db", log, "--as-of", "2024-12-01")
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == ("4 tracked follow-up recommendation(s): 1 completed, 0 open, "
                         "3 overdue, 0 undated; completed 25% of those done or due by 2024-12-01"
                         "; of the completed with a due date, 1 on time (within 30 days), "
                         "0 early, 0 late")
    completed = next(line for line in lines if line.startswith("completed"))
    assert "ACC-A1" in completed
    assert completed.endswith("by ACC-A2 (A2) 2024-06-20T10:00:00+00:00, on time")
    assert "MRN" not in out  # no patient identifiers in the report


def test_quality_measures_per_denominator(log):
    code, out = run("quality", "--db", log, "--json")
    assert code == 0, out
    rows = {row["denominator"]: row for row in map(json.loads, out.splitlines())}
    nodule = rows["INCIDENTAL PULMONARY NODULE"]
    assert nodule["measure_types"] == ["mips364"]
    counted = sum(nodule[k] for k in ("performanceMet", "performanceNotMet",
                                      "denominatorException", "notEligible"))
    assert counted == 9  # one result per report for a measure that is asked for
    assert nodule["performanceMet"] >= 1
    met, not_met = nodule["performanceMet"], nodule["performanceNotMet"]
    assert nodule["rate"] == pytest.approx(met / (met + not_met))
    code, text = run("quality", "--db", log, "--until", "2024-01-01")
    assert code == 0 and text.startswith("no quality measure results")  # no empty table


def test_a_corrected_report_counts_once_for_its_quality_measures(tmp_path):
    # A correction repeats the report, and the engine evaluates its measures again: the
    # report counted twice in the denominator and the performance rate.
    path = str(tmp_path / "audit.sqlite3")
    versions = Log(path)
    versions.add("Q1", "MRN-Q", "ACC-Q1", CT_CHEST, "20240115", NODULE_6_MONTHS)
    versions.add("Q1C", "MRN-Q", "ACC-Q1", CT_CHEST, "20240116",
                 NODULE_6_MONTHS + " ADDENDUM: Comparison with outside films, unchanged.")
    versions.add("Q2", "MRN-R", "ACC-Q1", CT_CHEST, "20240117", NODULE_6_MONTHS)  # another patient
    versions.audit.close()
    code, out = run("quality", "--db", path, "--json")
    assert code == 0, out
    nodule = {row["denominator"]: row for row in map(json.loads, out.splitlines())}[
        "INCIDENTAL PULMONARY NODULE"]
    assert sum(nodule[k] for k in ("performanceMet", "performanceNotMet", "denominatorException",
                                   "notEligible")) == 2
    # A window that ended before the correction came counts the version it holds.
    code, out = run("quality", "--db", path, "--json", "--until", "2024-01-16")
    nodule = {row["denominator"]: row for row in map(json.loads, out.splitlines())}[
        "INCIDENTAL PULMONARY NODULE"]
    assert sum(nodule[k] for k in ("performanceMet", "performanceNotMet", "denominatorException",
                                   "notEligible")) == 1


def test_a_database_the_user_may_not_reach_is_not_called_missing(tmp_path, monkeypatch):
    # An admin running the CLI as another user than the gateway's (the database directory
    # is owner-only) was told there was no audit database at the path the gateway uses.
    import os

    path = str(tmp_path / "audit.sqlite3")
    AuditLog(path).close()
    real_stat = os.stat

    def stat(target, *args, **kwargs):
        if os.fspath(target) == path:
            raise PermissionError(13, "Permission denied", path)
        return real_stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    result = CliRunner().invoke(main, ["report", "critical", "--db", path])
    assert result.exit_code == 3, result.output
    assert "Permission denied" in result.output and "no audit database" not in result.output


def test_reports_need_an_existing_database(tmp_path):
    result = CliRunner().invoke(main, ["report", "quality", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 3 and "no audit database" in result.output
    result = CliRunner().invoke(main, ["report", "followups", "--db", str(tmp_path / "x.db"),
                                       "--as-of", "soon"])
    assert result.exit_code == 2



def test_reports_of_patients_without_a_recommendation_are_not_mapped(log, monkeypatch):
    import mappings.inbound

    mapped = []
    real = mappings.inbound.map_oru

    def counting(text, config=None):
        mapped.append(text.split("|")[9])  # MSH-10
        return real(text, config)

    monkeypatch.setattr(mappings.inbound, "map_oru", counting)
    assert followups(log, "--as-of", "2024-12-01")["A1"]["status"] == "completed"
    assert "D1" not in mapped and "D2" not in mapped  # patient D recommended nothing
    assert "A2" in mapped and sorted(mapped) == sorted(set(mapped))  # each one mapped once


def test_a_corrected_report_replaces_the_earlier_version(tmp_path):
    """A correction or an addendum is another message with the same accession that repeats
    the recommendation: one follow-up, tracked once, and never completed by itself."""
    path = str(tmp_path / "audit.sqlite3")
    versions = Log(path)
    versions.add("F1", "MRN-F", "ACC-F1", CT_CHEST, "20240115", NODULE_6_MONTHS)
    versions.add("F1C", "MRN-F", "ACC-F1", CT_CHEST, "20240116",
                 NODULE_6_MONTHS + " ADDENDUM: Comparison with outside films, unchanged.")
    # The same accession number at another patient is not a version of it.
    versions.add("G1", "MRN-G", "ACC-F1", CT_CHEST, "20240117", NODULE_STABLE)
    versions.audit.close()
    items = followups(path, "--as-of", "2024-12-01")
    assert set(items) == {"F1C"}
    assert items["F1C"]["status"] == "overdue" and items["F1C"]["completed_by"] is None
    code, out = run("followups", "--db", path, "--as-of", "2024-12-01")
    assert code == 0 and out.splitlines()[-1].startswith("1 tracked follow-up")
    # A window that ended before the correction came keeps the version it holds.
    assert set(followups(path, "--as-of", "2024-12-01", "--until", "2024-01-16")) == {"F1"}


def test_a_recommendation_said_twice_in_a_report_is_one_follow_up(tmp_path):
    """Findings and impression often both say it; two different ones stay two."""
    path = str(tmp_path / "audit.sqlite3")
    twice = Log(path)
    twice.add("H1", "MRN-H", "ACC-H1", CT_CHEST, "20240115",
              "FINDINGS: 7 mm solid nodule in the right upper lobe; follow-up CT chest in "
              "6 months is recommended. IMPRESSION: 7 mm right upper lobe nodule. Recommend "
              "follow-up CT chest in 6 months.")
    twice.add("H2", "MRN-I", "ACC-H2", CT_CHEST, "20240115",
              "FINDINGS: 7 mm solid nodule in the right upper lobe. 2 cm indeterminate lesion "
              "in the liver. IMPRESSION: Recommend follow-up CT chest in 6 months. Recommend "
              "MRI abdomen in 3 months.")
    twice.audit.close()
    code, out = run("followups", "--db", path, "--as-of", "2024-12-01", "--json")
    assert code == 0, out
    items = [(item["control_id"], tuple(item["modalities"]))
             for item in map(json.loads, out.splitlines())]
    assert sorted(items) == [("H1", ("COMPUTERIZED AXIAL TOMOGRAPHY (PROCEDURE)",)),
                             ("H2", ("COMPUTERIZED AXIAL TOMOGRAPHY (PROCEDURE)",)),
                             ("H2", ("MAGNETIC RESONANCE IMAGING (PROCEDURE)",))]


PNEUMOTHORAX = ("FINDINGS: Large right pneumothorax with mediastinal shift. "
                "IMPRESSION: Large right pneumothorax.")


def test_critical_results_without_outbound_were_never_alerted(tmp_path):
    # No [routes] ever configured: the audit log has no outbox, and nothing was alerted.
    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("C1", "MRN1", "ACC1", CT_CHEST, "20240110", PNEUMOTHORAX)
    log.add("C2", "MRN2", "ACC2", CT_CHEST, "20240111", NODULE_STABLE)
    log.add("C3", "MRN3", "ACC3", CT_CHEST, "20240112",
            PNEUMOTHORAX + " Discussed with Dr. Lee at 10:15 on 1/12/2024.")
    code, text = run("critical", "--db", log.path, "--json")
    rows = [json.loads(line) for line in text.splitlines()]
    assert code == 0 and [r["control_id"] for r in rows] == ["C1", "C3"]
    assert {r["status"] for r in rows} == {"not_alerted"}
    assert [r["communicated"] for r in rows] == [False, True]
    assert [r["unconfirmed"] for r in rows] == [True, False]
    assert rows[0]["results"] == ["TENSION PNEUMOTHORAX"] and rows[0]["alerts"] == 0
    code, text = run("critical", "--db", log.path, "--since", "2024-01-11")
    assert code == 0 and text.splitlines()[-1].startswith(
        "1 report(s) with critical results: 0 alerted, 0 pending, 0 failed, 1 not alerted; "
        "time to alert median -")
    code, text = run("critical", "--db", log.path, "--until", "2024-01-01")
    assert code == 0 and text == ("0 report(s) with critical results: 0 alerted, 0 pending, "
                                  "0 failed, 0 not alerted; time to alert median -, 90th "
                                  "percentile -, longest -; communication documented in 0; 0 "
                                  "with neither a delivered alert nor documented "
                                  "communication; 0 withdrawn by a correction or "
                                  "cancellation\n")
    missing = CliRunner().invoke(main, ["report", "critical", "--db", str(tmp_path / "x.db")])
    assert missing.exit_code == 3 and "no audit database" in missing.output


CRITICAL_AND_BIRADS = ("FINDINGS: Large left pneumothorax. Irregular spiculated mass in the "
                      "left breast. IMPRESSION: Large left pneumothorax. BI-RADS 5: Highly "
                      "suggestive of malignancy.")


def _alerted(log: Log, config_path: str, control_id: str, text: str, date: str) -> None:
    """Store, analyse and route one report as the gateway does, and deliver its alerts."""
    import datetime as dt

    from gateway.config import load_settings
    from gateway.outbox import Outbox
    from gateway.routing import Router, outbound_config
    from mappings.header import read_header

    mid = log.add(control_id, "MRN-" + control_id, "ACC-" + control_id, CT_CHEST, date, text)
    message = oru(control_id, "MRN-" + control_id, "ACC-" + control_id, CT_CHEST, date, text)
    router = Router(outbound_config(load_settings(config_path, {}, {}).sections))
    outbox = Outbox.open(log.path)
    for report in map_oru(message):
        result = log.engine.analyze(with_configuration(report.request, log.configuration))
        planned = router.plan(inbound_text=message, header=read_header(message), report=report,
                              result=result, now=dt.datetime(2024, 1, 15, 10, 5))
        outbox.enqueue(planned, source_control_id=control_id, message_id=mid)
    for row in outbox.list():
        if row.status == "pending":
            outbox.record_delivered(row, "AA")
    outbox.conn.close()


def test_an_alert_counts_for_a_critical_result_when_it_carries_one(tmp_path):
    # Two alert routes page the same pager: one alerting on scores, listed first, and one on
    # critical results. A report with both gets one page carrying both, on the outbox row of
    # the first route: the pneumothorax was paged. A report whose pages carried only its
    # BI-RADS is not alerted for its pneumothorax, with or without the configuration at hand.
    config = tmp_path / "gateway.toml"
    config.write_text("""
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port=1"
[destinations.breast]
endpoint = "tcp:host=127.0.0.1:port=2"
[routes.scores]
type = "alerts"
destinations = ["pager"]
alert_on = ["scores"]
[routes.critical]
type = "alerts"
destinations = ["pager"]
alert_on = ["critical"]
sending_applications = ["RIS"]
[routes.breast-scores]
type = "alerts"
destinations = ["breast"]
alert_on = ["scores"]
""")
    log = Log(str(tmp_path / "audit.sqlite3"))
    _alerted(log, str(config), "BOTH1", CRITICAL_AND_BIRADS, "20240115")
    # This sender's reports match only the score routes (critical needs RIS).
    config.write_text(config.read_text().replace('sending_applications = ["RIS"]',
                                                 'sending_applications = ["NOBODY"]'))
    _alerted(log, str(config), "SCORE1", CRITICAL_AND_BIRADS, "20240116")
    log.audit.close()
    for args in (["--config", str(config)], []):
        code, text = run("critical", "--db", log.path, "--json", *args)
        assert code == 0, text
        rows = {r["control_id"]: r for r in map(json.loads, text.splitlines())}
        assert {c: (r["status"], r["alerts"]) for c, r in rows.items()} == {
            "BOTH1": ("alerted", 1), "SCORE1": ("not_alerted", 0)}, args


def test_time_to_alert_summary_uses_the_delivered_alerts_only():
    from gateway.critical_results import CriticalReport, summarise

    def item(status, seconds=None, communicated=False):
        return CriticalReport(1, "C", "2024-01-01T00:00:00.000Z", (), ("X",), communicated,
                              status, 1, int(seconds is not None), 0, None, seconds)

    reports = [item("alerted", float(s)) for s in range(1, 11)]
    reports += [item("pending"), item("failed", communicated=True), item("not_alerted")]
    total = summarise(reports)
    assert (total.median_seconds, total.p90_seconds, total.max_seconds) == (5.5, 9.0, 10.0)
    assert total.counts == {"alerted": 10, "pending": 1, "failed": 1, "not_alerted": 1}
    assert (total.reports, total.communicated, total.unconfirmed) == (13, 1, 2)


def test_report_critical_finds_the_alerts_without_reading_the_whole_outbox(tmp_path):
    """The outbox keeps every result and alert sent until purged: the alerts of the reports
    with critical results are found through an index, on an outbox from before it too."""
    import sqlite3

    from gateway.critical_results import critical_results
    from gateway.outbox import Outbox
    from gateway.reports import Window

    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("C1", "MRN1", "ACC1", CT_CHEST, "20240110", PNEUMOTHORAX)
    log.audit.close()
    Outbox.open(log.path).conn.close()  # the gateway's start makes the outbox
    with sqlite3.connect(log.path) as conn:  # an outbox from an earlier version: no index
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                    "AND tbl_name = 'outbox' AND sql IS NOT NULL").fetchall():
            conn.execute(f"DROP INDEX {name}")
    Outbox.open(log.path).conn.close()  # the next start adds what it lacks
    audit = AuditLog(log.path, readonly=True)
    statements: list[str] = []
    audit.conn.set_trace_callback(statements.append)
    assert [r.control_id for r in critical_results(audit, Window())] == ["C1"]
    audit.conn.set_trace_callback(None)
    reads = [s for s in statements if "FROM outbox" in s and s.lstrip().startswith("SELECT")]
    assert reads
    for statement in reads:
        plan = " ".join(row[3] for row in audit.conn.execute("EXPLAIN QUERY PLAN " + statement))
        assert "SCAN" not in plan, (statement, plan)
    audit.close()


def test_reports_read_one_kind_of_inference_without_scanning_them_all(tmp_path):
    """A year of reports holds millions of inferences: each report command must find the kind
    it reads through an index, on an audit log from before that index too."""
    from gateway.critical_results import critical_results
    from gateway.reports import Window, quality_summary

    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("C1", "MRN1", "ACC1", CT_CHEST, "20240110", PNEUMOTHORAX)
    log.audit.conn.execute("DROP INDEX IF EXISTS idx_inferences_kind_message_id")  # an older log
    log.audit.close()
    AuditLog(log.path).close()  # a start of this version adds it
    audit = AuditLog(log.path, readonly=True)
    statements: list[str] = []
    audit.conn.set_trace_callback(statements.append)
    critical_results(audit, Window(since="2024-01-01T00:00:00.000Z"))
    quality_summary(audit, Window(since="2024-01-01T00:00:00.000Z"))
    audit.conn.set_trace_callback(None)
    reads = [s for s in statements if "FROM inferences" in s and s.lstrip().startswith("SELECT")]
    assert reads
    for statement in reads:
        plan = " ".join(row[3] for row in audit.conn.execute("EXPLAIN QUERY PLAN " + statement))
        assert "SCAN i" not in plan.replace("SCAN i USING", "") and "SCAN inferences" not in plan, (
            statement, plan)
    audit.close()


def test_two_hospitals_naming_their_authority_by_its_oid_alone_are_two_patients(tmp_path):
    """IHE PIX-style feeds name the assigning authority by its OID (PID-3.4 ``&OID&ISO``,
    no namespace id): the same number from two hospitals read as one patient (both
    authorities empty), and the other hospital's patient's CT completed the follow-up."""
    path = str(tmp_path / "audit.sqlite3")
    log = Log(path)
    for control_id, authority, date, text in (
            ("K1", "1.2.3.4.5", "20240115", NODULE_6_MONTHS),
            ("K2", "1.9.8.7.6", "20240712", NODULE_STABLE),  # another hospital's patient 5555
            ("L1", "1.2.3.4.5", "20240115", NODULE_6_MONTHS),
            ("L2", "1.2.3.4.5", "20240712", NODULE_STABLE)):  # the same hospital's patient
        message = oru(control_id, "X", "ACC-" + control_id, CT_CHEST, date, text).replace(
            "X^^^HOSP^MR", f"{5555 if control_id[0] == 'K' else 6666}^^^&{authority}&ISO^MR")
        log.add_message(control_id, date, message)
    log.audit.close()
    items = followups(path, "--as-of", "2024-12-01")
    assert items["K1"]["status"] == "overdue" and items["K1"]["completed_by"] is None
    assert items["L1"]["status"] == "completed"
    assert items["L1"]["completed_by"]["control_id"] == "L2"


def test_a_report_without_an_accession_is_completed_by_a_later_exam_without_one(tmp_path):
    """A feed that fills none of the accession fields (OBR-18, OBR-3, ORC-3): the later CT
    of the patient has no accession either, and was taken for a version of the
    recommending report (the same accession: none), so no follow-up was ever completed."""
    path = str(tmp_path / "audit.sqlite3")
    log = Log(path)
    for control_id, date, text in (("M1", "20240115", NODULE_6_MONTHS),
                                   ("M2", "20240712", NODULE_STABLE)):
        message = oru(control_id, "MRN-M", "NOACC", CT_CHEST, date, text).replace(
            "PNOACC", "").replace("NOACC", "")
        log.add_message(control_id, date, message)
    log.audit.close()
    items = followups(path, "--as-of", "2024-12-01")
    assert set(items) == {"M1"} and items["M1"]["accession"] is None
    assert items["M1"]["status"] == "completed"
    assert items["M1"]["completed_by"]["control_id"] == "M2"


def test_report_critical_reads_the_patients_only_of_reports_that_share_an_accession(tmp_path):
    """Versions are matched by accession and patient: a report under an accession no other
    one has is not read again (a year of critical results is thousands of messages, each
    read and decoded one query at a time)."""
    from gateway.critical_results import critical_results
    from gateway.reports import Window
    from mappings.inbound import patient_identities

    log = Log(str(tmp_path / "audit.sqlite3"))
    for n in range(6):
        log.add(f"P{n}", f"MRN{n}", f"ACC{n}", CT_CHEST, f"2024011{n}", PNEUMOTHORAX)
    log.add("P0C", "MRN0", "ACC0", CT_CHEST, "20240119", PNEUMOTHORAX + " Addendum: no change.")
    log.audit.close()
    audit = AuditLog(log.path, readonly=True)
    statements: list[str] = []
    audit.conn.set_trace_callback(statements.append)
    found = critical_results(audit, Window(), patients=lambda raw, charset: patient_identities(
        raw.decode(charset or "ascii")))
    audit.conn.set_trace_callback(None)
    audit.close()
    assert [(r.control_id, r.versions) for r in found] == [
        ("P0", ("P0", "P0C")), ("P1", ("P1",)), ("P2", ("P2",)), ("P3", ("P3",)),
        ("P4", ("P4",)), ("P5", ("P5",))]
    raw_reads = [s for s in statements if "raw" in s and "FROM messages" in s]
    assert len(raw_reads) == 1, raw_reads  # the two versions of ACC0, in one query


def test_an_addendum_under_one_order_of_a_report_filed_under_two_replaces_it(tmp_path):
    """CT chest and abdomen read together: one report filed under both orders, then an
    addendum sent under the first order's accession only. The addendum replaced the report
    under that accession, and the report's text under the second order was tracked as well:
    two follow-ups where one was asked for (report critical takes them as one report)."""
    path = str(tmp_path / "audit.sqlite3")
    log = Log(path)
    both = oru("Q1", "MRN-Q", "ACC-Q1", CT_CHEST, "20240115", NODULE_6_MONTHS)
    second = [line.replace("ACC-Q1", "ACC-Q2").replace("OBR|1|", "OBR|2|")
              .replace("71250^CT CHEST WO CONTRAST", "74176^CT ABDOMEN AND PELVIS WO CONTRAST")
              for line in both.split("\r") if line.startswith(("OBR", "OBX"))]
    log.add_message("Q1", "20240115", both + "\r".join(second) + "\r")
    log.add("Q1A", "MRN-Q", "ACC-Q1", CT_CHEST, "20240116",
            NODULE_6_MONTHS + " ADDENDUM: Comparison with outside films, unchanged.")
    log.audit.close()
    items = followups(path, "--as-of", "2024-12-01")
    assert set(items) == {"Q1A"} and items["Q1A"]["status"] == "overdue"
    code, out = run("followups", "--db", path, "--as-of", "2024-12-01")
    assert code == 0 and out.splitlines()[-1].startswith("1 tracked follow-up")


def two_orders(control_id: str, mrn: str, date: str, text: str) -> str:
    """CT chest and CT abdomen/pelvis read together: one report, its text under each OBR."""
    first = oru(control_id, mrn, f"ACC-{control_id}1", CT_CHEST, date, text)
    second = [line.replace(f"ACC-{control_id}1", f"ACC-{control_id}2").replace("OBR|1|", "OBR|2|")
              .replace(CT_CHEST, CT_ABDOMEN)
              for line in first.split("\r") if line.startswith(("OBR", "OBX"))]
    return first + "\r".join(second) + "\r"


def quality(path: str) -> dict[str, dict]:
    code, out = run("quality", "--db", path, "--json")
    assert code == 0, out
    return {row["denominator"]: {k: row[k] for k in ("performanceMet", "performanceNotMet",
                                                     "denominatorException", "notEligible")}
            for row in map(json.loads, out.splitlines())}


def test_a_report_filed_under_several_orders_counts_once_for_its_quality_measures(tmp_path):
    # One report under a CT chest and a CT abdomen order is evaluated once per order: the
    # nodule measure met under the chest order and not eligible under the abdomen's, the
    # abdominal lesion measure not eligible twice. It counted as two reports in every
    # denominator; as followups and critical do, it is one report, eligible where any order
    # is. Two orders of one message with different reports stay two reports.
    path = str(tmp_path / "audit.sqlite3")
    log = Log(path)
    log.add_message("M1", "20240115", two_orders("M1", "MRN-M", "20240115", NODULE_6_MONTHS))
    different = two_orders("M2", "MRN-N", "20240116", NODULE_6_MONTHS).split("\r")
    different[-2] = different[-2].replace("7 mm", "8 mm")  # the second order's own report
    log.add_message("M2", "20240116", "\r".join(different))
    log.audit.close()
    assert quality(path) == {
        "INCIDENTAL PULMONARY NODULE": {"performanceMet": 2, "performanceNotMet": 0,
                                        "denominatorException": 0, "notEligible": 1},
        "INCIDENTAL ABDOMINAL LESION": {"performanceMet": 0, "performanceNotMet": 0,
                                        "denominatorException": 0, "notEligible": 3}}


@pytest.mark.parametrize(("first", "second", "same"), [
    # One authority written with and without its OID: one patient.
    (("MRN1^^^GENHOSP^MR", "HOSP"), ("MRN1^^^GENHOSP&1.2.3.4&ISO^MR", "HOSP"), True),
    (("MRN1^^^&1.2.3.4&ISO^MR", "HOSP"), ("MRN1^^^GENHOSP&1.2.3.4&ISO^MR", "HOSP"), True),
    # Both give a universal id: it decides, whatever the namespace says.
    (("MRN1^^^GENHOSP&1.2.3.4&ISO^MR", "HOSP"), ("MRN1^^^GENHOSP&5.6.7.8&ISO^MR", "HOSP"), False),
    # A bare number is the sending facility's (MSH-4): the same facility's MRN, one patient;
    (("123", "HOSP"), ("123^^^HOSP^MR", "EAST"), True),
    (("123", "HOSP^2.16.840.1^ISO"), ("123^^^&2.16.840.1&ISO", "EAST"), True),
    # another facility's bare number, or another authority's, is another patient.
    (("123", "HOSP"), ("123", "EAST"), False),
    (("123", "HOSP"), ("123^^^EAST^MR", "HOSP"), False),
])
def test_a_patient_is_an_identifier_of_one_assigning_authority(tmp_path, first, second, same):
    path = str(tmp_path / "audit.sqlite3")
    log = Log(path)
    for (pid3, facility), control_id, date, text in (
            (first, "F1", "20240115", NODULE_6_MONTHS), (second, "F2", "20240712", NODULE_STABLE)):
        message = oru(control_id, "X", "ACC-" + control_id, CT_CHEST, date, text).replace(
            "X^^^HOSP^MR", pid3).replace("|RIS|HOSP|", f"|RIS|{facility}|", 1)
        log.add_message(control_id, date, message)
    log.audit.close()
    item = followups(path, "--as-of", "2024-12-01")["F1"]
    assert (item["status"], (item["completed_by"] or {}).get("control_id")) == (
        ("completed", "F2") if same else ("overdue", None))
