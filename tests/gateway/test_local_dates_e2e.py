"""Dates and times on the command line are the gateway machine's local time.

An administrator types ``--since 2026-11-01`` meaning midnight where the hospital is, and
reads the text tables in that time; the audit log and ``--json`` keep UTC. Each command runs
as a real process with ``TZ`` set in its environment, whatever the zone of the machine
running the tests, and reports are stored just before and just after a local midnight.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.audit import inferences_op
from test_reports import CT_CHEST, NODULE_6_MONTHS, NODULE_STABLE, PNEUMOTHORAX, Log

ROOT = Path(__file__).resolve().parents[2]
ZONES = ["America/New_York", "Asia/Kolkata", "UTC"]

# The commands read TZ through the C library, which needs the system's zone files.
pytestmark = pytest.mark.skipif(not Path("/usr/share/zoneinfo/America/New_York").exists(),
                                reason="no system time zone database (tzdata)")


def cli(zone: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RI_GATEWAY_")}
    env.update(TZ=zone, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def utc(zone: str, local: str) -> str:
    """The stored form (UTC, ``Z``) of a wall-clock time in ``zone``."""
    when = dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone))
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def shown(zone: str, local: str) -> str:
    """How a text table shows that wall-clock time: with the offset in force then."""
    return dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).isoformat()


# Reports with a critical result on either side of the local midnights that open and close
# November 2026 (New York leaves summer time on 1 November: -04:00, then -05:00).
AROUND_MIDNIGHT = {"OCT31-2330": "2026-10-31T23:30:00", "NOV01-0030": "2026-11-01T00:30:00",
                   "NOV30-2330": "2026-11-30T23:30:00", "DEC01-0030": "2026-12-01T00:30:00"}


@pytest.fixture(params=ZONES)
def critical_log(request, tmp_path):
    zone = request.param
    log = Log(str(tmp_path / "audit.sqlite3"))
    for n, (control_id, local) in enumerate(AROUND_MIDNIGHT.items()):
        log.add(control_id, f"MRN-{n}", f"ACC-{n}", CT_CHEST, local[:10].replace("-", ""),
                PNEUMOTHORAX, received_at=utc(zone, local))
    log.audit.close()
    return zone, log.path


def test_a_window_without_an_offset_is_local_midnight_to_local_midnight(critical_log):
    # In UTC-5 the month read as UTC missed the evening of 30 November and counted the
    # evening of 31 October; in UTC+5:30 it missed the first hours of 1 November.
    zone, path = critical_log
    window = ("--since", "2026-11-01", "--until", "2026-12-01")
    rows = [json.loads(line) for line in
            cli(zone, "report", "critical", "--db", path, "--json", *window).stdout.splitlines()]
    assert [r["control_id"] for r in rows] == ["NOV01-0030", "NOV30-2330"]
    # JSON stays UTC, for programs.
    assert [r["received_at"] for r in rows] == [utc(zone, AROUND_MIDNIGHT["NOV01-0030"]),
                                               utc(zone, AROUND_MIDNIGHT["NOV30-2330"])]
    # A date-time without an offset is local too.
    rows = cli(zone, "report", "critical", "--db", path, "--json",
               "--since", "2026-11-30T23:00:00", "--until", "2026-12-01T00:00").stdout
    assert [json.loads(line)["control_id"] for line in rows.splitlines()] == ["NOV30-2330"]


def test_a_date_with_an_offset_is_taken_as_given(critical_log):
    zone, path = critical_log
    since = "2026-11-01T00:00:00+05:30"
    until = "2026-12-01T00:00:00Z"
    rows = cli(zone, "report", "critical", "--db", path, "--json", "--since", since,
               "--until", until).stdout.splitlines()
    start, end = (dt.datetime.fromisoformat(v) for v in (since, until))
    expected = [c for c, local in AROUND_MIDNIGHT.items()
                if start <= dt.datetime.fromisoformat(utc(zone, local)) < end]
    assert [json.loads(line)["control_id"] for line in rows] == expected


def test_the_text_table_shows_local_times_with_their_offset(critical_log):
    zone, path = critical_log
    lines = cli(zone, "report", "critical", "--db", path).stdout.splitlines()
    header, rows = lines[0], lines[1:-1]
    assert header.split()[:3] == ["status", "received", "(local)"]
    assert [row.split()[1] for row in rows] == [shown(zone, local)
                                                for local in AROUND_MIDNIGHT.values()]
    # The columns stay aligned whatever the offset.
    assert len({row.index("ACC-") for row in rows}) == 1
    assert header.index("accession") == rows[0].index("ACC-")


@pytest.mark.parametrize("zone", ZONES)
def test_a_follow_up_is_on_time_or_late_by_the_local_day_of_its_exam(tmp_path, zone):
    # "CT chest in 6 months" from 1 January 2026: due 1 July. With no tolerance, an exam on
    # the evening of 1 July is on time and one just after midnight is late, in local days:
    # read as UTC days, New York's evening exam was late (2 July in UTC) and Kolkata's
    # early-morning one on time (still 1 July in UTC).
    log = Log(str(tmp_path / "audit.sqlite3"))
    exams = {"EVENING": "2026-07-01T23:30:00", "AFTER-MIDNIGHT": "2026-07-02T00:30:00"}
    for n, (name, local) in enumerate(exams.items()):
        log.add(f"{name}-REC", f"MRN-{n}", f"ACC-{n}A", CT_CHEST, "20260101", NODULE_6_MONTHS,
                received_at=utc(zone, "2026-01-01T10:00:00"))
        log.add(f"{name}-EXAM", f"MRN-{n}", f"ACC-{n}B", CT_CHEST, local[:10].replace("-", ""),
                NODULE_STABLE, received_at=utc(zone, local))
    log.audit.close()
    args = ("report", "followups", "--db", log.path, "--as-of", "2026-12-01", "--tolerance", "0")
    items = {item["control_id"]: item
             for item in map(json.loads, cli(zone, *args, "--json").stdout.splitlines())}
    assert {c: (i["due"], i["status"], i["timing"]) for c, i in items.items()} == {
        "EVENING-REC": ("2026-07-01", "completed", "on_time"),
        "AFTER-MIDNIGHT-REC": ("2026-07-01", "completed", "late")}
    assert items["EVENING-REC"]["completed_by"]["received_at"] == utc(zone, exams["EVENING"])
    lines = cli(zone, *args).stdout.splitlines()
    assert lines[0].split()[:4] == ["status", "due", "received", "(local)"]
    assert [line.split(") ")[-1] for line in lines[1:-1]] == [
        f"{shown(zone, exams['EVENING'])}, on time",
        f"{shown(zone, exams['AFTER-MIDNIGHT'])}, late"]
    assert lines[1].split()[2] == shown(zone, "2026-01-01T10:00:00")


def other_day_zone() -> str:
    """A zone whose date is not UTC's now (UTC+14 from 10:00 UTC, UTC-12 before it)."""
    return "Etc/GMT-14" if dt.datetime.now(dt.timezone.utc).hour >= 10 else "Etc/GMT+12"


def test_today_is_the_local_day(tmp_path):
    # report followups' default --as-of, and audit purge's "not yet due": both the local
    # day, so a recommendation falls due on the same day for both.
    zone = other_day_zone()
    before = dt.datetime.now(ZoneInfo(zone)).date()
    log = Log(str(tmp_path / "audit.sqlite3"))
    for n, due in enumerate((before - dt.timedelta(days=1), before)):
        mid = log.add(f"DUE-{due}", f"MRN-{n}", f"ACC-{n}", CT_CHEST, "20240101",
                      "FINDINGS: Normal chest.")
        log.audit.run(inferences_op(mid, 1, f"ACC-{n}", [{
            "kind": "followupRecommendation", "effectiveAt": due.isoformat(),
            "recommendedProcedure": {"kind": "imagingProcedureRecommendation",
                                     "imagingProcedures": [{"modality": {"coding": [{
                                         "system": "http://snomed.info/sct",
                                         "code": "77477000", "display": "CT"}]}}]}}]))
    log.audit.close()
    summary = cli(zone, "report", "followups", "--db", log.path).stdout.splitlines()[-1]
    purged = json.loads(cli(zone, "audit", "purge", "--db", log.path, "--before", "2025-01-01",
                            "--dry-run", "--json").stdout)
    after = dt.datetime.now(ZoneInfo(zone)).date()
    if before != after:  # local midnight passed while the commands ran
        pytest.skip("the local day changed during the test")
    assert summary.startswith("2 tracked follow-up recommendation(s): 0 completed, 1 open, "
                              "1 overdue, 0 undated; completed 0% of those done or due by "
                              f"{before.isoformat()};")
    assert (purged["messages"], purged["kept"]) == (1, {"followup_open": 1})


def test_audit_tail_shows_local_times_and_json_keeps_utc(tmp_path):
    zone = "America/New_York"
    log = Log(str(tmp_path / "audit.sqlite3"))
    log.add("TAIL1", "MRN-1", "ACC-1", CT_CHEST, "20261130", NODULE_STABLE,
            received_at=utc(zone, "2026-11-30T23:30:00"))
    log.audit.close()
    events = [json.loads(line) for line in
              cli(zone, "audit", "tail", "--db", log.path, "--json").stdout.splitlines()]
    text = cli(zone, "audit", "tail", "--db", log.path).stdout.splitlines()
    assert [e["time"].endswith("Z") for e in events] == [True] * len(events)
    assert [line.split()[0] for line in text] == [
        dt.datetime.fromisoformat(e["time"]).astimezone(ZoneInfo(zone)).isoformat(
            timespec="milliseconds") for e in events]
    assert text[0].startswith("2026-11-30T23:30:00.000-05:00 received")
