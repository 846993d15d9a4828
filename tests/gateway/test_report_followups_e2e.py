"""``ri-gateway report followups`` over the audit log of a real ``serve``.

Reports arrive over MLLP as an interface engine sends them (``ri-gateway send``), the
gateway analyses them with the real engine, and the quality team's report is read with the
command line, as a quality lead runs it each month.
"""

from __future__ import annotations

import json

import pytest

from test_pipeline_e2e import BASE, free_port, rig, wait_for  # noqa: F401
from test_report_critical_e2e import events

NODULE = ["FINDINGS: 7 mm solid nodule in the right upper lobe.",
          "IMPRESSION: 7 mm right upper lobe nodule. Recommend follow-up CT chest in 6 months."]
STABLE = ["FINDINGS: Stable 7 mm right upper lobe nodule.", "IMPRESSION: Stable nodule."]
CT_CHEST = "71250^CT CHEST WO CONTRAST"
CT_ABDOMEN = "74176^CT ABDOMEN AND PELVIS WO CONTRAST"


def order(n: int, accession: str, procedure: str, date: str, lines: list[str],
          status: str = "F") -> list[str]:
    segments = [f"ORC|RE|PL-{accession}|{accession}", f"OBR|{n}|PL-{accession}|{accession}|"
                f"{procedure}^C4|||{date}0900|||||||||||{accession}|||||||{status}"]
    return segments + [f"OBX|{i}|TX|18782-3^Radiology Study observation^LN||{line}||||||"
                       f"{status}" for i, line in enumerate(lines, start=1)]


def oru(control_id: str, pid3: str, date: str, *orders: list[str]) -> str:
    segments = [f"MSH|^~\\&|RIS|GENHOSP|RIGW|GENHOSP|{date}1000||ORU^R01^ORU_R01|{control_id}"
                "|P|2.5.1", f"PID|1||{pid3}||TESTPATIENT^SAM||19600101|M"]
    for segments_of_order in orders:
        segments += segments_of_order
    return "\r".join(segments) + "\r"


def analysed(rig, messages: list[str], config: str = BASE) -> None:  # noqa: F811
    mllp = free_port()
    rig.serve(config, mllp)
    sent = rig.send(mllp, "reports", "".join(messages))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.count("MSA|AA|") == len(messages), sent.stdout
    ids = {m.split("|", 10)[9] for m in messages}
    wait_for("every report analysed or skipped",
             lambda: ids <= events(rig.db, "analysed") | events(rig.db, "skipped"))


def followups(rig, *args: str) -> tuple[list[dict], str]:  # noqa: F811
    listed = rig.run("report", "followups", "--db", rig.db, "--as-of", "2024-12-01", "--json",
                     *args)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    text = rig.run("report", "followups", "--db", rig.db, "--as-of", "2024-12-01", *args)
    assert text.returncode == 0, text.stdout + text.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()], text.stdout.splitlines()[-1]


def test_a_report_filed_under_several_orders_is_one_follow_up(rig):  # noqa: F811
    # CT chest and CT abdomen/pelvis read together: one report, its text under each OBR, and
    # one recommendation. Each order group was tracked as a follow-up of its own: two
    # overdue where one was asked for, and two completed once the CT was done.
    analysed(rig, [
        oru("TWIN0001", "MRN-T1^^^GENHOSP^MR", "20240115",
            order(1, "ACC-T1", CT_CHEST, "20240115", NODULE),
            order(2, "ACC-T2", CT_ABDOMEN, "20240115", NODULE)),
        oru("TWIN0002", "MRN-T2^^^GENHOSP^MR", "20240116",
            order(1, "ACC-T3", CT_CHEST, "20240116", NODULE),
            order(2, "ACC-T4", CT_ABDOMEN, "20240116", NODULE)),
        oru("TWIN0003", "MRN-T1^^^GENHOSP^MR", "20240710",
            order(1, "ACC-T5", CT_CHEST, "20240710", STABLE)),
    ])
    items, last = followups(rig)
    assert [(i["control_id"], i["accession"], i["status"]) for i in items] == [
        ("TWIN0001", "ACC-T1", "completed"), ("TWIN0002", "ACC-T3", "overdue")]
    assert items[0]["completed_by"]["control_id"] == "TWIN0003"
    assert last.startswith("2 tracked follow-up recommendation(s): 1 completed, 0 open, "
                           "1 overdue, 0 undated; completed 50%")


def test_the_patient_is_an_identifier_with_its_assigning_authority(rig):  # noqa: F811
    # Two hospitals feed one gateway. The follow-up CT of patient A was done at the partner
    # hospital, which lists its own MRN first and GENHOSP's beside it: it completes A's
    # follow-up (only the first MRN was compared, and it was counted overdue). Patient B's
    # MRN 5555 is also a number the partner gave another patient: that patient's CT does not
    # complete B's follow-up (the number alone was compared, and B's was counted done).
    analysed(rig, [
        oru("MRNA0001", "MRN-A1^^^GENHOSP^MR", "20240115",
            order(1, "ACC-A1", CT_CHEST, "20240115", NODULE)),
        oru("MRNB0001", "5555^^^GENHOSP^MR", "20240115",
            order(1, "ACC-B1", CT_CHEST, "20240115", NODULE)),
        oru("MRNA0002", "P-991^^^PARTNER^MR~MRN-A1^^^GENHOSP^MR", "20240712",
            order(1, "ACC-A2", CT_CHEST, "20240712", STABLE)),
        oru("MRNB0002", "5555^^^PARTNER^MR", "20240712",
            order(1, "ACC-B2", CT_CHEST, "20240712", STABLE)),
    ])
    items, last = followups(rig)
    assert {i["control_id"]: (i["status"], (i["completed_by"] or {}).get("control_id"))
            for i in items} == {"MRNA0001": ("completed", "MRNA0002"),
                                "MRNB0001": ("overdue", None)}
    assert "MRN-A1" not in last and "5555" not in last


def test_an_exam_cancelled_or_not_yet_done_does_not_complete_a_follow_up(rig):  # noqa: F811
    # The follow-up CT was ordered and then cancelled: the RIS sends its order with result
    # status X (HL7 table 0123: no results available, order cancelled), or S (scheduled, not
    # done). Neither is an exam that was done, yet either completed the follow-up. A
    # preliminary report (P) is of an exam that was done, and completes it.
    analysed(rig, [
        oru(f"STAT{n}001", f"MRN-S{n}^^^GENHOSP^MR", "20240115",
            order(1, f"ACC-S{n}1", CT_CHEST, "20240115", NODULE)) for n in range(3)
    ] + [
        oru(f"STAT{n}002", f"MRN-S{n}^^^GENHOSP^MR", "20240712",
            order(1, f"ACC-S{n}2", CT_CHEST, "20240712", [text], status=status))
        for n, (status, text) in enumerate([("X", "Exam cancelled by the ordering provider."),
                                            ("S", "Exam scheduled."),
                                            ("P", STABLE[0])])
    ])
    items, last = followups(rig)
    assert {i["control_id"]: (i["status"], (i["completed_by"] or {}).get("control_id"))
            for i in items} == {"STAT0001": ("overdue", None), "STAT1001": ("overdue", None),
                                "STAT2001": ("completed", "STAT2002")}
    assert last.startswith("3 tracked follow-up recommendation(s): 1 completed, 0 open, "
                           "2 overdue")


@pytest.mark.parametrize("cancellation", [["Order cancelled: entered in error."], []],
                         ids=["with a note", "OBR-25 alone"])
def test_an_order_cancelled_after_its_report_withdraws_its_follow_up(
        rig, cancellation: list[str]):  # noqa: F811
    # The RIS cancels an order after its final report went out (wrong patient, exam
    # ordered twice): it sends the order again with result status X (HL7 table 0123: no
    # results available, order canceled). The report's recommendation went with it, but it
    # stayed tracked, and overdue for good. A cancellation under the same accession number
    # for another patient (another hospital's numbering) withdraws nothing. The quality
    # measures of the cancelled order's report go with it too.
    analysed(rig, [
        oru("CANC0001", "MRN-C1^^^GENHOSP^MR", "20240115",
            order(1, "ACC-C1", CT_CHEST, "20240115", NODULE)),
        oru("CANC0002", "MRN-C2^^^GENHOSP^MR", "20240115",
            order(1, "ACC-C2", CT_CHEST, "20240115", NODULE)),
        oru("CANC0003", "MRN-C1^^^GENHOSP^MR", "20240117",
            order(1, "ACC-C1", CT_CHEST, "20240115", cancellation, status="X")),
        oru("CANC0004", "MRN-OTHER^^^GENHOSP^MR", "20240117",
            order(1, "ACC-C2", CT_CHEST, "20240115", cancellation, status="X")),
    ], BASE.replace("[analysis]\n", '[analysis]\nquality_measures = ["mips364"]\n'))
    items, last = followups(rig)
    assert [(i["control_id"], i["status"]) for i in items] == [("CANC0002", "overdue")]
    assert last.startswith("1 tracked follow-up recommendation(s): 0 completed, 0 open, "
                           "1 overdue")
    quality = rig.run("report", "quality", "--db", rig.db, "--json")
    assert quality.returncode == 0, quality.stdout + quality.stderr
    assert [(row["denominator"], row["performanceMet"], row["performanceNotMet"],
             row["notEligible"]) for row in map(json.loads, quality.stdout.splitlines())] == [
        ("INCIDENTAL PULMONARY NODULE", 1, 0, 0)]


def test_an_order_cancelled_and_then_reinstated_withdraws_nothing(rig):  # noqa: F811
    # The RIS cancels the order after its report (X), then reinstates it: it sends the order
    # again in progress (I) or scheduled (S), OBR-25 alone. The cancellation stayed final:
    # the recommendation was no longer tracked, and the critical result was withdrawn and
    # nobody's to chase. The latest message of the order decides.
    from test_report_critical_e2e import CRITICAL

    messages = []
    for n, (report, reinstated) in enumerate([(NODULE, "I"), (CRITICAL, "S")]):
        # Report, cancellation, reinstatement: REIN0001-3 for one patient, REIN0004-6.
        for m, (date, lines, status) in enumerate([("20240115", report, "F"),
                                                   ("20240116", [], "X"),
                                                   ("20240117", [], reinstated)]):
            messages.append(oru(f"REIN000{3 * n + m + 1}", f"MRN-R{n}^^^GENHOSP^MR", date,
                                order(1, f"ACC-R{n}", CT_CHEST, "20240115", lines, status)))
    analysed(rig, messages)
    items, _ = followups(rig)
    assert [(i["control_id"], i["status"]) for i in items] == [("REIN0001", "overdue")]
    listed = rig.run("report", "critical", "--db", rig.db, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert [(row["control_id"], row["withdrawn"], row["unconfirmed"])
            for row in map(json.loads, listed.stdout.splitlines())] == [
        ("REIN0004", None, True)]
