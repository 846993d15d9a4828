"""A small engine double with the real engine's interface, injected via ``engine_factory``.

It reports a critical result when the report text names "pneumothorax" (and not
"no pneumothorax"), refuses text containing "REFUSE" (RequestError) and fails on
"CRASH" (an engine bug).  It is importable by name so spawned worker processes can
build it.
"""

from __future__ import annotations

import os

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
        if "CRASH" in text:
            raise ZeroDivisionError("engine bug")
        inferences = []
        lowered = text.lower()
        if "pneumothorax" in lowered and "no pneumothorax" not in lowered:
            inferences.append(CriticalResultInference(result=CriticalResult(description="PNEUMOTHORAX")))
        return InferenceResult(patient_results=[PatientResult(patient_id=patient.id,
                                                              inferences=inferences)],
                               model_version=f"{self.model_version}/{self.pid}")
