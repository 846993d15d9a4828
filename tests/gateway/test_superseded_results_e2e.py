"""An older version of a report's result never reaches the EHR after a later version's.

A report reaches the gateway more than once (a correction, an addendum, a resend), and
delivery to one destination is first in, first out, so the EHR files the versions in order.
Two admin commands sent an older version again after a later one, which the EHR then filed
as the current result: ``outbox retry --dead`` re-queueing a version the EHR refused until
the patient was registered (AE 204) after its correction was delivered, and ``replay`` of
an older version.  Over a real ``serve`` and a real ``sink`` for the EHR.
"""

from __future__ import annotations

from test_pipeline_e2e import BASE, free_port, oru, port_open, rig, wait_for  # noqa: F401
from test_report_critical_e2e import events

REPORT = ["FINDINGS: The lungs are clear. Small right pleural effusion.",
          "IMPRESSION: Small right pleural effusion."]
CORRECTED = ["FINDINGS: The lungs are clear. Small left pleural effusion.",
             "IMPRESSION: Small left pleural effusion."]


def ehr(port: int, max_attempts: int = 1000) -> str:
    return BASE + f"""
[destinations.ehr]
endpoint = "tcp:host=127.0.0.1:port={port}"
receiving_application = "EHR"
ack_timeout = 10.0
backoff_initial = 0.2
backoff_max = 1.0
max_attempts = {max_attempts}

[routes.results-to-ehr]
type = "results"
destinations = ["ehr"]
"""


def corrected(message: str, accession: str) -> str:
    return message.replace(f"{accession}|||||||F", f"{accession}|||||||C")


def filed(rig, name: str) -> list[str]:  # noqa: F811
    """What the EHR filed, in order: the OBR-25 result status and the side of the effusion
    of each result message it received."""
    found = []
    for message in rig.received(name):
        status = next(s.split("|")[25] for s in message if s.startswith("OBR|"))
        text = " ".join(message).upper()
        found.append(status + ("L" if "LEFT" in text else "R" if "RIGHT" in text else "?"))
    return found


def send(rig, mllp: int, name: str, message: str) -> None:  # noqa: F811
    sent = rig.send(mllp, name, message)
    assert sent.returncode == 0, sent.stdout + sent.stderr


def test_retry_dead_keeps_a_result_a_later_version_replaced_dead(rig):  # noqa: F811
    port, mllp = free_port(), free_port()
    # The EHR answers AE 204 (unknown key: the patient is not registered yet), and the
    # result is dead-lettered after its one attempt.
    refusing = rig.cli("sink", "--port", str(port), "--ack", "AE", "--err", "204",
                       log="refusing.log")
    wait_for("the refusing EHR listening", lambda: port_open(port))
    rig.serve(ehr(port, max_attempts=1), mllp)
    send(rig, mllp, "v1", oru("SUPD0001", "ACC91", "MRN8001", REPORT))
    # Another report, and another patient's report under the same accession number: not
    # versions of the first, so they go back when the dead are re-queued.
    send(rig, mllp, "other", oru("SUPD0002", "ACC92", "MRN8001", REPORT))
    send(rig, mllp, "reused", oru("SUPD0003", "ACC91", "MRN8002", REPORT))
    wait_for("three results dead-lettered", lambda: {"SUPD0001", "SUPD0002", "SUPD0003"}
             <= events(rig.db, "dead_lettered"))
    refusing.terminate()
    refusing.wait(timeout=20)
    # The patient is registered; the radiologist's correction is delivered.
    rig.sink("ehr", port)
    send(rig, mllp, "v2", corrected(oru("SUPD0004", "ACC91", "MRN8001", CORRECTED), "ACC91"))
    wait_for("the correction delivered", lambda: "SUPD0004" in events(rig.db, "delivered"))

    retried = rig.run("outbox", "retry", "--dead", "--db", rig.db)
    assert (retried.returncode, retried.stdout) == (0, (
        "re-queued 2 dead-lettered message(s)\n"
        "kept dead 1 for ehr: a later version of the report was delivered as 4 "
        "(name it to send it again: outbox retry 1)\n")), retried.stderr
    wait_for("the other two delivered", lambda: {"SUPD0002", "SUPD0003"}
             <= events(rig.db, "delivered"))
    assert filed(rig, "ehr") == ["CL", "FR", "FR"]
    assert "SUPD0001" not in events(rig.db, "delivered")
    assert "SUPD0001" not in events(rig.db, "requeued")

    # Named, it is sent: the admin's choice, with a warning of what the EHR will do.
    named = rig.run("outbox", "retry", "1", "--db", rig.db)
    assert (named.returncode, named.stdout) == (0, "re-queued 1 (dead -> pending) for ehr\n")
    assert named.stderr == (
        "warning: 1 is an older version of a report whose later version was delivered to "
        "ehr as 4: ehr may file it as the current result\n")
    wait_for("the named one delivered", lambda: "SUPD0001" in events(rig.db, "delivered"))
    assert filed(rig, "ehr") == ["CL", "FR", "FR", "FR"]


def test_replaying_an_older_version_does_not_send_its_result_after_the_later_one(rig):  # noqa: F811
    port, mllp = free_port(), free_port()
    rig.sink("ehr", port)
    rig.serve(ehr(port), mllp)
    send(rig, mllp, "v1", oru("SUPR0001", "ACC93", "MRN8101", REPORT))
    wait_for("the first version delivered", lambda: "SUPR0001" in events(rig.db, "delivered"))
    send(rig, mllp, "v2", corrected(oru("SUPR0002", "ACC93", "MRN8101", CORRECTED), "ACC93"))
    # Another patient's report under the same accession number, received after both.
    send(rig, mllp, "reused", oru("SUPR0003", "ACC93", "MRN8102", REPORT))
    wait_for("all three delivered", lambda: len(rig.received("ehr")) == 3)
    assert filed(rig, "ehr") == ["FR", "CL", "FR"]

    replayed = rig.run("replay", "SUPR0001", "--db", rig.db)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    wait_for("the older version analysed again",
             lambda: len(rig.events("SUPR0001", "analysed")) == 2)
    # Analysed again (its inferences replaced), its result not queued, and why.
    assert len(rig.events("SUPR0001", "enqueued")) == 1
    (event,) = rig.events("SUPR0001", "result_superseded")
    fields = {k: v for k, v in event.items()
              if k not in ("time", "event", "control_id", "message_type", "sender",
                           "ack_code", "message_id")}
    assert fields == {"destination": "ehr", "route": "results-to-ehr",
                      "reason": "later_version", "superseded_by": ["SUPR0002"],
                      "outbox_ids": [2]}, event
    assert "MRN8101" not in str(event) and "ACC93" not in str(event)

    # Both versions replayed together: the later one is sent again, the older one is not;
    # the later version of another patient's report under the accession does not count.
    both = rig.run("replay", "SUPR0001", "SUPR0002", "--db", rig.db)
    assert both.returncode == 0, both.stdout + both.stderr
    wait_for("both analysed again", lambda: len(rig.events("SUPR0001", "analysed")) == 3
             and len(rig.events("SUPR0002", "analysed")) == 2)
    wait_for("the later version sent again", lambda: len(rig.received("ehr")) == 4)
    assert len(rig.events("SUPR0001", "enqueued")) == 1
    assert len(rig.events("SUPR0001", "result_superseded")) == 2
    assert filed(rig, "ehr") == ["FR", "CL", "FR", "CL"]

    # The latest version of the other patient's report is sent again.
    other = rig.run("replay", "SUPR0003", "--db", rig.db)
    assert other.returncode == 0, other.stdout + other.stderr
    wait_for("the other patient's report sent again", lambda: len(rig.received("ehr")) == 5)
    assert rig.events("SUPR0003", "result_superseded") == []
