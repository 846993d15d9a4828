"""A REST server for the SDK tests, run as a subprocess so the tests talk to it over a
real socket with the Azure SDK, and the test process never runs a reactor.

    python sdk_server.py DB_PATH {engine|replay}

Listens on an OS-chosen loopback port and prints ``listening on PORT``.  Keys come
from ``RI_GATEWAY_API_KEYS``.  ``engine`` analyses with the real engine;
``replay`` uses a stand-in engine that answers each documentation example with the
inferences its documentation shows (to check that every kind crosses the wire and
deserialises in the SDK, independently of what the engine finds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from twisted.internet import endpoints, reactor  # noqa: E402

from gateway.analysis import AnalysisPool  # noqa: E402
from gateway.http import ApiKeys, make_site  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from ri_engine.models import InferenceResult, RadiologyInsightsData  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "reference" / "ri_doc_samples.json"


def _strip_notes(value):
    if isinstance(value, list):
        return [_strip_notes(v) for v in value
                if not (isinstance(v, dict) and v and all(k.startswith("_") for k in v))]
    if isinstance(value, dict):
        return {k: _strip_notes(v) for k, v in value.items() if not k.startswith("_")}
    return value


class ReplayEngine:
    """Answers a documentation example's text with the inferences its documentation shows."""

    model_version = "replay"

    def __init__(self) -> None:
        samples = json.loads(SAMPLES.read_text())
        self._by_key = {(s["request"]["text"], tuple(s["request"]["inferenceTypes"])):
                        _strip_notes(s["expected"]) for s in samples}

    def analyze(self, data: RadiologyInsightsData) -> InferenceResult:
        patient = data.patients[0]
        text = patient.patient_documents[0].content.value
        kinds = tuple(data.configuration.inference_types or ())
        return InferenceResult.from_json({
            "patientResults": [{"patientId": patient.id,
                                "inferences": self._by_key.get((text, kinds), [])}],
            "modelVersion": self.model_version})


def main() -> None:
    db, mode = sys.argv[1], sys.argv[2]
    factory = ReplayEngine if mode == "replay" else None
    pool = AnalysisPool(2, executor="thread", engine_factory=factory)
    pool.start()
    site = make_site(analysis=pool, job_store=db, api_keys=ApiKeys.from_sources(),
                     metrics=Metrics(), health_checks={"engine": lambda: pool.ready},
                     max_body_bytes=1024 * 1024, retry_after=None)
    endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")

    def listening(port) -> None:
        print(f"listening on {port.getHost().port}", flush=True)

    endpoint.listen(site).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main()
