"""Escalation of alerts ([routes.NAME] escalate_to / escalate_after) through the delivery
service: fake downstreams on StringTransports, task.Clock, a real audit database."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest
from click.testing import CliRunner
from test_delivery import Downstream, ack, clock, db_path, events  # noqa: F401

from gateway.cli import main
from gateway.config import load_settings
from gateway.delivery import DeliveryService
from gateway.errors import ConfigError
from gateway.escalation import Escalation
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.routing import (
    Addressing, Destination, OutboundConfig, PlannedMessage, Route, outbound_config,
)

PAGER = Destination(name="pager", endpoint="tcp:host=127.0.0.1:port=1", ack_timeout=10.0,
                    max_attempts=3, backoff_initial=20.0, backoff_max=20.0, jitter=0.0,
                    addressing=Addressing("PAGER", "HOSP"))
BACKUP = Destination(name="backup", endpoint="tcp:host=127.0.0.1:port=2", ack_timeout=10.0,
                     max_attempts=2, backoff_initial=20.0, backoff_max=20.0, jitter=0.0,
                     addressing=Addressing("DESK", "RADIOLOGY"))
DESTINATIONS = {"pager": PAGER, "backup": BACKUP}
# Report text with a character outside ASCII: the escalated copy must carry it byte for byte.
BODY = "OBX|1|CWE|RI-CRIT^Critical result^RIGW|1|36118008^PNEUMOTHORAX^SCT|||AA|||F\rNTE|1|L|Müller\r"


def alert(control_id: str) -> bytes:
    return (f"MSH|^~\\&|RI-GATEWAY|RIGW|PAGER|HOSP|20240115101500||ORU^R01^ORU_R01|{control_id}|P|"
            f"2.5.1||||||UNICODE UTF-8\r{BODY}").encode()


class Rig:
    def __init__(self, db_path, clock, *, after: float | None = None, route: str = "critical",
                 destinations: dict[str, Destination] = DESTINATIONS):
        self.clock = clock
        self.db_path = db_path
        self.outbox = Outbox.open(db_path, clock=clock)
        self.downs = {name: Downstream(clock) for name in destinations}
        ids = iter(f"ESC{n}" for n in range(1, 100))
        config = OutboundConfig(destinations=destinations, routes=(
            Route("critical", "alerts", ("pager",), escalate_to=("backup",),
                  escalate_after=after),))
        self.metrics = Metrics()
        self.service = DeliveryService(
            self.outbox, destinations, reactor=clock, poll_interval=5.0, metrics=self.metrics,
            connect=lambda dest: self.downs[dest.name].connect(dest),
            escalation=Escalation(config, control_ids=lambda: next(ids)))
        self.route = route

    def enqueue(self, control_id: str, *, purpose: str = "alerts",
                payload: bytes | None = None) -> None:
        self.outbox.enqueue([PlannedMessage("pager", self.route, purpose, control_id,
                                            payload or alert(control_id))],
                            source_control_id="IN-1")

    def rows(self) -> list[tuple[str, str, str, int | None]]:
        return [(r.destination, r.control_id, r.status, r.escalated_from)
                for r in self.outbox.list()]

    def escalations(self) -> float:
        return sum(self.metrics.get("ri_gateway_escalations_total", {"reason": reason})
                   for reason in ("dead_lettered", "undelivered"))


@pytest.fixture
def rig(db_path, clock):  # noqa: F811
    r = Rig(db_path, clock)
    yield r
    r.service.stopService()


def test_a_dead_lettered_alert_goes_to_the_escalation_destination(rig, db_path):  # noqa: F811
    rig.enqueue("A1")
    rig.service.startService()
    rig.downs["pager"].reply(ack("A1", "AR", "200"))
    (copy,) = rig.downs["backup"].received()
    original = alert("A1")
    msh, rest = copy.split(b"\r", 1)
    assert msh.split(b"|")[4:6] == [b"DESK", b"RADIOLOGY"] and msh.split(b"|")[9] == b"ESC1"
    assert rest == original.split(b"\r", 1)[1]  # the report part byte for byte (UTF-8 kept)
    assert msh.split(b"|")[2:4] + msh.split(b"|")[10:] == (
        original.split(b"\r")[0].split(b"|")[2:4] + original.split(b"\r")[0].split(b"|")[10:])
    rig.downs["backup"].reply(ack("ESC1"))
    assert rig.rows() == [("pager", "A1", "dead", None), ("backup", "ESC1", "delivered", 1)]
    trail = [(name, f.get("outbound_control_id"), f.get("reason"), f.get("escalated_from"))
             for name, _, f in events(db_path)]
    assert ("escalated", "A1", "dead_lettered", None) in trail
    assert ("enqueued", "ESC1", None, 1) in trail
    assert trail.index(("escalated", "A1", "dead_lettered", None)) < trail.index(
        ("delivered", "ESC1", None, None))
    assert rig.escalations() == 1
    listed = CliRunner().invoke(main, ["outbox", "list", "--db", db_path])
    assert listed.exit_code == 0 and listed.output.splitlines()[1].endswith("escalates 1")
    as_json = CliRunner().invoke(main, ["outbox", "list", "--db", db_path, "--json"])
    assert [json.loads(line)["escalated_from"] for line in as_json.output.splitlines()] == [None, 1]


def test_an_8859_1_alert_is_readdressed_in_8859_1(db_path, clock):  # noqa: F811
    # MSH-18 of the alert names its charset: the copy's new MSH-5/MSH-6 are written in it,
    # and an MSH holding a character outside ASCII (the first pager's facility) is read in
    # it, not as UTF-8 (which failed, and the alert was not escalated at all).
    backup = Destination(name="backup", endpoint="tcp:host=127.0.0.1:port=2",
                         addressing=Addressing("DESK", "KLINIKUM SÜD"))
    rig = Rig(db_path, clock, destinations={"pager": PAGER, "backup": backup})
    original = ("MSH|^~\\&|RI-GATEWAY|RIGW|PAGER|HÔPITAL|20240115101500||ORU^R01^ORU_R01|A1|P|"
                f"2.5.1||||||8859/1\r{BODY}").encode("latin-1")
    rig.enqueue("A1", payload=original)
    rig.service.startService()
    rig.downs["pager"].reply(ack("A1", "AR", "200"))
    (copy,) = rig.downs["backup"].received()
    msh, rest = copy.split(b"\r", 1)
    assert msh.decode("latin-1").split("|")[4:6] == ["DESK", "KLINIKUM SÜD"]
    assert msh.split(b"|")[9] == b"ESC1" and msh.split(b"|")[17] == b"8859/1"
    assert rest == original.split(b"\r", 1)[1]
    rig.service.stopService()


def test_an_alert_two_routes_page_at_once_escalates_as_the_route_that_escalates(
        db_path, clock):  # noqa: F811
    # A route on BI-RADS scores, listed first, and one on critical results with escalate_to
    # share the pager: a report with both gets one alert, and that alert must still escalate
    # when the pager refuses it.
    from test_routing import INBOUND, NOW, Header, birads, crit, report

    from gateway.routing import AlertPolicy, Router

    config = OutboundConfig(destinations=DESTINATIONS, routes=(
        Route("scores", "alerts", ("pager",), alert=AlertPolicy(on=frozenset({"scores"}))),
        Route("critical", "alerts", ("pager",), escalate_to=("backup",))))
    planned = Router(config).plan(inbound_text=INBOUND, header=Header(),
                                  report=report(modality_hint="MG"),
                                  result=[crit(), birads("5")], now=NOW)
    (page,) = planned
    outbox = Outbox.open(db_path, clock=clock)
    outbox.enqueue(planned, source_control_id="IN1")
    downs = {name: Downstream(clock) for name in DESTINATIONS}
    service = DeliveryService(outbox, DESTINATIONS, reactor=clock,
                              connect=lambda dest: downs[dest.name].connect(dest),
                              escalation=Escalation(config))
    service.startService()
    downs["pager"].reply(ack(page.control_id, "AR", "200"))
    assert len(downs["backup"].received()) == 1
    service.stopService()


def pager_down(db_path, clock, after: float, *control_ids: str) -> Rig:  # noqa: F811
    """A started rig whose pager refuses connections, with ``control_ids`` queued."""
    rig = Rig(db_path, clock, after=after)
    rig.downs["pager"].up = False
    for control_id in control_ids:
        rig.enqueue(control_id)
    rig.service.startService()
    return rig


def test_an_alert_undelivered_after_escalate_after_is_escalated_once(db_path, clock):  # noqa: F811
    rig = pager_down(db_path, clock, 60.0, "A1")
    clock.advance(55)
    assert rig.downs["backup"].connections == []  # not yet: 55 s
    clock.advance(10)  # the poll after 60 s
    assert [c for c in rig.downs["backup"].control_ids()] == ["ESC1"]
    rig.downs["backup"].reply(ack("ESC1"))
    # The original is still tried, and its dead-letter later escalates nothing more.
    for _ in range(10):
        clock.advance(20)
    assert rig.rows() == [("pager", "A1", "dead", None), ("backup", "ESC1", "delivered", 1)]
    reasons = [f["reason"] for name, _, f in events(db_path) if name == "escalated"]
    assert reasons == ["undelivered"] and rig.escalations() == 1
    rig.service.stopService()


def test_escalation_in_time_survives_a_restart(db_path, clock):  # noqa: F811
    first = pager_down(db_path, clock, 30.0, "A1")
    clock.advance(10)
    first.service.stopService()
    clock.advance(100)  # stopped past the deadline
    second = pager_down(db_path, clock, 30.0)  # the pager is still down after the restart
    # Its turn first: it refused the connection at once, and that was its turn (not one
    # whole ack_timeout more: a pager that failed an overdue alert has had its turn).
    assert second.downs["backup"].control_ids() == ["ESC1"]
    (row, _copy) = second.outbox.list()
    assert row.attempts == 2  # one before the stop, one after the start
    second.service.stopService()


def test_a_pager_silent_after_a_restart_gets_one_ack_timeout(db_path, clock):  # noqa: F811
    first = pager_down(db_path, clock, 30.0, "A1")
    clock.advance(10)
    first.service.stopService()
    clock.advance(100)  # stopped past the deadline
    second = Rig(db_path, clock, after=30.0)  # the pager takes the alert, answers nothing
    second.service.startService()
    assert second.downs["pager"].control_ids() == ["A1"]
    clock.advance(5)
    assert second.downs["backup"].connections == []  # its turn: one ack_timeout (10 s)
    clock.advance(5)
    assert second.downs["backup"].control_ids() == ["ESC1"]
    second.service.stopService()


def test_a_gateway_restarting_faster_than_the_pagers_turn_still_escalates(
        db_path, clock):  # noqa: F811
    # A crash loop: restarted every 8 s with the pager down. Each start gave the alerts
    # queued before it min(escalate_after, ack_timeout) = 10 s more for the pager, so the
    # alert never escalated, however often the pager failed it once it was overdue.
    pager = dataclasses.replace(PAGER, max_attempts=1000, backoff_initial=2.0,
                                backoff_max=2.0)
    destinations = {"pager": pager, "backup": BACKUP}
    rig = None
    for run in range(12):  # 96 s in all: far past escalate_after (30 s)
        rig = Rig(db_path, clock, after=30.0, destinations=destinations)
        rig.downs["pager"].up = False
        if run == 0:
            rig.enqueue("A1")
        rig.service.startService()
        clock.advance(4)
        clock.advance(4)
        if rig.downs["backup"].connections:
            break
        rig.service.stopService()
    assert rig.downs["backup"].control_ids() == ["ESC1"]
    # Once it had been overdue when the pager failed it: the restart after that one.
    assert run <= 5, run
    rig.service.stopService()


def test_alerts_pending_through_an_outage_go_to_their_pager_before_the_backup(
        db_path, clock):  # noqa: F811
    """After an outage every pending alert was past escalate_after at the start, and all of
    them paged the backup at once, while the pager (up again) took them a moment later:
    two people paged for each. Queued before the start, an alert first gets its pager's
    turn; one queued while running escalates on time as before."""
    first = pager_down(db_path, clock, 60.0, "A1", "A2")
    first.service.stopService()
    clock.advance(3600)  # an hour down: both long past escalate_after
    second = Rig(db_path, clock, after=60.0)
    second.service.startService()
    assert second.downs["pager"].control_ids() == ["A1"]
    second.downs["pager"].reply(ack("A1"))
    second.downs["pager"].reply(ack("A2"))
    for _ in range(4):
        clock.advance(5)
    assert second.downs["backup"].connections == []
    second.enqueue("A3")  # analysed after the start; the pager stops answering
    for _ in range(13):
        clock.advance(5)
    assert second.downs["backup"].control_ids() == ["ESC1"]  # A3 only, 60 s after it came
    assert [r[1:] for r in second.rows()] == [
        ("A1", "delivered", None), ("A2", "delivered", None), ("A3", "pending", None),
        ("ESC1", "pending", 3)]
    assert [f["reason"] for name, _, f in events(db_path) if name == "escalated"] == [
        "undelivered"]
    second.service.stopService()


def test_the_check_every_poll_reads_the_pending_alerts_only(db_path, clock):  # noqa: F811
    """The outbox keeps every delivered message until it is purged (millions): the check
    for alerts to escalate in time, every 5 s, must find the pending ones through an index,
    not read the whole table each time."""
    rig = Rig(db_path, clock, after=60.0)
    rig.enqueue("A1")
    statements: list[str] = []
    rig.outbox.conn.set_trace_callback(statements.append)
    rig.service.escalate_overdue()
    rig.outbox.conn.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().startswith("SELECT") and "FROM outbox" in s]
    assert reads
    for statement in reads:
        plan = " ".join(row[3] for row in rig.outbox.conn.execute(
            "EXPLAIN QUERY PLAN " + statement))
        assert "SCAN" not in plan, (statement, plan)


def test_retry_dead_keeps_dead_an_alert_its_escalation_delivered(db_path, clock):  # noqa: F811
    """An on-call admin re-queues the dead letters after the pager is fixed: the alert
    whose copy reached the backup desk must not page again (it did), nor the copy of an
    alert the first pager got in the end; an alert that reached no one goes again."""
    rig = Rig(db_path, clock, after=60.0)
    for control_id in ("A1", "A2", "A3"):
        rig.enqueue(control_id)
    rig.service.startService()
    rig.downs["pager"].reply(ack("A1", "AR", "200"))  # dead: escalated, and the desk takes it
    rig.downs["backup"].reply(ack("ESC1"))
    rig.downs["pager"].reply(ack("A2", "AR", "200"))  # dead: escalated, the desk refuses it too
    rig.downs["backup"].reply(ack("ESC2", "AR", "200"))
    rig.downs["pager"].up = False
    clock.advance(65)  # A3 undelivered past escalate_after: copied to the desk, which refuses
    rig.downs["backup"].reply(ack("ESC3", "AR", "200"))
    rig.downs["pager"].up = True
    clock.advance(20)
    rig.downs["pager"].reply(ack("A3"))  # the first pager got A3 in the end
    rig.service.stopService()
    assert rig.rows() == [
        ("pager", "A1", "dead", None), ("pager", "A2", "dead", None),
        ("pager", "A3", "delivered", None), ("backup", "ESC1", "delivered", 1),
        ("backup", "ESC2", "dead", 2), ("backup", "ESC3", "dead", 3)]
    retried = CliRunner().invoke(main, ["outbox", "retry", "--dead", "--db", db_path])
    assert retried.exit_code == 0, retried.output
    assert retried.output.splitlines() == [
        "re-queued 2 dead-lettered message(s)",
        "kept dead 1 for pager: the same alert was delivered as 4 "
        "(name it to send it again: outbox retry 1)",
        "kept dead 6 for backup: the same alert was delivered as 3 "
        "(name it to send it again: outbox retry 6)"]
    assert [r[2] for r in rig.rows()] == [
        "dead", "pending", "delivered", "delivered", "pending", "dead"]
    # Named, it goes again: the operator asked for that page.
    named = CliRunner().invoke(main, ["outbox", "retry", "1", "--db", db_path])
    assert (named.exit_code, named.output) == (0, "re-queued 1 (dead -> pending) for pager\n")


def test_an_escalated_copy_is_not_escalated_again(rig):
    rig.enqueue("A1")
    rig.service.startService()
    rig.downs["pager"].reply(ack("A1", "AR", "200"))
    rig.downs["backup"].reply(ack("ESC1", "AR", "200"))
    assert rig.rows() == [("pager", "A1", "dead", None), ("backup", "ESC1", "dead", 1)]
    assert rig.escalations() == 1


def test_results_and_other_routes_do_not_escalate(db_path, clock):  # noqa: F811
    rig = Rig(db_path, clock, route="other")
    rig.enqueue("A1")
    rig.route = "critical"
    rig.enqueue("R1", purpose="results")
    rig.service.startService()
    rig.downs["pager"].reply(ack("A1", "AR", "200"))
    rig.downs["pager"].reply(ack("R1", "AR", "200"))
    assert rig.downs["backup"].connections == []
    assert [r[2] for r in rig.rows()] == ["dead", "dead"]
    rig.service.stopService()


def test_an_outbox_from_before_escalation_is_upgraded_and_still_readable(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL,
        route TEXT NOT NULL, purpose TEXT NOT NULL, control_id TEXT NOT NULL,
        source_control_id TEXT, message_id INTEGER, payload BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL,
        delivered_at REAL, ack_code TEXT, last_error TEXT);
        INSERT INTO outbox (destination, route, purpose, control_id, payload, created_at)
        VALUES ('pager', 'critical', 'alerts', 'OLD1', x'4d5348', 1.0);""")
    conn.close()
    reader = Outbox.open(path, readonly=True)
    assert [(r.control_id, r.escalated_from) for r in reader.list()] == [("OLD1", None)]
    reader.conn.close()
    writer = Outbox.open(path)
    assert [(r.control_id, r.escalated_from) for r in writer.list()] == [("OLD1", None)]
    # The study an alert pages (one page per result per study) has its columns there too.
    assert {"escalated_from", "accession", "pages"} <= {
        row[1] for row in writer.conn.execute("PRAGMA table_info(outbox)")}
    # And the index that counts the alerts held behind an earlier one (gateway.held_alerts).
    assert "outbox_held" in {row[1] for row in writer.conn.execute("PRAGMA index_list(outbox)")}
    assert writer.held() == {}
    writer.conn.close()


def _config(route: str) -> str:
    return f"""
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port=1"
[destinations.backup]
endpoint = "tcp:host=127.0.0.1:port=2"
[routes.critical]
{route}
"""


@pytest.mark.parametrize(("route", "key", "message"), [
    ('type = "results"\ndestinations = ["pager"]\nescalate_to = ["backup"]',
     "routes.critical.escalate_to", 'only applies to routes of type "alerts"'),
    ('type = "alerts"\ndestinations = ["pager"]\nescalate_to = ["pager", "backup"]',
     "routes.critical.escalate_to", "must not name the route's own destinations: pager"),
    ('type = "alerts"\ndestinations = ["pager"]\nescalate_to = ["desk"]',
     "routes.critical.escalate_to", "names unknown destination 'desk'"),
    ('type = "alerts"\ndestinations = ["pager"]\nescalate_to = []',
     "routes.critical.escalate_to", "must be a non-empty list"),
    ('type = "alerts"\ndestinations = ["pager"]\nescalate_after = 60',
     "routes.critical.escalate_after", "needs escalate_to"),
    ('type = "alerts"\ndestinations = ["pager"]\nescalate_to = ["backup"]\nescalate_after = 0',
     "routes.critical.escalate_after", "above 0"),
    ('type = "alerts"\ndestinations = ["pager"]\nescalate_to = ["backup"]\n'
     'escalate_after = "soon"', "routes.critical.escalate_after", ""),
])
def test_escalation_settings_are_checked_at_start(tmp_path, route, key, message):
    path = tmp_path / "gateway.toml"
    path.write_text(_config(route))
    with pytest.raises(ConfigError) as raised:
        outbound_config(load_settings(str(path), {}, {}).sections)
    assert raised.value.key == key and message in str(raised.value)


def test_escalation_settings_from_the_environment(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(_config('type = "alerts"\ndestinations = ["pager"]'))
    settings = load_settings(str(path), {}, {"RI_GATEWAY_ROUTES_CRITICAL_ESCALATE_TO": "backup",
                                            "RI_GATEWAY_ROUTES_CRITICAL_ESCALATE_AFTER": "90"})
    (route,) = outbound_config(settings.sections).routes
    assert (route.escalate_to, route.escalate_after) == (("backup",), 90.0)
