"""Load benchmark for the MLLP ACK path.

Several persistent connections (default 8) each send a ~3 KB ORU^R01 and wait for its
ACK before sending the next one.  In the same run the same load goes to three servers,
each in its own process:

* ``gateway``  -- ``ri-gateway serve`` on its defaults: decode, MSH, the content check
  (``[mllp] map_before_ack = "check"``: bad content is answered AE), durable commit to
  SQLite (WAL, synchronous=FULL, group commit, duplicate check in the commit), then ACK;
  mapping and analysis run in the worker pool, held back while messages keep arriving
  (``[analysis] quiet_period``) for at most ``max_wait``, which the benchmark sets to
  outlast the warm-up and the measured window (the default, 5 s, is shorter than both
  together);
* ``gateway-full`` -- the same with ``map_before_ack = "full"``: the whole mapping to RI
  requests runs before the ACK (the default before the check existed);
* ``gateway-fast`` -- the same with ``map_before_ack = "none"``: the ACK path reads MSH
  only;
* ``gateway-fast-busy`` -- ``gateway-fast`` with ``quiet_period = 0``: analysis starts at
  once and runs beside the listener for the whole run, as under sustained overload
  (or after ``max_wait``): the ACK path's rate with analysis competing for the CPU;
* ``floor``    -- a minimal Twisted server on the project's own MLLP framing that answers
  every frame with a fixed ACK: the floor of this stack;
* ``python-hl7`` -- python-hl7's asyncio MLLP server answering a fixed ACK.

It prints messages/s, p50 and p99 ACK latency for each, the ratios against the floor, and
the server process's CPU time per message (``cpu us``: user + system time of the server's
main process over the whole load, warm-up included, divided by every message it answered;
analysis worker processes are not in it), and the same for this load generator (``load
us``; it shares the machine, and on a small one its share bounds what is left for the
server).  On a shared machine the rate moves with what else runs; the CPU per message moves
much less, so compare that between runs.
``--servers`` picks some of them (the floor always runs: the ratios need it).
Target for the gateway: at least 25% of the floor's rate, p99 under 20 ms.

    python bench/load.py [--connections 8] [--seconds 5] [--size 3072]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED_ACK = b"MSH|^~\\&|RIGW|RAD|RIS|HOSP|20240115101500||ACK^R01^ACK|ACK1|P|2.5.1\rMSA|AA|1"


def oru(control_id: str, size: int) -> bytes:
    """A synthetic radiology ORU^R01 of about ``size`` bytes."""
    head = [
        f"MSH|^~\\&|RIS|HOSP|RIGW|RAD|20240115101500||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        "PID|1||MRN12345^^^HOSP^MR||DOE^JANE||19600214|F",
        "PV1|1|O",
        "ORC|RE|PLC1001|FIL2002",
        "OBR|1|PLC1001|FIL2002|71250^CT CHEST WO CONTRAST^CPT||20240115093000|20240115094500"
        "|||||||||||ACC3003||||20240115101000|||F",
    ]
    sentences = [
        "FINDINGS: The lungs are clear without focal consolidation.",
        "There is a 6 mm nodule in the right upper lobe, previously 5 mm.",
        "No pleural effusion. No pneumothorax.",
        "The heart size is normal. The mediastinum is unremarkable.",
        "IMPRESSION: Small right upper lobe nodule, follow-up CT in 12 months recommended.",
    ]
    lines = []
    body = "\r".join(head)
    i = 0
    while len(body) + sum(len(l) + 1 for l in lines) < size - 60:
        lines.append(f"OBX|{len(lines) + 1}|TX|18782-3^Radiology Study observation^LN||"
                     f"{sentences[i % len(sentences)]}||||||F")
        i += 1
    return (body + "\r" + "\r".join(lines) + "\r").encode("ascii")


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]
    errors: int
    cpu_per_message: float | None = None  # seconds of server CPU per answered message
    load_cpu_per_message: float | None = None  # the same for this load generator

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where unavailable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def _connection(port: int, size: int, prefix: str, stop_at: float, warm_until: float,
                      latencies: list[float], errors: list[int], answered: list[int],
                      patients: int = 1) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0  # in the measured window
    number = 0  # every message, warm-up included: each has its own control id
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                break
            # A repeated control id would be answered as a duplicate (a lookup, no insert).
            message = oru(f"{prefix}{number}", size)
            if patients > 1:  # one patient (the default) is one queue in the pipeline
                message = message.replace(b"MRN12345", b"MRN%05d" % (number % patients))
            payload = b"\x0b" + message + b"\x1c\x0d"
            number += 1
            start = time.perf_counter()
            writer.write(payload)
            reply = await reader.readuntil(b"\x1c\x0d")
            elapsed = time.perf_counter() - start
            answered[0] += 1
            if b"MSA|AA|" not in reply and b"MSA|CA|" not in reply:
                errors[0] += 1
            if start >= warm_until:  # warm-up messages are not counted
                latencies.append(elapsed)
                sent += 1
    finally:
        writer.close()
    return sent


async def _load(port: int, connections: int, seconds: float, size: int, name: str,
                warmup: float, pid: int | None = None, patients: int = 1) -> Result:
    cpu_before = _cpu_seconds(pid)
    load_before = time.process_time()
    answered = [0]
    start = time.perf_counter()
    warm_until = start + warmup
    stop_at = warm_until + seconds
    latencies: list[float] = []
    errors = [0]
    run_id = f"{int(time.time() * 1000) % 100000:05d}"
    counts = await asyncio.gather(*[
        _connection(port, size, f"B{run_id}C{c}N", stop_at, warm_until, latencies, errors,
                    answered, patients)
        for c in range(connections)])
    cpu_after = _cpu_seconds(pid)
    load_cpu = (time.process_time() - load_before) / answered[0] if answered[0] else None
    cpu = None
    if cpu_before is not None and cpu_after is not None and answered[0]:
        cpu = (cpu_after - cpu_before) / answered[0]
    return Result(name, sum(counts), seconds, latencies, errors[0], cpu, load_cpu)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


# --- the two baseline servers (run as `python bench/load.py --serve KIND PORT`) -------------

def serve_floor(port: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from mllp.server import MLLPServerFactory

    class FixedAck:
        def handle(self, payload: bytes, conn: object) -> bytes:
            return FIXED_ACK

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(
        MLLPServerFactory(FixedAck(), idle_timeout=None, max_connections=1000))
    reactor.run()


def serve_python_hl7(port: int) -> None:
    import hl7.mllp

    async def client(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while True:
                await reader.readblock()
                writer.writeblock(FIXED_ACK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await hl7.mllp.start_hl7_server(client, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _start(kind: str, port: int, tmp: str, window: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if kind.startswith("gateway"):
        cmd = [sys.executable, "-m", "gateway.cli", "serve", "--db", f"{tmp}/{kind}.sqlite3",
               "--mllp", f"tcp:{port}:interface=127.0.0.1"]
        # WARNING: no per-message log line (INFO writes one JSON line per message).
        env.update({"RI_GATEWAY_HTTP_ENABLED": "false", "RI_GATEWAY_LOGGING_LEVEL": "WARNING"})
        if kind == "gateway-full":
            env["RI_GATEWAY_MLLP_MAP_BEFORE_ACK"] = "full"
        if kind.startswith("gateway-fast"):
            env["RI_GATEWAY_MLLP_MAP_BEFORE_ACK"] = "none"
        if kind.endswith("-busy"):
            env["RI_GATEWAY_ANALYSIS_QUIET_PERIOD"] = "0"
        elif kind != "gateway-defaults":  # bench/soak.py: the analysis settings as shipped
            # Analysis held back for the whole run: these rows measure the ACK path alone.
            env["RI_GATEWAY_ANALYSIS_MAX_WAIT"] = str(window + 10)
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", kind, str(port)]
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


SERVERS = ("floor", "gateway", "gateway-full", "gateway-fast", "gateway-fast-busy", "python-hl7")


@contextlib.contextmanager
def serving(kind: str, tmp: str, window: float = 0.0) -> Iterator[tuple[int, subprocess.Popen]]:
    """Server ``kind`` started (files in ``tmp``) and listening: (its port, its process);
    stopped (SIGTERM, then SIGKILL after 30 s) on leaving."""
    port = _free_port()
    proc = _start(kind, port, tmp, window)
    try:
        _wait_port(port, proc)
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(connections: int, seconds: float, size: int, warmup: float,
        servers: tuple[str, ...] = SERVERS) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in [k for k in SERVERS if k == "floor" or k in servers]:
            with serving(kind, tmp, warmup + seconds) as (port, proc):
                results.append(asyncio.run(_load(port, connections, seconds, size, kind, warmup,
                                                 proc.pid)))
    return results


def report(results: list[Result], connections: int, size: int) -> str:
    floor = next(r for r in results if r.name == "floor")
    lines = [f"{connections} connections, {size}-byte ORU^R01, {os.cpu_count()} CPUs",
             f"{'server':<17} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs floor':>9} {'errors':>7}"
             f" {'cpu us':>7} {'load us':>8}"]
    for r in results:
        cpu = _micros(r.cpu_per_message, 7)
        lines.append(f"{r.name:<17} {r.rate:>9.0f} {r.percentile(0.5):>8.2f} "
                     f"{r.percentile(0.99):>8.2f} {r.rate / floor.rate:>8.0%} {r.errors:>7} {cpu}"
                     f" {_micros(r.load_cpu_per_message, 8)}")
    for gateway in (r for r in results if r.name.startswith("gateway")):
        ok = gateway.rate >= 0.25 * floor.rate and gateway.percentile(0.99) < 20
        lines.append(f"{gateway.name} target (>= 25% of floor, p99 < 20 ms): "
                     f"{'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def _micros(seconds: float | None, width: int) -> str:
    return f"{seconds * 1e6:>{width}.0f}" if seconds is not None else f"{'-':>{width}}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=3072)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS),
                        help="which servers to load (the floor always runs)")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        kind, port = args.serve[0], int(args.serve[1])
        (serve_floor if kind == "floor" else serve_python_hl7)(port)
        return 0
    results = run(args.connections, args.seconds, args.size, args.warmup, tuple(args.servers))
    print(report(results, args.connections, args.size))
    if args.json:
        print(json.dumps([{"server": r.name, "rate": r.rate, "p50_ms": r.percentile(0.5),
                           "p99_ms": r.percentile(0.99), "errors": r.errors,
                           "cpu_us_per_message": None if r.cpu_per_message is None
                           else r.cpu_per_message * 1e6,
                           "load_cpu_us_per_message": None if r.load_cpu_per_message is None
                           else r.load_cpu_per_message * 1e6} for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
