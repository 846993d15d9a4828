"""Run the ``ri-gateway`` CLI with the fake engine injected (used as a subprocess).

``FAKE_ENGINE_HOLD=1`` makes every analysis wait forever, so a test can kill the
gateway while analyses are unfinished.
"""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gateway_fake_engine import FakeEngine  # noqa: E402


class HoldingEngine(FakeEngine):
    def analyze(self, data):  # type: ignore[no-untyped-def]
        threading.Event().wait()


if __name__ == "__main__":
    from gateway.cli import main

    factory = HoldingEngine if os.environ.get("FAKE_ENGINE_HOLD") == "1" else FakeEngine
    main(obj={"engine_factory": factory})
