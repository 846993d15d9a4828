"""Run the ``ri-gateway`` CLI with the fake engine injected (used as a subprocess).

``FAKE_ENGINE_HOLD=1`` makes every analysis wait forever, so a test can kill the
gateway while analyses are unfinished; ``FAKE_ENGINE_DELAY=S`` makes each take S seconds,
so a test can watch a backlog drain; ``FAKE_ENGINE_GATE=PATH`` makes each wait until PATH
exists, so a test can act while an analysis runs; ``FAKE_ENGINE_START_DELAY=S`` makes each engine
take S seconds to build, so a test can stop the gateway before its workers are ready.
"""

from __future__ import annotations

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gateway_fake_engine import FakeEngine, SlowStartEngine  # noqa: E402


class HoldingEngine(FakeEngine):
    def analyze(self, data):  # type: ignore[no-untyped-def]
        threading.Event().wait()


class GatedEngine(FakeEngine):
    def analyze(self, data):  # type: ignore[no-untyped-def]
        gate = os.environ["FAKE_ENGINE_GATE"]
        while not os.path.exists(gate):
            time.sleep(0.01)
        return super().analyze(data)


class SlowEngine(FakeEngine):
    def analyze(self, data):  # type: ignore[no-untyped-def]
        time.sleep(float(os.environ["FAKE_ENGINE_DELAY"]))
        return super().analyze(data)


if __name__ == "__main__":
    from gateway.cli import main

    factory = (HoldingEngine if os.environ.get("FAKE_ENGINE_HOLD") == "1"
               else GatedEngine if os.environ.get("FAKE_ENGINE_GATE")
               else SlowEngine if os.environ.get("FAKE_ENGINE_DELAY")
               else SlowStartEngine if os.environ.get("FAKE_ENGINE_START_DELAY") else FakeEngine)
    main(obj={"engine_factory": factory})
