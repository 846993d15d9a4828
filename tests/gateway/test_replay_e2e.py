"""``ri-gateway replay`` against a running ``ri-gateway serve`` with two ``ri-gateway sink``s.

The gateway, the sinks and every command are real processes on loopback; the test waits
(polling, with a generous deadline) for the sinks and the audit log to show the replay.
"""

from __future__ import annotations

from test_pipeline_e2e import CRITICAL_TEXT, config, free_port, oru, rig, wait_for  # noqa: F401


def test_a_replayed_report_is_analysed_again_and_its_results_resent(rig):  # noqa: F811
    pager, ehr, mllp = free_port(), free_port(), free_port()
    rig.sink("pager", pager)
    rig.sink("ehr", ehr)
    rig.serve(config(pager, ehr), mllp)
    sent = rig.send(mllp, "crit", oru("REPL0001", "ACC2001", "MRN6001", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("first deliveries", lambda: len(rig.events("REPL0001", "delivered")) == 2)
    inferences = [e for e in rig.audit("REPL0001") if e["event"] == "inference"]
    assert inferences

    replayed = rig.run("replay", "REPL0001", "--db", rig.db)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replay requested" in replayed.stdout
    # By default a replay sends the result again and pages no one.
    wait_for("the result sent again", lambda: len(rig.events("REPL0001", "delivered")) == 3)
    assert len(rig.events("REPL0001", "enqueued")) == 3  # queued with the analysis: no alert
    assert len(rig.received("pager")) == 1 and len(rig.received("ehr")) == 2
    steps = [e["event"] for e in rig.audit("REPL0001")]
    assert steps.count("analysed") == 2 and "replayed" in steps
    assert len([e for e in rig.audit("REPL0001") if e["event"] == "inference"]) == len(inferences)

    everything = rig.run("replay", "REPL0001", "--deliver", "all", "--db", rig.db)
    assert everything.returncode == 0, everything.stdout + everything.stderr
    wait_for("the result and the alert sent again",
             lambda: len(rig.events("REPL0001", "delivered")) == 5)
    assert len(rig.received("pager")) == 2 and len(rig.received("ehr")) == 3

    quiet = rig.run("replay", "REPL0001", "--deliver", "none", "--db", rig.db)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    wait_for("the fourth analysis", lambda: len(rig.events("REPL0001", "analysed")) == 4)
    assert len(rig.events("REPL0001", "enqueued")) == 5  # nothing new queued
    assert len(rig.received("pager")) == 2 and len(rig.received("ehr")) == 3
