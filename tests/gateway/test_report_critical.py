"""``ri-gateway report critical``: critical results withdrawn by a correction or a
cancellation, escalated copies, and the window's end, over an audit log filled as the
gateway fills it (:class:`test_reports.Log`)."""

from __future__ import annotations

import pytest

import json

from gateway.audit import ReceivedMessage, status_op
from test_reports import CT_CHEST, NODULE_STABLE, PNEUMOTHORAX, Log, oru, run

# Dates in options and in the text output are local time: these read them as UTC.
pytestmark = pytest.mark.usefixtures("utc_zone")


def corrected(log: Log, control_id: str, mrn: str, accession: str, date: str, text: str) -> int:
    message = oru(control_id, mrn, accession, CT_CHEST, date, text)
    return log.add_message(control_id, date, message.replace(
        f"{accession}|||||||F", f"{accession}|||||||C"))


def cancelled(log: Log, control_id: str, mrn: str, accession: str, date: str,
              status: str = "X") -> int:
    """The RIS sends the order again with result status X (HL7 0123: order canceled), or
    another status without a result (``status``: I in progress, S scheduled); the gateway
    stores it and analyses nothing of it, as it does any group without a result."""
    message = "\r".join(line for line in oru(control_id, mrn, accession, CT_CHEST, date,
                                             "x").split("\r") if not line.startswith("OBX"))
    message = message.replace(f"{accession}|||||||F", f"{accession}|||||||{status}")
    mid = log.audit.record_received(ReceivedMessage(
        raw=message.encode(), received_at=f"{date[:4]}-{date[4:6]}-{date[6:8]}T10:00:00.000Z",
        status="received", ack_code="AA", ack_payload=b"ack", control_id=control_id,
        sending_application="RIS", sending_facility="HOSP", message_type="ORU^R01",
        charset="ascii"))
    log.audit.run(status_op(mid, "skipped", reports=1))
    return mid


def critical(path: str, *args: str) -> dict[str, dict]:
    code, out = run("critical", "--db", path, "--json", *args)
    assert code == 0, out
    return {row["control_id"]: row for row in map(json.loads, out.splitlines())}


def test_a_critical_result_withdrawn_by_a_correction_or_a_cancellation_is_not_chased(tmp_path):
    # W1's pneumothorax was never paged (no alert route); its correction W2 says the lungs
    # are fine. K1's order was cancelled after its report (K2, result status X). Both were
    # listed as critical, unconfirmed, one to chase for ever. A cancellation of another
    # patient's order under the same accession number (O2) withdraws nothing; neither does
    # a correction of another patient's report.
    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("W1", "MRN-W", "ACC-W", CT_CHEST, "20240110", PNEUMOTHORAX)
    corrected(log, "W2", "MRN-W", "ACC-W", "20240112", NODULE_STABLE)
    log.add("K1", "MRN-K", "ACC-K", CT_CHEST, "20240110", PNEUMOTHORAX)
    cancelled(log, "K2", "MRN-K", "ACC-K", "20240113")
    log.add("O1", "MRN-O", "ACC-O", CT_CHEST, "20240110", PNEUMOTHORAX)
    cancelled(log, "O2", "MRN-OTHER", "ACC-O", "20240113")
    corrected(log, "O3", "MRN-OTHER", "ACC-O", "20240113", NODULE_STABLE)
    log.audit.close()
    rows = critical(log.path)
    assert {c: (r["status"], r["withdrawn"], r["withdrawn_by"], r["unconfirmed"])
            for c, r in rows.items()} == {
        "W1": ("not_alerted", "corrected", "W2", False),
        "K1": ("not_alerted", "cancelled", "K2", False),
        "O1": ("not_alerted", None, None, True)}
    assert rows["W1"]["results"] == ["TENSION PNEUMOTHORAX"]
    code, text = run("critical", "--db", log.path)
    lines = text.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["not_alerted"] * 3
    assert lines[1].endswith("withdrawn: corrected by W2")
    assert lines[2].endswith("withdrawn: cancelled by K2")
    assert lines[-1].endswith("1 with neither a delivered alert nor documented "
                              "communication; 2 withdrawn by a correction or cancellation")
    # A window that ended before the correction and the cancellation came keeps the critical
    # results it held, as it keeps the version it holds.
    before = critical(log.path, "--until", "2024-01-11")
    assert {c: (r["withdrawn"], r["unconfirmed"]) for c, r in before.items()} == {
        "W1": (None, True), "K1": (None, True), "O1": (None, True)}
    between = critical(log.path, "--until", "2024-01-12T12:00:00")
    assert {c: r["withdrawn"] for c, r in between.items()} == {
        "W1": "corrected", "K1": None, "O1": None}


def test_a_correction_that_keeps_one_of_two_critical_results_withdraws_the_other(tmp_path):
    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("P1", "MRN-P", "ACC-P", CT_CHEST, "20240110",
            PNEUMOTHORAX + " Acute pulmonary embolism in the right lower lobe artery.")
    corrected(log, "P2", "MRN-P", "ACC-P", "20240111", PNEUMOTHORAX)
    log.audit.close()
    (row,) = critical(log.path).values()
    assert (row["withdrawn"], row["versions"], row["withdrawn_results"]) == (
        None, ["P1", "P2"], ["PULMONARY EMBOLISM"])
    assert row["results"] == ["TENSION PNEUMOTHORAX", "PULMONARY EMBOLISM"]


def test_the_measures_of_an_order_cancelled_after_the_window_still_count_in_it(tmp_path):
    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("Q1", "MRN-Q", "ACC-Q", CT_CHEST, "20240110",
            "FINDINGS: Incidental 4 mm solid nodule in the left lower lobe. IMPRESSION: 4 mm "
            "nodule. No follow-up needed per Fleischner guidelines.")
    cancelled(log, "Q2", "MRN-Q", "ACC-Q", "20240301")
    log.audit.close()

    def counted(*args: str) -> int:
        code, out = run("quality", "--db", log.path, "--json", *args)
        assert code == 0, out
        return sum(row["performanceMet"] + row["performanceNotMet"] + row["notEligible"]
                   + row["denominatorException"] for row in map(json.loads, out.splitlines()))

    assert counted() == 0
    assert counted("--until", "2024-02-01") > 0


def test_an_escalated_copy_is_the_same_alert(tmp_path):
    # The pager refused the alert; its copy reached the backup pager. One alert, delivered.
    from gateway.outbox import Outbox
    from gateway.routing import PlannedMessage

    log = Log(str(tmp_path / "audit.sqlite3"))
    mid = log.add("E1", "MRN-E", "ACC-E", CT_CHEST, "20240110", PNEUMOTHORAX)
    log.audit.close()
    payload = ("MSH|^~\\&|RI-GATEWAY|RIGW|PAGER||20240110100500||ORU^R01|A1|P|2.5.1\r"
               "OBX|1|CWE|RI-CRIT^Critical result^RIGW|1|x^PNEUMOTHORAX|||AA|||F\r").encode()
    outbox = Outbox.open(log.path)
    outbox.enqueue([PlannedMessage("pager", "crit", "alerts", "A1", payload)],
                   source_control_id="E1", message_id=mid)
    (row,) = outbox.list()
    copy = PlannedMessage("backup", "crit", "alerts", "A2", payload.replace(b"|A1|", b"|A2|"))
    assert outbox.record_failed(row, "AR", retry_at=None, ack_code="AR", escalate=[copy])
    (sent,) = [r for r in outbox.list() if r.escalated_from == row.id]
    outbox.record_delivered(sent, "AA")
    outbox.conn.close()
    (report,) = critical(log.path).values()
    assert (report["status"], report["alerts"], report["delivered"], report["dead_lettered"]
            ) == ("alerted", 1, 1, 0)


def test_only_the_reports_whose_order_was_cancelled_are_mapped_again(tmp_path):
    """Whether a critical report's order was cancelled was asked of every report, each
    stored message read and mapped whole, one query at a time (a year of critical results
    is thousands of them), though only those under the accession of a cancellation can be."""
    from gateway.audit import AuditLog
    from gateway.critical_results import critical_results
    from gateway.report_versions import StoredReport
    from gateway.reports import Window
    from mappings.inbound import map_oru, patient_identities

    log = Log(str(tmp_path / "audit.sqlite3"))
    for n in range(5):
        mid = log.add(f"P{n}", f"MRN{n}", f"ACC{n}", CT_CHEST, f"2024011{n}", PNEUMOTHORAX)
        log.audit.run(status_op(mid, "analysed", reports=1))  # as the gateway records it
    cancelled(log, "P0X", "MRN0", "ACC0", "20240120")
    log.audit.close()
    mapped: list[str] = []

    def read(raw: bytes, charset: str | None) -> dict[int, StoredReport]:
        text = raw.decode(charset or "ascii")
        mapped.append(text.split("|", 10)[9])  # MSH-10
        identities = patient_identities(text)
        return {r.obr_index: StoredReport(identities.get(r.obr_index, frozenset()),
                                          r.accession, None, cancelled=r.result_status == "X")
                for r in map_oru(text)}

    audit = AuditLog(log.path, readonly=True)
    found = critical_results(audit, Window(), read=read, patients=lambda raw, charset:
                             patient_identities(raw.decode(charset or "ascii")))
    audit.close()
    assert [(r.control_id, r.withdrawn, r.withdrawn_by) for r in found] == [
        ("P0", "cancelled", "P0X"), ("P1", None, None), ("P2", None, None),
        ("P3", None, None), ("P4", None, None)]
    assert sorted(mapped) == ["P0", "P0X"]  # the cancellation, and the report it cancels


def test_versions_linked_through_a_version_that_names_the_authority_both_ways_are_one_report(
        tmp_path):
    # T1 names the hospital by namespace, T2 by namespace and OID, T3 by OID alone (as a
    # PIX-fed interface does): T2 is a version of T1 and T3 of T2, though T1 and T3 share
    # nothing to compare. T2 was not filed under its own authority, so T3 was a second
    # report with a second critical result to chase.
    log = Log(str(tmp_path / "audit.sqlite3"))
    for control_id, pid3, date in (("T1", "123^^^GENHOSP^MR", "20240110"),
                                   ("T2", "123^^^GENHOSP&1.2.3&ISO^MR", "20240111"),
                                   ("T3", "123^^^&1.2.3&ISO^MR", "20240112")):
        log.add_message(control_id, date, oru(control_id, "123", "ACC-T", CT_CHEST, date,
                                              PNEUMOTHORAX).replace("|123^^^HOSP^MR|",
                                                                    f"|{pid3}|"))
    log.audit.close()
    rows = critical(log.path)
    assert {c: r["versions"] for c, r in rows.items()} == {"T1": ["T1", "T2", "T3"]}


def test_a_cancelled_order_reinstated_later_no_longer_withdraws_its_critical_result(tmp_path):
    # R1's order was cancelled (R2, result status X) and then reinstated: the RIS sent it
    # again in progress (R3, I). Its critical result stood withdrawn for ever, nobody's to
    # chase. The latest message of the order decides: S1's order was reinstated (S3,
    # scheduled) and cancelled again (S4), and stays withdrawn, by S4. Another patient's
    # order under the same accession number reinstates nothing (T3).
    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("R1", "MRN-R", "ACC-R", CT_CHEST, "20240110", PNEUMOTHORAX)
    cancelled(log, "R2", "MRN-R", "ACC-R", "20240111")
    cancelled(log, "R3", "MRN-R", "ACC-R", "20240112", status="I")
    log.add("S1", "MRN-S", "ACC-S", CT_CHEST, "20240110", PNEUMOTHORAX)
    cancelled(log, "S2", "MRN-S", "ACC-S", "20240111")
    cancelled(log, "S3", "MRN-S", "ACC-S", "20240112", status="S")
    cancelled(log, "S4", "MRN-S", "ACC-S", "20240113")
    log.add("T1", "MRN-T", "ACC-T", CT_CHEST, "20240110", PNEUMOTHORAX)
    cancelled(log, "T2", "MRN-T", "ACC-T", "20240111")
    cancelled(log, "T3", "MRN-OTHER", "ACC-T", "20240112", status="I")
    log.audit.close()
    rows = critical(log.path)
    assert {c: (r["withdrawn"], r["withdrawn_by"], r["unconfirmed"]) for c, r in rows.items()} == {
        "R1": (None, None, True), "S1": ("cancelled", "S4", False),
        "T1": ("cancelled", "T2", False)}
    # A window that ended before the reinstatement keeps the cancellation it held.
    before = critical(log.path, "--until", "2024-01-11T12:00:00")
    assert {c: r["withdrawn_by"] for c, r in before.items()} == {"R1": "R2", "S1": "S2",
                                                                  "T1": "T2"}
    between = critical(log.path, "--until", "2024-01-12T12:00:00")
    assert {c: r["withdrawn_by"] for c, r in between.items()} == {"R1": None, "S1": None,
                                                                   "T1": "T2"}


def test_the_latest_of_a_correction_and_a_cancellation_names_the_withdrawal(tmp_path):
    # The order was cancelled (U2), reinstated and reported again without the critical
    # result (U3): the correction is what withdraws it now, not the cancellation before.
    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("U1", "MRN-U", "ACC-U", CT_CHEST, "20240110", PNEUMOTHORAX)
    cancelled(log, "U2", "MRN-U", "ACC-U", "20240111")
    corrected(log, "U3", "MRN-U", "ACC-U", "20240112", NODULE_STABLE)
    log.audit.close()
    (row,) = critical(log.path).values()
    assert (row["withdrawn"], row["withdrawn_by"]) == ("corrected", "U3")
