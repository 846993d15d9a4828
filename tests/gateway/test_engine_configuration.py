"""[analysis] inference_types / quality_measures / include_evidence: what the engine is asked
for on every report received over MLLP."""

from __future__ import annotations

from dataclasses import replace

import pytest
from twisted.internet import defer

from gateway.audit import AuditLog, ReceivedMessage
from gateway.commit import GroupCommitter
from gateway.config import ConfigError, load_settings
from gateway.inputs import TextMetadata, text_request
from gateway.pipeline import AcceptedMessage, AnalysisPipeline, engine_configuration
from ri_engine import Engine

from gateway_samples import FakeReport, immediate_writer


class RecordingEngine:
    """The real engine, remembering the requests it was given."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.requests = []

    def analyze(self, data):
        self.requests.append(data)
        return defer.succeed(self.engine.analyze(data))


def accepted(audit: AuditLog, *requests) -> AcceptedMessage:
    message_id = audit.record_received(ReceivedMessage(
        raw=b"MSH|^~\\&|RIS|HOSP|||||ORU^R01|C1|P|2.5", received_at="2024-01-15T10:00:00.000Z",
        status="received", ack_code="AA", ack_payload=b"ack", control_id="C1",
        sending_application="RIS", sending_facility="HOSP", message_type="ORU^R01"))
    reports = tuple(FakeReport(request=r, obr_index=i, accession=f"ACC{i}", analyse=True,
                               skip_reason=None) for i, r in enumerate(requests, 1))
    return AcceptedMessage(message_id, "C1", None, "", reports)


def bare(text: str):
    """A request as the inbound mapping makes it: no model configuration."""
    return replace(text_request(text, TextMetadata()), configuration=None)


def test_mapped_reports_get_the_configured_kinds_measures_and_evidence(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    engine = RecordingEngine()
    pipeline = AnalysisPipeline(engine, GroupCommitter(audit, immediate_writer),
                                configuration=engine_configuration(
                                    ["criticalResult", "qualityMeasure"], ["mips364"]))
    text = "FINDINGS: Large right pneumothorax. IMPRESSION: Large right pneumothorax."
    results = []
    pipeline.submit(accepted(audit, bare(text))).addBoth(results.append)
    assert results == ["analysed"]
    (request,) = engine.requests
    assert request.configuration.include_evidence is True
    assert request.configuration.inference_types == ["criticalResult", "qualityMeasure"]
    measures = request.configuration.inference_options.quality_measure_options.measure_types
    assert measures == ["mips364"]
    stored = audit.inferences_for(audit.messages_for("C1")[0]["id"])
    kinds = {row["kind"] for row in stored}
    assert kinds == {"criticalResult", "qualityMeasure"}
    critical = next(row["inference"] for row in stored if row["kind"] == "criticalResult")
    # Evidence asked for: the inference carries the offsets of the words it rests on.
    assert any(e.get("url", "").endswith("derivation-reference")
               for e in critical.get("extension", []))
    measure = next(row["inference"] for row in stored if row["kind"] == "qualityMeasure")
    assert measure["complianceType"] == "notEligible"  # no pulmonary nodule in this report


def test_a_request_that_brings_its_own_configuration_keeps_it(tmp_path):
    audit = AuditLog(str(tmp_path / "a.sqlite3"))
    engine = RecordingEngine()
    pipeline = AnalysisPipeline(engine, GroupCommitter(audit, immediate_writer),
                                configuration=engine_configuration(["finding"]))
    own = text_request("Large pneumothorax.", TextMetadata())
    pipeline.submit(accepted(audit, own))
    assert engine.requests == [own]


def test_defaults_ask_for_every_kind_with_evidence():
    settings = load_settings()
    configuration = engine_configuration(settings.analysis.inference_types,
                                         settings.analysis.quality_measures,
                                         settings.analysis.include_evidence)
    assert configuration.inference_types is None and configuration.inference_options is None
    assert configuration.include_evidence is True


@pytest.mark.parametrize("key, value", [("INFERENCE_TYPES", "finding,criticalResults"),
                                        ("QUALITY_MEASURES", "mips364,mips999")])
def test_unknown_kinds_and_measures_fail_at_start_naming_the_key(monkeypatch, key, value):
    monkeypatch.setenv(f"RI_GATEWAY_ANALYSIS_{key}", value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert error.value.key == f"analysis.{key.lower()}"
