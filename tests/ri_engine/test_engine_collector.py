"""The engine raises the collector's young-generation threshold, never lowers it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ri_engine import Engine
from ri_engine.engine import YOUNG_THRESHOLD


@pytest.fixture
def threshold() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("threshold")
@pytest.mark.parametrize(("before", "after"), [
    ((700, 10, 10), (YOUNG_THRESHOLD, 10, 10)),
    ((50_000, 5, 7), (50_000, 5, 7)),     # the application's own, higher threshold stays
    ((0, 10, 10), (0, 10, 10)),           # 0: automatic collection off, left off
])
def test_young_threshold(before: tuple[int, int, int], after: tuple[int, int, int]) -> None:
    gc.set_threshold(*before)
    Engine()
    assert after == gc.get_threshold()
