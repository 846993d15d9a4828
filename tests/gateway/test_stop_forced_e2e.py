"""``ri-gateway serve`` stopped while an analysis thread never returns: how long the stop
waits for it (``[analysis] stop_grace``), and a second stop signal during that wait.

A second SIGINT while the process waited at exit used to be ignored (the wait went on) or,
once Python's own exit waited for the workers, printed a ``KeyboardInterrupt`` traceback.
It forces the stop now: ``shutdown.forced`` logged, workers not waited for, exit 128 + the
signal's number, and nothing ACKed lost."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from gateway_process import GatewayProcess, exchange, json_event
from gateway_samples import oru
from test_stop_stragglers_e2e import outcome, wait


def hung_gateway(tmp_path, **env: str) -> tuple[GatewayProcess, object]:
    """A gateway with one thread worker analysing a report that waits for ``never``."""
    never = tmp_path / "never"
    gateway = GatewayProcess(tmp_path / "audit.sqlite3", RI_GATEWAY_ANALYSIS_QUIET_PERIOD="0",
                             **env).start()
    gateway.output.wait_for(json_event("analysis.ready"))
    assert b"MSA|AA" in exchange(gateway.port, oru("HUNG1", report=f"WAITFOR:{never};"))
    wait("the analysis running", (tmp_path / "never.started").exists)
    return gateway, never


def stopped_by(gateway: GatewayProcess, signum: int) -> float:
    """Send ``signum`` and wait until the reactor has stopped: the process now waits for
    its analysis thread.  When that wait began."""
    gateway.proc.send_signal(signum)
    gateway.output.wait_for(lambda line: "Main loop terminated" in line)
    return time.monotonic()


def all_output(gateway: GatewayProcess) -> str:
    """Everything the exited process wrote (stdout and stderr)."""
    return "".join(gateway.output.drain())


def test_a_second_sigint_during_the_wait_for_workers_forces_the_stop(tmp_path):
    # A grace long enough that only the forced stop can end the process in time.
    gateway, never = hung_gateway(tmp_path, RI_GATEWAY_ANALYSIS_STOP_GRACE="120")
    try:
        started = stopped_by(gateway, signal.SIGINT)
        gateway.proc.send_signal(signal.SIGINT)
        try:
            code = gateway.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("a second SIGINT did not end the stop") from None
        assert code == 128 + signal.SIGINT and time.monotonic() - started < 30
        line = gateway.output.wait_for(json_event("shutdown.forced"), timeout=5)
        assert json.loads(line)["signal"] == "SIGINT"
        assert json.loads(line)["exit_status"] == 130
        output = all_output(gateway)
        assert "Traceback" not in output and "KeyboardInterrupt" not in output
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
        never.touch()
    # ACKed and not analysed: still there, analysed at the next start.
    assert outcome(tmp_path / "audit.sqlite3", "HUNG1") == []
    restarted = GatewayProcess(tmp_path / "audit.sqlite3").start()
    try:
        wait("the report analysed after the restart",
             lambda: outcome(tmp_path / "audit.sqlite3", "HUNG1") == ["analysed"])
    finally:
        assert restarted.stop() == 0


def test_repeated_sigints_at_once_end_the_process_without_a_traceback(tmp_path):
    # Ctrl-C pressed again at once, or `timeout` sending the signal to the process and to
    # its group: whichever phase of the stop each lands in, no traceback and a known status.
    gateway = GatewayProcess(tmp_path / "audit.sqlite3",
                             RI_GATEWAY_ANALYSIS_EXECUTOR="process").start()
    gateway.output.wait_for(json_event("analysis.ready"))
    for _ in range(3):
        if gateway.proc.poll() is None:
            gateway.proc.send_signal(signal.SIGINT)
    code = gateway.proc.wait(timeout=30)
    output = all_output(gateway)
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert code in (0, 130)
    assert ('"shutdown.forced"' in output) == (code == 130)


def test_the_stop_grace_is_a_setting(tmp_path):
    gateway, never = hung_gateway(tmp_path, RI_GATEWAY_ANALYSIS_STOP_GRACE="0.5")
    try:
        started = stopped_by(gateway, signal.SIGTERM)
        assert gateway.proc.wait(timeout=30) == 0
        # The default (5 s) would not be over yet.
        assert time.monotonic() - started < 4
        line = json.loads(gateway.output.wait_for(json_event("analysis.abandoned"), timeout=5))
        assert line["grace_seconds"] == 0.5 and line["messages"] == ["HUNG1"]
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
        never.touch()
