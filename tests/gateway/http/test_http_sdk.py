"""The official Azure SDK, pointed at ri-gateway on loopback, runs the documentation examples.

The server runs in a subprocess (see sdk_server.py); the SDK creates each job with
PUT, follows Operation-Location until the job is done and deserialises the result
into its own typed models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.healthinsights.radiologyinsights import RadiologyInsightsClient
from azure.healthinsights.radiologyinsights import models as sdk_models
from rest_harness import load_samples, sample_job

SERVER = Path(__file__).with_name("sdk_server.py")
KEY = "sdk-test-key"

# The SDK class each inference kind must deserialise into.
SDK_CLASSES = {
    "ageMismatch": sdk_models.AgeMismatchInference,
    "sexMismatch": sdk_models.SexMismatchInference,
    "lateralityDiscrepancy": sdk_models.LateralityDiscrepancyInference,
    "completeOrderDiscrepancy": sdk_models.CompleteOrderDiscrepancyInference,
    "limitedOrderDiscrepancy": sdk_models.LimitedOrderDiscrepancyInference,
    "finding": sdk_models.FindingInference,
    "criticalResult": sdk_models.CriticalResultInference,
    "followupRecommendation": sdk_models.FollowupRecommendationInference,
    "followupCommunication": sdk_models.FollowupCommunicationInference,
    "radiologyProcedure": sdk_models.RadiologyProcedureInference,
    "scoringAndAssessment": sdk_models.ScoringAndAssessmentInference,
    "guidance": sdk_models.GuidanceInference,
    "qualityMeasure": sdk_models.QualityMeasureInference,
}


class Server:
    def __init__(self, db: Path, mode: str) -> None:
        env = dict(os.environ, RI_GATEWAY_API_KEYS=f"another-key,{KEY}")
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), str(db), mode], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env)
        self.output: list[str] = []
        self.port: int | None = None
        assert self.process.stdout is not None
        for line in self.process.stdout:  # blocks until the server says where it listens
            self.output.append(line)
            if line.startswith("listening on "):
                self.port = int(line.split()[-1])
                break
        if self.port is None:
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        # Keep draining so the server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str = KEY) -> RadiologyInsightsClient:
        return RadiologyInsightsClient(self.endpoint, AzureKeyCredential(key),
                                       polling_interval=0.05, retry_total=0)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("sdk") / "gateway.db", "replay")
    yield server
    server.stop()


def _strip_notes(value):
    if isinstance(value, list):
        return [_strip_notes(v) for v in value
                if not (isinstance(v, dict) and v and all(k.startswith("_") for k in v))]
    if isinstance(value, dict):
        return {k: _strip_notes(v) for k, v in value.items() if not k.startswith("_")}
    return value


SAMPLE_NAMES = [s["name"] for s in json.loads(
    (Path(__file__).resolve().parents[4] / "shared" / "reference" / "ri_doc_samples.json"
     ).read_text())] if (Path(__file__).resolve().parents[4] / "shared" / "reference" /
                         "ri_doc_samples.json").exists() else []


def _sample(name: str) -> dict:
    return next(s for s in load_samples() if s["name"] == name)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_sdk_reads_every_documented_inference(replay_server: Server, name: str) -> None:
    sample = _sample(name)
    job_id = name.replace("_", "-")[:36].strip("-")
    with replay_server.client() as client:
        result = client.begin_infer_radiology_insights(job_id, sample_job(sample)).result()

    assert isinstance(result, sdk_models.RadiologyInsightsInferenceResult)
    (patient,) = result.patient_results
    assert patient.patient_id == "Sharona"
    expected = _strip_notes(sample["expected"])
    assert [type(i) for i in patient.inferences] == [SDK_CLASSES[e["kind"]] for e in expected]
    # Typed access works and the SDK's view of each inference is the documented JSON.
    assert [i.kind for i in patient.inferences] == [e["kind"] for e in expected]
    assert [i.as_dict() for i in patient.inferences] == expected


def test_typed_fields_of_the_documented_examples(replay_server: Server) -> None:
    def run(name: str):
        sample = _sample(name)
        with replay_server.client() as client:
            poller = client.begin_infer_radiology_insights(
                "typed-" + name.split("_", 1)[1][:20].replace("_", "-"), sample_job(sample))
            return poller.result().patient_results[0].inferences

    (sex,) = run("docs_sex_mismatch")
    assert sex.sex_indication.coding[0].code == "248153007"
    (laterality,) = run("docs_laterality_discrepancy")
    assert (laterality.discrepancy_type, laterality.laterality_indication.coding[0].code) == (
        "orderLateralityMismatch", "24028007")
    qm = run("docs_quality_measure")
    assert [(q.quality_measure_denominator, q.compliance_type) for q in qm] == [
        ("INCIDENTAL PULMONARY NODULE", "performanceMet"),
        ("HIGH DOSE RADIATION IMAGING", "performanceMet"),
        ("DOSE LOWERING TECHNIQUE", "performanceMet")]
    comms = run("docs_followup_communication")
    assert [(c.recipient, c.was_acknowledged) for c in comms] == [
        (["unknown"], False), (["physicianAssistant"], False)]


def test_the_sdk_gets_its_authentication_error_for_a_wrong_key(replay_server: Server) -> None:
    sample = load_samples()[0]
    with replay_server.client("not-the-key") as client:
        with pytest.raises(ClientAuthenticationError) as info:
            client.begin_infer_radiology_insights("wrong-key", sample_job(sample))
    assert info.value.status_code == 401
    assert info.value.error.code == "Unauthorized"


def test_the_sdk_sees_ri_errors_for_a_bad_request(replay_server: Server) -> None:
    body = sample_job(load_samples()[0])
    body["jobData"]["configuration"]["locale"] = "fr-FR"
    with replay_server.client() as client:
        with pytest.raises(HttpResponseError) as info:
            client.begin_infer_radiology_insights("bad-locale", body)
    assert (info.value.status_code, info.value.error.code) == (400, "UnsupportedLocale")
    assert info.value.error.target == "jobData.configuration.locale"


def test_the_sdk_accepts_api_version_2024_04_01(replay_server: Server) -> None:
    sample = _sample("docs_sex_mismatch")
    client = RadiologyInsightsClient(replay_server.endpoint, AzureKeyCredential(KEY),
                                     api_version="2024-04-01", polling_interval=0.05)
    with client:
        result = client.begin_infer_radiology_insights("old-version", sample_job(sample)).result()
    assert [i.kind for i in result.patient_results[0].inferences] == ["sexMismatch"]


def test_the_server_logs_neither_keys_nor_report_text(replay_server: Server) -> None:
    load_samples()  # the requests whose log it reads were made from them (else skipped)
    output = "".join(replay_server.output)
    assert "REST request" in output
    assert KEY not in output and "not-the-key" not in output
    assert "Gallbladder" not in output
