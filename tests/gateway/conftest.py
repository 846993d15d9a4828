"""When a scenario with real ``serve``/``sink`` processes fails, its report carries the end
of each process's log: a CI run that times out waiting on the gateway then says what the
gateway was doing (the logs hold no segment contents, and the data is synthetic).
And the local time zone a test's commands run under (``local_zone``, ``utc_zone``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

LOG_LINES = 60


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    rig = getattr(item, "funcargs", {}).get("rig")
    if report.when != "call" or not report.failed or rig is None:
        return
    for log in sorted(Path(rig.tmp).glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        report.sections.append((f"{log.name} (last {LOG_LINES} lines)",
                                "\n".join(lines[-LOG_LINES:])))


@pytest.fixture
def local_zone(monkeypatch):
    """Set the local time zone (TZ) of this process, for commands run in it; the machine's
    is restored after. The command line reads and shows dates in local time, and a test's
    expectations must not depend on the zone of the machine it runs on."""
    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def utc_zone(local_zone):
    """Local time is UTC for this test (dates in its data and options are read alike)."""
    local_zone("UTC")
