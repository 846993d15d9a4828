"""``ri-gateway serve`` with process workers when a worker dies: a worker killed from
outside (as the kernel's OOM killer does) is replaced and the reports that follow are
analysed, where every later report used to stay unanalysed until a restart."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from test_pipeline_e2e import CRITICAL_TEXT, free_port, oru, rig, wait_for  # noqa: F401

CONFIG = """
[analysis]
workers = 1
executor = "process"
quiet_period = 0

[http]
enabled = false
"""


def _workers(parent: int) -> list[int]:
    """The analysis worker processes of the gateway process ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] not in "ZX" and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _status(rig, control_id: str) -> str | None:  # noqa: F811
    events = [e["event"] for e in rig.audit(control_id)]
    for status in ("analysed", "analysis_failed"):
        if status in events:
            return status
    return None


def test_a_worker_killed_from_outside_is_replaced_and_analysis_goes_on(rig):  # noqa: F811
    mllp = free_port()
    gateway = rig.serve(CONFIG, mllp)
    assert rig.send(mllp, "WK1", oru("WK1", "ACC9101", "MRN9101", CRITICAL_TEXT)).returncode == 0
    wait_for("the first report analysed", lambda: _status(rig, "WK1"))
    assert _status(rig, "WK1") == "analysed"
    (worker,) = wait_for("the worker process", lambda: _workers(gateway.pid))
    os.kill(worker, signal.SIGKILL)
    wait_for("the worker gone", lambda: worker not in _workers(gateway.pid))
    for n in (2, 3):
        cid = f"WK{n}"
        assert rig.send(mllp, cid, oru(cid, f"ACC910{n}", f"MRN910{n}",
                                       CRITICAL_TEXT)).returncode == 0
        wait_for(f"{cid} analysed", lambda c=cid: _status(rig, c))
        assert _status(rig, cid) == "analysed"
    assert worker not in _workers(gateway.pid) and _workers(gateway.pid)
    log = (rig.tmp / "serve.log").read_text()
    assert log.count("analysis.pool_restarted") == 1 and "worker_died" in log
    assert "MRN910" not in log and "pneumothorax" not in log.lower()


def test_the_workers_of_a_gateway_killed_outright_end_with_it(tmp_path):
    # An idle worker waits on a queue whose writing end it holds too: after a SIGKILL (or
    # the OOM killer) took the gateway, its workers lived on, one more set at each restart.
    import time

    from gateway_process import GatewayProcess, json_event

    gateway = GatewayProcess(tmp_path / "audit.sqlite3", RI_GATEWAY_ANALYSIS_EXECUTOR="process",
                             RI_GATEWAY_ANALYSIS_WORKERS="1").start()
    workers: list[int] = []
    try:
        gateway.output.wait_for(json_event("analysis.ready"))
        workers = wait_for("the worker process", lambda: _workers(gateway.proc.pid))
        gateway.kill()
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "the worker outlived its gateway"
            time.sleep(0.1)
    finally:
        for pid in workers:
            if Path(f"/proc/{pid}").exists() and _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False
