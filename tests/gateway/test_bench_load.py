"""The load benchmark as a slow test: it runs and reports every server (no timing asserts)."""

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
