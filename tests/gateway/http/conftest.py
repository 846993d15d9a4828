"""Fixtures for the REST tests (helpers live in rest_harness.py)."""

from __future__ import annotations

import pytest
from rest_harness import Harness, make_harness


@pytest.fixture
def harness() -> Harness:
    return make_harness()
