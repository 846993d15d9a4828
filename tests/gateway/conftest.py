"""When a scenario with real ``serve``/``sink`` processes fails, its report carries the end
of each process's log: a CI run that times out waiting on the gateway then says what the
gateway was doing (the logs hold no segment contents, and the data is synthetic)."""

from __future__ import annotations

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
