"""One page per critical result per study, over a real ``serve`` and real pagers.

A report reaches the gateway again for many reasons: the radiologist corrects it (OBR-25
``C``) and keeps the critical result, an interface engine resends it under a new MSH-10
after a timeout. Each version paged the on-call radiologist again for a result already
paged: alert fatigue, the reason pagers get muted. A version pages only when it adds a
critical result not paged for that study (accession and patient) at that destination.
"""

from __future__ import annotations

import json

from test_pipeline_e2e import BASE, free_port, rig, wait_for  # noqa: F401
from test_report_critical_e2e import CRITICAL, events, oru, pager, route

WITH_EMBOLISM = ["FINDINGS: Large right pneumothorax with mediastinal shift. Filling defect "
                 "in the right lower lobe pulmonary artery.",
                 "IMPRESSION: Large right pneumothorax. Acute pulmonary embolism."]


def corrected(message: str, accession: str) -> str:
    return message.replace(f"{accession}|||||||F", f"{accession}|||||||C")


def alerts_enqueued(rig, control_id: str) -> list[dict]:  # noqa: F811
    return [e for e in rig.events(control_id, "enqueued") if e["purpose"] == "alerts"]


def test_a_corrected_or_resent_report_pages_its_critical_result_once(rig):  # noqa: F811
    ok, mllp = free_port(), free_port()
    rig.sink("ok", ok)
    rig.serve(BASE + pager("ok", ok) + route("to-ok", "ok", "RIS"), mllp)
    messages = [
        oru("REPT0001", "RIS", "ACC61", CRITICAL),
        # The correction keeps the result; the resend is the same report under a new MSH-10.
        corrected(oru("REPT0002", "RIS", "ACC61", CRITICAL + ["ADDENDUM: Side confirmed."]),
                  "ACC61"),
        oru("REPT0003", "RIS", "ACC61", CRITICAL),
        # A correction that adds a critical result pages, with everything it alerts on.
        corrected(oru("REPT0004", "RIS", "ACC61", WITH_EMBOLISM), "ACC61"),
        # Another patient under the same accession number is another study.
        oru("REPT0005", "RIS", "ACC61", CRITICAL).replace("MRN7001", "MRN7002"),
    ]
    # Sent together: the first alert is still pending when the versions are analysed.
    sent = rig.send(mllp, "versions", "".join(messages))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    controls = [f"REPT000{n}" for n in range(1, 6)]
    wait_for("every report analysed", lambda: set(controls) <= events(rig.db, "analysed"))
    wait_for("the alerts delivered", lambda: {"REPT0001", "REPT0004", "REPT0005"}
             <= events(rig.db, "delivered"))
    assert {c: len(alerts_enqueued(rig, c)) for c in controls} == {
        "REPT0001": 1, "REPT0002": 0, "REPT0003": 0, "REPT0004": 1, "REPT0005": 1}
    wait_for("three pages", lambda: len(rig.received("ok")) == 3)
    added = [m for m in rig.received("ok")
             if any("EMBOLISM" in s.upper() for s in m if s.startswith("OBX|"))]
    assert len(added) == 1
    # audit show says why no page went, and names the version that paged it.
    for control_id in ("REPT0002", "REPT0003"):
        (event,) = rig.events(control_id, "alert_suppressed")
        fields = {k: v for k, v in event.items()
                  if k not in ("time", "event", "control_id", "message_type", "sender",
                               "ack_code", "message_id")}
        assert fields == {"destination": "ok", "route": "to-ok", "reason": "already_alerted",
                          "results": 1, "alerted_by": ["REPT0001"],
                          "outbox_ids": [1]}, event
        assert "MRN7001" not in json.dumps(event) and "ACC61" not in json.dumps(event)
    # The report is one line: two alerts, both delivered, one per critical result paged.
    listed = rig.run("report", "critical", "--json", "--db", rig.db)
    rows = {row["control_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert {c: (r["status"], r["alerts"], r["delivered"], r["versions"])
            for c, r in rows.items()} == {
        "REPT0001": ("alerted", 2, 2, ["REPT0001", "REPT0002", "REPT0003", "REPT0004"]),
        "REPT0005": ("alerted", 1, 1, ["REPT0005"])}


def test_a_version_pages_again_when_the_earlier_page_never_reached_anyone(rig):  # noqa: F811
    # The first alert was refused (AR) and dead-lettered: nobody was paged, so the
    # correction is paged, and so is the other pager's copy that was delivered only once.
    refusing, ok, mllp = free_port(), free_port(), free_port()
    rig.cli("sink", "--port", str(refusing), "--ack", "AR", log="refusing.log")
    rig.sink("ok", ok)
    rig.serve(BASE + pager("refusing", refusing, max_attempts=1) + pager("ok", ok)
              + route("to-refusing", "refusing", "RIS") + route("to-ok", "ok", "RIS2"), mllp)
    first = oru("DEAD0001", "RIS", "ACC71", CRITICAL)
    sent = rig.send(mllp, "first", first)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the refused alert dead-lettered",
             lambda: "DEAD0001" in events(rig.db, "dead_lettered"))
    sent = rig.send(mllp, "second", corrected(oru("DEAD0002", "RIS", "ACC71", CRITICAL),
                                              "ACC71"))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the correction analysed", lambda: "DEAD0002" in events(rig.db, "analysed"))
    assert len(alerts_enqueued(rig, "DEAD0002")) == 1
    assert rig.events("DEAD0002", "alert_suppressed") == []
    # Routes and destinations are the study's own: another sender's pager of the same
    # study is paged once too (its first page is what counts there).
    for control_id in ("DEAD0003", "DEAD0004"):
        sent = rig.send(mllp, control_id, oru(control_id, "RIS2", "ACC71", CRITICAL))
        assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("both analysed", lambda: {"DEAD0003", "DEAD0004"} <= events(rig.db, "analysed"))
    assert [len(alerts_enqueued(rig, c)) for c in ("DEAD0003", "DEAD0004")] == [1, 0]


def test_a_result_withdrawn_by_a_correction_and_restated_later_pages_again(rig):  # noqa: F811
    # v1 pages the pneumothorax; v2 corrects it away (no critical result: `report critical`
    # says withdrawn, and a clinician may have been told it no longer stands); v3 states it
    # again. v1's page is no longer what the study says, so v3 pages; v4, the same as v3,
    # does not.
    from test_report_critical_e2e import NORMAL

    ok, mllp = free_port(), free_port()
    rig.sink("ok", ok)
    rig.serve(BASE + pager("ok", ok) + route("to-ok", "ok", "RIS"), mllp)
    messages = [
        oru("BACK0001", "RIS", "ACC81", CRITICAL),
        corrected(oru("BACK0002", "RIS", "ACC81", NORMAL), "ACC81"),
        corrected(oru("BACK0003", "RIS", "ACC81", CRITICAL), "ACC81"),
        corrected(oru("BACK0004", "RIS", "ACC81", CRITICAL), "ACC81"),
    ]
    sent = rig.send(mllp, "versions", "".join(messages))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    controls = [f"BACK000{n}" for n in range(1, 5)]
    wait_for("every report analysed", lambda: set(controls) <= events(rig.db, "analysed"))
    assert {c: len(alerts_enqueued(rig, c)) for c in controls} == {
        "BACK0001": 1, "BACK0002": 0, "BACK0003": 1, "BACK0004": 0}
    (event,) = rig.events("BACK0004", "alert_suppressed")
    assert event["alerted_by"] == ["BACK0003"], event
    wait_for("two pages", lambda: len(rig.received("ok")) == 2)


def test_a_version_held_behind_an_alert_that_is_dead_lettered_pages_in_its_place(rig):  # noqa: F811
    # The pager is down. v1's alert is pending (being retried) when its correction v2 is
    # analysed: v2 pages nothing new, and was dropped. Then v1's alert ran out of attempts
    # and was dead-lettered, and the pneumothorax reached nobody, though the pager came back
    # while v2's page would still have been tried. v2's alert is held instead, and goes out
    # once v1's is dead-lettered.
    pager_port, mllp = free_port(), free_port()
    rig.serve(BASE + f"""
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port={pager_port}"
ack_timeout = 10.0
backoff_initial = 3.0
backoff_multiplier = 2.0
backoff_max = 6.0
jitter = 0.0
max_attempts = 3
""" + route("to-pager", "pager", "RIS"), mllp)
    messages = [oru("HOLD0001", "RIS", "ACC91", CRITICAL),
                corrected(oru("HOLD0002", "RIS", "ACC91", CRITICAL + ["ADDENDUM: Side confirmed."]),
                          "ACC91")]
    sent = rig.send(mllp, "versions", "".join(messages))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("both analysed", lambda: {"HOLD0001", "HOLD0002"} <= events(rig.db, "analysed"))
    assert rig.events("HOLD0002", "alert_suppressed") == []
    (held,) = rig.events("HOLD0002", "alert_held")
    assert {k: held[k] for k in ("destination", "route", "reason", "results", "alerted_by",
                                 "outbox_ids")} == {
        "destination": "pager", "route": "to-pager", "reason": "earlier_alert_pending",
        "results": 1, "alerted_by": ["HOLD0001"], "outbox_ids": [1]}
    listed = rig.run("outbox", "list", "--status", "held", "--json", "--db", rig.db)
    assert [(row["id"], row["source_control_id"], row["status"])
            for row in map(json.loads, listed.stdout.splitlines())] == [
        (held["outbox_id"], "HOLD0002", "held")]
    wait_for("v1's alert dead-lettered", lambda: "HOLD0001" in events(rig.db, "dead_lettered"))
    (released,) = rig.events("HOLD0002", "alert_released")
    assert (released["outbox_id"], released["reason"], released["dead_lettered"]) == (
        held["outbox_id"], "earlier_alert_dead_lettered", [1])
    rig.sink("pager", pager_port)  # the pager is back, within v2's attempts
    wait_for("v2's page delivered", lambda: "HOLD0002" in events(rig.db, "delivered"))
    (page,) = rig.received("pager")
    assert [s for s in page if s.startswith("OBR|")][0].split("|")[3] == "ACC91"
    assert rig.events("HOLD0002", "alert_suppressed") == []
    # One report, two versions: one alert dead-lettered, the held one delivered.
    report = rig.run("report", "critical", "--json", "--db", rig.db)
    (row,) = map(json.loads, report.stdout.splitlines())
    assert (row["status"], row["versions"], row["alerts"], row["delivered"],
            row["dead_lettered"]) == ("alerted", ["HOLD0001", "HOLD0002"], 2, 1, 1)
