"""A small engine double with the real engine's interface, injected via ``engine_factory``.

It reports a critical result when the report text names "pneumothorax" (and not
"no pneumothorax"), refuses text containing "REFUSE" (RequestError) and fails on
"CRASH" (an engine bug).  In a worker process, "DIE" ends the process at once (as the
OOM killer would) and "HANG" never returns.  Anywhere, "SLOW" takes three seconds and
"WAITFOR:<path>;" creates ``<path>.started`` and returns once the file ``path`` exists
(so a test decides when).  It is importable by name so spawned worker processes can
build it.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from ri_engine.errors import RequestError
from ri_engine.models import (
    CriticalResult, CriticalResultInference, InferenceResult, PatientResult, RadiologyInsightsData,
)


class FakeEngine:
    model_version = "fake-1"

    def __init__(self) -> None:
        self.pid = os.getpid()

    def analyze(self, data: RadiologyInsightsData) -> InferenceResult:
        patient = data.patients[0]
        text = patient.patient_documents[0].content.value
        if "REFUSE" in text:
            raise RequestError("refused by the fake engine", code="BadRequest", target="jobData")
        if multiprocessing.parent_process() is not None:  # a worker process, never the tests
            if "DIE" in text:
                os._exit(70)
            if "HANG" in text:
                time.sleep(3600)
        if "WAITFOR:" in text:
            path = text.split("WAITFOR:", 1)[1].split(";", 1)[0]
            open(f"{path}.started", "w").close()
            deadline = time.monotonic() + 300
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.05)
        if "SLOW" in text:
            time.sleep(3)
        if "CRASH" in text:
            raise ZeroDivisionError("engine bug")
        inferences = []
        lowered = text.lower()
        if "pneumothorax" in lowered and "no pneumothorax" not in lowered:
            inferences.append(CriticalResultInference(result=CriticalResult(description="PNEUMOTHORAX")))
        return InferenceResult(patient_results=[PatientResult(patient_id=patient.id,
                                                              inferences=inferences)],
                               model_version=f"{self.model_version}/{self.pid}")


class UnbuildableEngine:
    """An engine that cannot be built (its data missing after a bad deploy)."""

    def __init__(self) -> None:
        raise RuntimeError("engine data missing")


class SlowStartEngine(FakeEngine):
    """An engine that takes ``FAKE_ENGINE_START_DELAY`` seconds to build (the real one
    loads its data for a second or more)."""

    def __init__(self) -> None:
        time.sleep(float(os.environ["FAKE_ENGINE_START_DELAY"]))
        super().__init__()
