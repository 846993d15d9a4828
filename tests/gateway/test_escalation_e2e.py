"""Escalation across a gateway outage, with a real ``serve``, real sinks on loopback and
the command line, as an on-call admin meets it after a restart."""

from __future__ import annotations

import calendar
import json
import signal
import time

from test_pipeline_e2e import BASE, CRITICAL_TEXT, free_port, oru, rig, wait_for  # noqa: F401
from test_report_critical_e2e import pager

ESCALATE_AFTER = 4.0


def config(pager_port: int, backup_port: int) -> str:
    return BASE + pager("pager", pager_port) + pager("backup", backup_port) + f"""
[routes.critical-to-pager]
type = "alerts"
destinations = ["pager"]
alert_on = ["critical"]
escalate_to = ["backup"]
escalate_after = {ESCALATE_AFTER}
"""


def outbox(rig) -> list[dict]:  # noqa: F811
    listed = rig.run("outbox", "list", "--db", rig.db, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_an_alert_pending_through_an_outage_goes_to_its_pager_not_the_backup(rig):  # noqa: F811
    # The pager is down; the critical alert waits; the gateway is stopped for maintenance
    # longer than escalate_after. At the restart the pager is back. The alert was escalated
    # at once at the start, before the pager had its turn: the backup desk was paged for a
    # result the on-call pager took a moment later.
    pager_port, backup_port, mllp = free_port(), free_port(), free_port()
    rig.sink("backup", backup_port)
    gateway = rig.serve(config(pager_port, backup_port), mllp)
    sent = rig.send(mllp, "crit", oru("OUTAGE01", "ACC9001", "MRN9001", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the alert queued", lambda: [r for r in outbox(rig) if r["destination"] == "pager"])
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(timeout=30)
    (queued,) = outbox(rig)
    assert (queued["status"], queued["escalated_from"]) == ("pending", None)
    created = calendar.timegm(time.strptime(queued["created_at"], "%Y-%m-%dT%H:%M:%SZ"))
    wait_for("the outage outlasting escalate_after",
             lambda: time.time() > created + ESCALATE_AFTER + 1)

    rig.sink("pager", pager_port)
    rig.serve(config(pager_port, backup_port), mllp)
    wait_for("the alert delivered to the pager", lambda: [
        r for r in outbox(rig) if r["destination"] == "pager" and r["status"] == "delivered"])
    assert [r["destination"] for r in outbox(rig)] == ["pager"]
    assert rig.events("OUTAGE01", "escalated") == []
    assert len(rig.received("pager")) == 1 and rig.received("backup") == []
