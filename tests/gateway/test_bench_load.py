"""The load and soak benchmarks as slow tests: they run and report (no timing asserts)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))


@pytest.mark.slow
def test_load_benchmark_runs_every_server():
    import load

    results = load.run(connections=2, seconds=1.0, size=3072, warmup=0.2)
    assert [r.name for r in results] == [
        "floor", "gateway", "gateway-full", "gateway-fast", "gateway-fast-busy", "python-hl7"]
    assert all(r.messages > 0 and r.errors == 0 for r in results)
    print(load.report(results, 2, 3072))


def test_benchmark_message_is_a_3kb_oru():
    import load

    message = load.oru("X1", 3072)
    assert 2900 <= len(message) <= 3072
    assert message.startswith(b"MSH|^~\\&|") and b"|ORU^R01^ORU_R01|X1|" in message


def test_every_message_has_its_own_control_id_warm_up_included():
    """A control id sent twice is answered as a duplicate: a warm-up of repeats would
    measure the duplicate path and put its CPU in the figures."""
    import asyncio

    import load

    seen: list[bytes] = []

    async def answer(reader, writer):
        try:
            while True:
                frame = await reader.readuntil(b"\x1c\x0d")
                seen.append(frame.split(b"|")[9])
                writer.write(b"\x0b" + load.FIXED_ACK + b"\x1c\x0d")
        except asyncio.IncompleteReadError:
            pass

    async def main():
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await load._load(port, 2, 0.2, 3072, "test", 0.2)

    result = asyncio.run(main())
    assert result.messages > 0 and len(seen) > result.messages  # warm-up messages too
    assert len(set(seen)) == len(seen)
    assert result.load_cpu_per_message > 0  # the generator's own CPU, beside the server's


@pytest.mark.slow
def test_soak_benchmark_runs_both_feeds_interval_by_interval():
    import soak

    results = soak.run(intervals=2, seconds=1.0, patients=5, max_backlog=50)
    assert [r.name for r in results] == ["one patient", "5 patients"]
    assert all(len(r.intervals) == 2 for r in results)
    assert all(i.messages > 0 and i.errors == 0 for r in results for i in r.intervals)
    print(soak.report(results))
