"""``ri-gateway report critical`` over the audit log of a real ``serve`` with real pagers.

Reports with a critical result arrive from four senders, each routed its own way: to a pager
that answers AA (alerted), to one that answers AR (the alert is dead-lettered: failed), to a
pager that is down (pending), and to no alert route at all (not alerted), the last one
documenting in its text that the result was called in.  A fifth sender's alert route alerts
on scores only: its alert does not carry the critical result, so the report is not alerted.
"""

from __future__ import annotations

import json
import sqlite3

from test_pipeline_e2e import BASE, free_port, rig, wait_for  # noqa: F401

CRITICAL = ["FINDINGS: Large right pneumothorax with mediastinal shift.",
            "IMPRESSION: Large right pneumothorax."]
CALLED_IN = CRITICAL + ["Findings were discussed with Dr. Rivera by telephone at 10:40 on "
                        "1/15/2024, who acknowledged receipt."]
CRITICAL_AND_BIRADS = ["FINDINGS: Large left pneumothorax. Irregular spiculated mass in the left "
                       "breast.", "IMPRESSION: Large left pneumothorax. BI-RADS 5: Highly "
                       "suggestive of malignancy."]
NORMAL = ["FINDINGS: The lungs are clear. No pneumothorax.",
          "IMPRESSION: No acute cardiopulmonary abnormality."]


def oru(control_id: str, sender: str, accession: str, lines: list[str]) -> str:
    segments = [
        f"MSH|^~\\&|{sender}|GENHOSP|RIGW|GENHOSP|20240115101500||ORU^R01^ORU_R01|{control_id}"
        "|P|2.5.1",
        "PID|1||MRN7001^^^GENHOSP^MR||TESTPATIENT^ALEX||19700101|M",
        f"OBR|1|PL-{accession}|{accession}|71045^XR CHEST 1 VIEW^C4|||20240115100000|||||||||"
        f"||{accession}|||||||F",
    ]
    segments += [f"OBX|{n}|TX|18782-3^Radiology Study observation^LN||{line}||||||F"
                 for n, line in enumerate(lines, start=1)]
    return "\r".join(segments) + "\r"


def pager(name: str, port: int, max_attempts: int = 1000) -> str:
    return f"""
[destinations.{name}]
endpoint = "tcp:host=127.0.0.1:port={port}"
ack_timeout = 10.0
backoff_initial = 0.2
backoff_max = 1.0
max_attempts = {max_attempts}
"""


def route(name: str, destination: str, sender: str, alert_on: str = '["critical"]') -> str:
    return f"""
[routes.{name}]
type = "alerts"
destinations = ["{destination}"]
sending_applications = ["{sender}"]
alert_on = {alert_on}
"""


def events(db: str, event: str) -> set[str]:
    """The control ids with an ``event`` in the audit log (read directly: one query a poll)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute(
            "SELECT m.control_id FROM events e JOIN messages m ON m.id = e.message_id "
            "WHERE e.event = ?", (event,))}


def test_each_critical_report_shows_how_its_alert_went(rig):  # noqa: F811
    ok, refusing, down, scores_only, mllp = (free_port() for _ in range(5))
    rig.sink("ok", ok)
    rig.cli("sink", "--port", str(refusing), "--ack", "AR", log="refusing.log")
    rig.sink("scores", scores_only)
    config = (BASE + pager("ok", ok) + pager("refusing", refusing, max_attempts=1)
              + pager("down", down) + pager("scores", scores_only)
              + route("to-ok", "ok", "RIS") + route("to-refusing", "refusing", "RIS2")
              + route("to-down", "down", "RIS3")
              + route("scores-only", "scores", "RIS5", alert_on='["scores"]'))
    rig.serve(config, mllp)
    messages = [("CRIT0001", "RIS", "ACC1", CRITICAL), ("CRIT0002", "RIS2", "ACC2", CRITICAL),
                ("CRIT0003", "RIS3", "ACC3", CRITICAL), ("CRIT0004", "RIS4", "ACC4", CALLED_IN),
                ("CRIT0005", "RIS5", "ACC5", CRITICAL_AND_BIRADS),
                ("NORM0006", "RIS", "ACC6", NORMAL)]
    sent = rig.send(mllp, "all", "".join(oru(*message) for message in messages))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.count("MSA|AA|") == len(messages), sent.stdout
    wait_for("the delivered alerts",
             lambda: {"CRIT0001", "CRIT0005"} <= events(rig.db, "delivered"))
    wait_for("the refused alert dead-lettered", lambda: "CRIT0002" in events(rig.db, "dead_lettered"))
    wait_for("every report analysed",
             lambda: {m[0] for m in messages} <= events(rig.db, "analysed"))
    wait_for("an attempt on the pager that is down",
             lambda: "CRIT0003" in events(rig.db, "delivery_failed"))

    config_path = str(rig.tmp / "gateway.toml")
    listed = rig.run("report", "critical", "--json", "--db", rig.db, "--config", config_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = {row["control_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert set(rows) == {"CRIT0001", "CRIT0002", "CRIT0003", "CRIT0004", "CRIT0005"}
    assert {c: r["status"] for c, r in rows.items()} == {
        "CRIT0001": "alerted", "CRIT0002": "failed", "CRIT0003": "pending",
        "CRIT0004": "not_alerted", "CRIT0005": "not_alerted"}
    alerted = rows["CRIT0001"]
    assert alerted["delivered"] == alerted["alerts"] == 1
    assert alerted["seconds_to_alert"] is not None and alerted["seconds_to_alert"] >= 0
    assert alerted["first_delivered_at"] >= alerted["received_at"]
    assert alerted["accessions"] == ["ACC1"]
    # Findings and impression both state it: one result.
    assert len(alerted["results"]) == 1 and "PNEUMOTHORAX" in alerted["results"][0].upper()
    assert rows["CRIT0002"]["dead_lettered"] == 1 and rows["CRIT0002"]["delivered"] == 0
    assert rows["CRIT0004"]["communicated"] and not rows["CRIT0004"]["unconfirmed"]
    assert [c for c, r in rows.items() if r["unconfirmed"]] == ["CRIT0002", "CRIT0003",
                                                                "CRIT0005"]
    # Without the configuration too: what counts is what the alert carried.
    unknown = rig.run("report", "critical", "--json", "--db", rig.db)
    assert {row["control_id"]: row["status"] for row in map(json.loads, unknown.stdout.splitlines())
            }["CRIT0005"] == "not_alerted"

    text = rig.run("report", "critical", "--status", "failed", "--status", "pending", "--db",
                   rig.db, "--config", config_path)
    assert text.returncode == 0, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:2] == ["status", "received"]
    assert [line.split()[0] for line in lines[1:-1]] == ["failed", "pending"]
    assert "MRN7001" not in text.stdout and "TESTPATIENT" not in text.stdout
    assert lines[-1].startswith("5 report(s) with critical results: 1 alerted, 1 pending, "
                                "1 failed, 2 not alerted;")
    assert lines[-1].endswith("3 with neither a delivered alert nor documented "
                              "communication; 0 withdrawn by a correction or cancellation")


def serve_with_pager_down(rig) -> int:  # noqa: F811
    """A gateway whose pager is down, escalating its alerts to a backup after a second."""
    down, backup, mllp = free_port(), free_port(), free_port()
    rig.sink("backup", backup)
    config = (BASE + pager("down", down) + pager("backup", backup)
              + route("to-down", "down", "RIS") + 'escalate_to = ["backup"]\n'
              'escalate_after = 1.0\n')
    rig.serve(config, mllp)
    return mllp


def test_an_alert_for_a_pager_that_is_down_is_escalated_and_counts_as_alerted(rig):  # noqa: F811
    mllp = serve_with_pager_down(rig)
    sent = rig.send(mllp, "crit", oru("ESCL0001", "RIS", "ACC9", CRITICAL))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the escalated alert delivered", lambda: rig.received("backup"))
    (received,) = rig.received("backup")
    assert received[0].split("|")[9].startswith("RI")  # its own control id
    wait_for("its delivery audited", lambda: "ESCL0001" in events(rig.db, "delivered"))
    assert "ESCL0001" in events(rig.db, "escalated")
    listed = rig.run("report", "critical", "--json", "--db", rig.db, "--config",
                     str(rig.tmp / "gateway.toml"))
    (row,) = map(json.loads, listed.stdout.splitlines())
    # The copy is the same alert, delivered: one alert, not two of which one was delivered.
    assert (row["status"], row["alerts"], row["delivered"]) == ("alerted", 1, 1)


def _tomorrow() -> str:
    import datetime as dt

    # A local date, as the commands read it (they run under this process's TZ).
    return (dt.date.today() + dt.timedelta(days=1)).isoformat()


def test_purging_delivered_messages_keeps_the_alerts_the_report_reads(rig):  # noqa: F811
    # A nightly `outbox purge --delivered` (results are the bulk of the outbox) deleted the
    # delivered alerts too, and the month's critical-result report then said every report
    # alerted so far was never alerted at all, and counted it as one to chase.
    ok, mllp = free_port(), free_port()
    rig.sink("ok", ok)
    config = BASE + pager("ok", ok) + route("to-ok", "ok", "RIS") + """
[destinations.ehr]
endpoint = "tcp:host=127.0.0.1:port={ok}"
[routes.results]
type = "results"
destinations = ["ehr"]
""".replace("{ok}", str(ok))
    rig.serve(config, mllp)
    sent = rig.send(mllp, "crit", oru("PURG0001", "RIS", "ACC11", CRITICAL))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the alert and the result delivered",
             lambda: len(rig.received("ok")) == 2
             and "PURG0001" in events(rig.db, "delivered"))
    wait_for("both deliveries recorded", lambda: len(
        [e for e in rig.events("PURG0001", "delivered")]) == 2)
    purged = rig.run("outbox", "purge", "--delivered", "--before", _tomorrow(), "--db", rig.db)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert purged.stdout == ("purged 1 delivered message(s); kept 1 delivered alert(s) of "
                             "reports still in the audit log\n")
    listed = rig.run("report", "critical", "--json", "--db", rig.db)
    (row,) = map(json.loads, listed.stdout.splitlines())
    assert (row["status"], row["alerts"], row["delivered"], row["unconfirmed"]) == (
        "alerted", 1, 1, False)
    # Once the report itself is purged from the log, its alert goes with it.
    gone = rig.run("audit", "purge", "--before", _tomorrow(), "--json", "--db", rig.db)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert json.loads(gone.stdout)["outbox"] == 1


def test_purging_a_delivered_escalation_does_not_page_the_backup_again(rig):  # noqa: F811
    # The pager is down for hours (a large max_attempts): its alert stays pending, and its
    # copy reached the backup pager after escalate_after. Purging delivered messages took
    # the copy away, and with it the only trace that the alert had been escalated: the
    # next check (every 5 s) paged the backup again with the same old alert.
    mllp = serve_with_pager_down(rig)
    sent = rig.send(mllp, "first", oru("ESCP0001", "RIS", "ACC21", CRITICAL))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the copy delivered to the backup", lambda: "ESCP0001" in events(rig.db, "delivered"))
    purged = rig.run("outbox", "purge", "--delivered", "--before", _tomorrow(), "--db", rig.db)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    # A second alert escalates at a later check than any re-escalation of the first would,
    # and the backup receives in outbox order: once its copy is there, nothing else comes.
    sent = rig.send(mllp, "second", oru("ESCP0002", "RIS", "ACC22", CRITICAL))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the second copy delivered", lambda: "ESCP0002" in events(rig.db, "delivered"))
    accessions = [[s for s in m if s.startswith("OBR|")][0].split("|")[3]
                  for m in rig.received("backup")]
    assert accessions == ["ACC21", "ACC22"]
    assert len(rig.events("ESCP0001", "escalated")) == 1


def test_a_report_sent_again_is_one_line_with_its_versions(rig):  # noqa: F811
    # The final report is paged; its correction (OBR-25 C) repeats the critical result but
    # the alert route pages final reports only. Another report reaches the gateway twice,
    # an interface engine resending it under a new MSH-10. Each was a line of its own: the
    # correction "not alerted" with nobody documented as told, one more to chase, and the
    # resend a second critical result. Another patient's report under a reused accession
    # number is not a version.
    ok, mllp = free_port(), free_port()
    rig.sink("ok", ok)
    rig.serve(BASE + pager("ok", ok) + route("to-ok", "ok", "RIS")
              + 'result_statuses = ["F"]\n', mllp)
    final = oru("VERS0001", "RIS", "ACC31", CRITICAL)
    corrected = oru("VERS0002", "RIS", "ACC31", CRITICAL + ["ADDENDUM: Side confirmed."]
                    ).replace("ACC31|||||||F", "ACC31|||||||C")
    resent = [oru(control_id, "RIS", "ACC32", CRITICAL) for control_id in ("VERS0003", "VERS0004")]
    other = oru("VERS0005", "RIS", "ACC31", CRITICAL).replace("MRN7001", "MRN7002")
    messages = [final, corrected, *resent, other]
    sent = rig.send(mllp, "versions", "".join(messages))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    # The resend pages nothing new, and is not paged (test_alert_repeats_e2e).
    wait_for("every alert delivered", lambda: {"VERS0001", "VERS0003", "VERS0005"}
             <= events(rig.db, "delivered"))
    wait_for("every report analysed", lambda: len(
        {"VERS0001", "VERS0002", "VERS0003", "VERS0004", "VERS0005"}
        & events(rig.db, "analysed")) == 5)
    listed = rig.run("report", "critical", "--json", "--db", rig.db)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = {row["control_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert {c: (r["status"], r["unconfirmed"]) for c, r in rows.items()} == {
        "VERS0001": ("alerted", False), "VERS0003": ("alerted", False),
        "VERS0005": ("alerted", False)}
    assert {c: (r["status"], r["versions"], r["alerts"], r["delivered"], r["unconfirmed"])
            for c, r in rows.items()} == {
        "VERS0001": ("alerted", ["VERS0001", "VERS0002"], 1, 1, False),
        "VERS0003": ("alerted", ["VERS0003", "VERS0004"], 1, 1, False),
        "VERS0005": ("alerted", ["VERS0005"], 1, 1, False)}
    text = rig.run("report", "critical", "--db", rig.db)
    lines = text.stdout.splitlines()
    assert lines[1].endswith("(2 versions)") and not lines[3].endswith("versions)")
    assert lines[-1].startswith("3 report(s) with critical results: 3 alerted, 0 pending, "
                                "0 failed, 0 not alerted;")
    assert lines[-1].endswith("0 with neither a delivered alert nor documented "
                              "communication; 0 withdrawn by a correction or cancellation")
