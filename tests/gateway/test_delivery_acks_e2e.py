"""How a real ``serve`` treats an error ACK from a real ``sink`` over loopback MLLP: the
ERR code, not AR or AE, decides between dead-letter and retry."""

from __future__ import annotations

from test_escalation_e2e import outbox
from test_pipeline_e2e import (  # noqa: F401
    BASE, CRITICAL_TEXT, free_port, oru, port_open, rig, wait_for,
)
from test_report_critical_e2e import pager


def test_a_pager_refusing_for_good_escalates_at_once_and_one_stopping_is_retried(rig):  # noqa: F811
    refusing, stopping, backup, mllp = (free_port() for _ in range(4))
    # A pager that does not take this message type (AR 200), one that is stopping (AR 207,
    # as our own listener answers then): both used to be dead-lettered at once.
    rig.cli("sink", "--port", str(refusing), "--ack", "AR", "--err", "200", log="refusing.log")
    rig.cli("sink", "--port", str(stopping), "--ack", "AR", log="stopping.log")
    rig.sink("backup", backup)
    for port in (refusing, stopping):
        wait_for("the sinks listening", lambda port=port: port_open(port))
    config = (BASE + pager("refusing", refusing) + pager("stopping", stopping)
              + pager("backup", backup) + """
[routes.critical-to-pagers]
type = "alerts"
destinations = ["refusing", "stopping"]
alert_on = ["critical"]
escalate_to = ["backup"]
""")
    rig.serve(config, mllp)
    sent = rig.send(mllp, "crit", oru("ERRACK01", "ACC7001", "MRN7001", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr

    wait_for("the escalated copy delivered", lambda: [
        r for r in outbox(rig) if r["destination"] == "backup" and r["status"] == "delivered"])
    wait_for("the stopping pager tried again", lambda: [
        r for r in outbox(rig) if r["destination"] == "stopping" and r["attempts"] >= 3])
    rows = {r["destination"]: r for r in outbox(rig)}
    assert (rows["refusing"]["status"], rows["refusing"]["attempts"],
            rows["refusing"]["ack_code"], rows["refusing"]["last_error"]) == (
        "dead", 1, "AR", "AR (ERR 200 Unsupported message type): final, a resend gets the "
                         "same answer")
    assert (rows["stopping"]["status"], rows["stopping"]["ack_code"],
            rows["stopping"]["last_error"]) == (
        "pending", "AR", "AR (ERR 207 Application internal error)")
    assert rows["backup"]["escalated_from"] == rows["refusing"]["id"]
    assert len(rig.received("backup")) == 1
    assert (f"sink listening on 127.0.0.1:{refusing} (ACK AR, ERR 200)"
            in (rig.tmp / "refusing.log").read_text().splitlines())
