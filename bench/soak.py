"""Soak benchmark: one gateway under sustained load, interval by interval.

The load benchmark (``bench/load.py``) measures a few seconds of a fresh gateway. What grows
with what the gateway has taken in shows only over time: a queue walked for each message
(the ACK rate falls as the queue grows), memory held for each report waiting for analysis
(the process grows until the out-of-memory killer stops it), analysis that stops keeping up.
Here one gateway on its shipped defaults (analysis held back while messages keep arriving,
at most ``max_wait``, then running beside the listener at a lower CPU priority, so that
reports waiting for it pile up as under a flood) takes the load of ``bench/load.py`` (8
persistent connections, 3 KB ORU^R01, each awaiting its ACK) for ``--intervals`` intervals
of ``--seconds``, once with every report of one patient and once spread over ``--patients``
patients. Per interval it prints messages/s, the server's CPU per message, its resident
memory and how many reports had been analysed by then; at the end, the CPU per message of
the last interval against the first (flat: about 1.0) and the memory added per thousand
messages in the first and the second half of the run (once ``[analysis] max_backlog``
reports wait in memory, the rest wait in the database: the second half adds far less).
Ratios, not absolute numbers, are what compare between runs on a shared machine.

    python bench/soak.py [--intervals 6] [--seconds 3] [--patients 200] [--max-backlog N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402 - the load generator and server start of bench/load.py


@dataclass
class Interval:
    rate: float
    cpu_us: float
    rss_mb: float
    messages: int
    errors: int
    analysed: int  # reports analysed since the start, at the end of the interval


@dataclass
class Soak:
    name: str
    intervals: list[Interval] = field(default_factory=list)

    @property
    def cpu_ratio(self) -> float:
        return self.intervals[-1].cpu_us / self.intervals[0].cpu_us

    def kb_per_thousand(self, first: int, last: int) -> float:
        """Memory added per thousand messages from the end of interval ``first`` to the
        end of interval ``last`` (0-based)."""
        messages = sum(i.messages for i in self.intervals[first + 1:last + 1])
        grown = self.intervals[last].rss_mb - self.intervals[first].rss_mb
        return grown * 1024 / messages * 1000 if messages else 0.0


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _analysed(db: str) -> int:
    """Reports whose analysis is recorded (read-only: the gateway writes on)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM messages WHERE status = 'analysed'"
                           ).fetchone()[0]
    finally:
        con.close()


def soak(name: str, patients: int, intervals: int, seconds: float,
         max_backlog: int | None) -> Soak:
    result = Soak(name)
    saved = dict(os.environ)
    if max_backlog is not None:
        os.environ["RI_GATEWAY_ANALYSIS_MAX_BACKLOG"] = str(max_backlog)
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                load.serving("gateway-defaults", tmp) as (port, proc):
            for _ in range(intervals):
                r = asyncio.run(load._load(port, 8, seconds, 3072, name, 0, proc.pid,
                                           patients=patients))
                result.intervals.append(Interval(
                    r.rate, (r.cpu_per_message or 0.0) * 1e6, _rss_mb(proc.pid),
                    r.messages, r.errors, _analysed(f"{tmp}/gateway-defaults.sqlite3")))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return result


def report(results: list[Soak]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.name}")
        lines.append(f"  {'interval':>8} {'msg/s':>7} {'cpu us':>7} {'rss MB':>7} {'errors':>7}"
                     f" {'analysed':>9}")
        for n, i in enumerate(r.intervals, 1):
            lines.append(f"  {n:>8} {i.rate:>7.0f} {i.cpu_us:>7.0f} {i.rss_mb:>7.1f}"
                         f" {i.errors:>7} {i.analysed:>9}")
        half = len(r.intervals) // 2
        lines.append(f"  cpu per message, last interval vs first: {r.cpu_ratio:.2f}")
        lines.append(f"  memory added per 1000 messages: first half "
                     f"{r.kb_per_thousand(0, half):.0f} KB, second half "
                     f"{r.kb_per_thousand(half, len(r.intervals) - 1):.0f} KB")
    return "\n".join(lines)


def run(intervals: int, seconds: float, patients: int,
        max_backlog: int | None = None) -> list[Soak]:
    return [soak("one patient", 1, intervals, seconds, max_backlog),
            soak(f"{patients} patients", patients, intervals, seconds, max_backlog)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--max-backlog", type=int, default=None,
                        help="[analysis] max_backlog for the gateway (default: its own)")
    args = parser.parse_args(argv)
    if args.intervals < 2:
        parser.error("--intervals must be at least 2 (the first is the reference)")
    print(report(run(args.intervals, args.seconds, args.patients, args.max_backlog)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
