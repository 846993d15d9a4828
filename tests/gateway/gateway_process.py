"""Run ``ri-gateway`` commands as real processes and talk to them over loopback."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
FAKE_SERVE = HERE / "gateway_serve_fake.py"
WAIT = 60.0  # seconds: an upper bound for start-up on a slow machine, never a sleep


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RI_GATEWAY_")}
    env.update({"RI_GATEWAY_HTTP_ENABLED": "false", "RI_GATEWAY_ANALYSIS_WORKERS": "1",
                "RI_GATEWAY_ANALYSIS_EXECUTOR": "thread", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = WAIT
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT,
                          env=env or cli_env(), capture_output=True, text=True, timeout=timeout)


class LineReader:
    """Collects a process's output lines on a thread so tests can wait for one."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def drain(self, quiet: float = 1.0) -> list[str]:
        """Every line so far, once none has come for ``quiet`` seconds (all of an exited
        process's output)."""
        while True:
            try:
                self.seen.append(self.lines.get(timeout=quiet))
            except queue.Empty:
                return self.seen

    def wait_for(self, predicate, timeout: float = WAIT):
        """The first line (seen before or arriving now) that matches ``predicate``."""
        for line in self.seen:
            if predicate(line):
                return line
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"not seen within {timeout}s; output:\n{''.join(self.seen)}")
            self.seen.append(line)
            if predicate(line):
                return line


def json_event(name: str, **match):
    def predicate(line: str):
        try:
            event = json.loads(line)
        except ValueError:
            return False
        return event.get("event") == name and all(event.get(k) == v for k, v in match.items())
    return predicate


class GatewayProcess:
    """``ri-gateway serve`` (with the fake engine) on a free loopback port."""

    def __init__(self, db: Path, **env: str) -> None:
        self.db = db
        self.env = cli_env(**env)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.preexec = None  # run in the child before it starts (signal dispositions)

    def launch(self) -> "GatewayProcess":
        """Start the process without waiting for it to listen."""
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_SERVE), "serve", "--db", str(self.db),
             "--mllp", "tcp:0:interface=127.0.0.1"],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=self.preexec)
        self.output = LineReader(self.proc.stdout)
        return self

    def start(self) -> "GatewayProcess":
        self.launch()
        line = self.output.wait_for(json_event("listening", service="mllp"))
        self.port = json.loads(line)["port"]
        return self

    def http_port(self) -> int:
        """The REST listener's port (started with ``RI_GATEWAY_HTTP_ENABLED=true`` and an
        endpoint on port 0), from its ``listening`` line."""
        line = self.output.wait_for(json_event("listening", service="http"))
        return json.loads(line)["port"]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)


def exchange(port: int, payload: bytes, timeout: float = WAIT) -> bytes | None:
    """Send one framed payload on a new connection; the reply frame or None if closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\x0b" + payload + b"\x1c\x0d")
        data = b""
        while b"\x1c\x0d" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                assert data == b"", data
                return None
            data += chunk
        assert data.startswith(b"\x0b") and data.endswith(b"\x1c\x0d"), data
        return data[1:-2]
