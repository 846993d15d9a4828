"""``ri-gateway serve`` stopped with SIGTERM as an operator (or systemd) stops it: before
its analysis workers are ready, and under a burst of MLLP traffic.  It exits 0 with
``shutdown`` logged, loses no ACKed message and leaves no worker process behind."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time

from gateway_process import GatewayProcess, json_event
from gateway_samples import frame, oru


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (its analysis workers, the resource tracker)."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found |= {int(child) for child in f.read().split()}
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return found


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # reaped between the open and the read
        return False


def assert_gone(pids: set[int]) -> None:
    # Killed at the stop, or ending within a second of their gateway (parent watch).
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"left running: {[p for p in pids if running(p)]}"
        time.sleep(0.05)


def logged(gateway: GatewayProcess) -> list[dict]:
    """The JSON lines of the exited process (which printed no traceback)."""
    output = gateway.output.drain()
    assert not any("Traceback" in line for line in output), "".join(output)
    return [json.loads(line) for line in output if line.startswith("{")]


def test_a_stop_before_the_workers_are_ready_is_no_error(tmp_path):
    # The engines' warm-up, cancelled by the stop, was logged as the engine unavailable
    # (analysis.unavailable, error PoolClosed, at ERROR) on every stop soon after a start.
    gateway = GatewayProcess(tmp_path / "audit.sqlite3", RI_GATEWAY_ANALYSIS_EXECUTOR="process",
                             RI_GATEWAY_ANALYSIS_WORKERS="2",
                             FAKE_ENGINE_START_DELAY="60").start()
    workers = children(gateway.proc.pid)
    assert gateway.stop() == 0
    lines = logged(gateway)
    events = [line["event"] for line in lines]
    assert "shutdown" in events and "analysis.start_cancelled" in events
    assert "analysis.ready" not in events
    assert [line for line in lines if line.get("level") == "error"] == []
    assert_gone(workers)


def test_sigterm_under_mllp_load_loses_no_acked_message_and_leaves_no_worker(tmp_path):
    db = tmp_path / "audit.sqlite3"
    gateway = GatewayProcess(db, RI_GATEWAY_ANALYSIS_EXECUTOR="process",
                             RI_GATEWAY_ANALYSIS_WORKERS="2").start()
    gateway.output.wait_for(json_event("analysis.ready"))
    acked: list[str] = []
    stop_sending = threading.Event()

    def sender(k: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
                n = 0
                while not stop_sending.is_set():
                    n += 1
                    control_id = f"L{k}-{n}"
                    sock.sendall(frame(oru(control_id)))
                    reply = b""
                    while b"\x1c\r" not in reply:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return  # closed by the stop: this one was not ACKed
                        reply += chunk
                    if b"MSA|AA" in reply:
                        acked.append(control_id)
        except OSError:
            pass  # reset by the stop

    senders = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for thread in senders:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 200:
            assert time.monotonic() < deadline, "the burst was not ACKed"
            time.sleep(0.02)
        workers = children(gateway.proc.pid)
        assert gateway.stop() == 0
    finally:
        stop_sending.set()
        for thread in senders:
            thread.join(30)
    assert "shutdown" in [line["event"] for line in logged(gateway)]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        stored = {control_id for (control_id,) in con.execute("SELECT control_id FROM messages")}
    assert [control_id for control_id in acked if control_id not in stored] == []
    assert_gone(workers)
