"""The Azure SDK against ri-gateway with the real engine: the documentation examples.

Each documentation example is sent as the SDK sends it; what comes back must
deserialise in the SDK and hold the inferences the documentation shows, compared
by kind and key codes (the keys of the evaluation format: subject-of-information
code and presence for findings, modality codes, body-part codes, ...).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from test_http_sdk import SAMPLE_NAMES, SDK_CLASSES, Server, _sample, _strip_notes

from rest_harness import job_body, sample_job


def _codes(concepts) -> list[str]:
    return sorted(c["coding"][0]["code"] for c in concepts or [])


def inference_key(inference: dict) -> str:
    """The evaluation key of one inference (see the evaluation case format)."""
    kind = inference["kind"]
    if kind == "finding":
        observation = inference["finding"]
        subject = next((c["valueCodeableConcept"]["coding"][0]["code"]
                        for c in observation.get("component", [])
                        if c["code"]["coding"][0]["code"] == "131195008"), "-")
        absent = any(i["coding"][0]["code"] == "260413007"
                     for i in observation.get("interpretation", []))
        return f"{subject}|{'absent' if absent else 'present'}"
    if kind == "criticalResult":
        return inference["result"]["description"]
    if kind == "followupRecommendation":
        procedure = inference["recommendedProcedure"]
        if procedure["kind"] == "imagingProcedureRecommendation":
            return procedure["imagingProcedures"][0]["modality"]["coding"][0]["code"]
        return "generic:" + procedure["code"]["coding"][0]["code"]
    if kind == "followupCommunication":
        ack = "ack" if inference.get("wasAcknowledged") else "noack"
        return "+".join(sorted(inference.get("recipient", []))) + "|" + ack
    if kind == "radiologyProcedure":
        return "+".join(sorted(p["modality"]["coding"][0]["code"]
                               for p in inference.get("imagingProcedures", [])))
    if kind == "ageMismatch":
        return "ageMismatch"
    if kind == "sexMismatch":
        return inference["sexIndication"]["coding"][0]["code"]
    if kind == "lateralityDiscrepancy":
        laterality = inference.get("lateralityIndication")
        return f"{inference['discrepancyType']}|" + (
            laterality["coding"][0]["code"] if laterality else "-")
    if kind == "completeOrderDiscrepancy":
        return (f"{inference['orderType']['coding'][0]['code']}"
                f"|missing:{','.join(_codes(inference.get('missingBodyParts')))}"
                f"|meas:{','.join(_codes(inference.get('missingBodyPartMeasurements')))}")
    if kind == "limitedOrderDiscrepancy":
        return (f"{inference['orderType']['coding'][0]['code']}"
                f"|present:{','.join(_codes(inference.get('presentBodyParts')))}")
    if kind == "scoringAndAssessment":
        value = inference.get("singleValue")
        if value is None:
            rng = inference["rangeValue"]
            value = f"{rng['minimum']}-{rng['maximum']}"
        return f"{inference['category']}|{value}"
    if kind == "guidance":
        return f"{inference['identifier']['coding'][0]['code']}|{inference['ranking']}"
    if kind == "qualityMeasure":
        return f"{inference['qualityMeasureDenominator']}|{inference['complianceType']}"
    raise AssertionError(f"unknown kind {kind}")


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("sdk-engine") / "gateway.db", "engine")
    yield server
    server.stop()


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_engine_answers_the_documentation_examples(engine_server: Server, name: str) -> None:
    sample = _sample(name)
    with engine_server.client() as client:
        poller = client.begin_infer_radiology_insights(
            "engine-" + name[5:][:28].replace("_", "-"), sample_job(sample))
        result = poller.result()
    inferences = result.patient_results[0].inferences
    for inference in inferences:
        assert isinstance(inference, SDK_CLASSES[inference.kind])
    # RI's finding example also returns two findings that carry nothing but MULTIPLE (and one
    # size), with no subject of information: there is nothing for an engine to find in them, so
    # they are left out of the comparison (the engine's own documentation test does the same).
    expected = [e for e in _strip_notes(sample["expected"])
                if not (e["kind"] == "finding" and inference_key(e).startswith("-|"))]
    produced = Counter((i.kind, inference_key(i.as_dict())) for i in inferences)
    wanted = Counter((e["kind"], inference_key(e)) for e in expected)
    assert produced == wanted


def _report_job(text: str, created_at: str) -> dict:
    body = job_body(text)
    patient = body["jobData"]["patients"][0]
    patient["patientDocuments"][0]["createdAt"] = created_at
    patient["encounters"][0]["period"] = {"start": created_at, "end": created_at}
    return body


@pytest.mark.parametrize(("job_id", "text", "created_at", "due"), [
    # Intervals a report can state but no date can hold: the recommendation has no date.
    ("far-years", "IMPRESSION: Large right pneumothorax. Recommend CT chest in 9000 years.",
     "2024-05-01T10:00:00Z", None),
    ("far-days", "IMPRESSION: Large right pneumothorax. Recommend CT chest in 999999999999 days.",
     "2024-05-01T10:00:00Z", None),
    ("far-range", "IMPRESSION: Large right pneumothorax. Recommend CT chest in 6 to "
                  "99999999999999 weeks.", "2024-05-01T10:00:00Z", None),
    # Legal document dates at the ends of the calendar.
    ("last-day", "IMPRESSION: Large right pneumothorax. Recommend CT chest in 3 months.",
     "9999-12-31T23:59:59Z", None),
    ("first-day", "IMPRESSION: Large right pneumothorax, discussed with Dr. Lee yesterday. "
                  "Recommend CT chest in 3 months.", "0001-01-01T00:00:00Z", "0001-04-01"),
])
def test_dates_out_of_the_calendar_leave_the_date_out_not_the_analysis(
        engine_server: Server, job_id: str, text: str, created_at: str, due: str | None) -> None:
    with engine_server.client() as client:
        result = client.begin_infer_radiology_insights(
            job_id, _report_job(text, created_at)).result()
    inferences = result.patient_results[0].inferences
    # The rest of the analysis is there: the critical result is found.
    assert [i.kind for i in inferences].count("criticalResult") == 1
    (recommendation,) = [i for i in inferences if i.kind == "followupRecommendation"]
    assert (recommendation.effective_at, recommendation.effective_period) == (due, None)


def test_guidance_on_the_last_day_of_the_calendar_proposes_no_date(engine_server: Server) -> None:
    text = "FINDINGS: 8 mm solid nodule in the right upper lobe."
    with engine_server.client() as client:
        result = client.begin_infer_radiology_insights(
            "guidance-last-day", _report_job(text, "9999-12-31T00:00:00Z")).result()
    guidance = [i for i in result.patient_results[0].inferences if i.kind == "guidance"]
    proposals = [p for g in guidance for p in g.recommendation_proposals or []]
    assert proposals
    assert [(p.effective_at, p.effective_period) for p in proposals] == [(None, None)] * len(
        proposals)


def test_a_long_run_of_dots_is_analysed_in_linear_time(engine_server: Server) -> None:
    # Sentence splitting rescanned a run of end punctuation not followed by whitespace from
    # each of its characters: 50,000 dots held an analysis worker for about a minute (and
    # the MLLP reports queued behind it). Linear, it takes a few hundredths of a second;
    # the bound leaves two orders of magnitude for a slow machine.
    started = time.monotonic()
    with engine_server.client() as client:
        result = client.begin_infer_radiology_insights(
            "dots", job_body("." * 50_000)).result()
    assert result.patient_results[0].inferences == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("phrase", ["uterus ", "he "])
def test_a_sentence_naming_a_term_thousands_of_times_is_analysed_in_linear_time(
        engine_server: Server, phrase: str) -> None:
    # The sexMismatch builder scanned each mention's whole sentence (its clause for
    # negation, the words before a pronoun) and every earlier mention: one 50,000-character
    # sentence repeating "uterus" took about 50 s, "he" about 25 s. Linear, well under one.
    started = time.monotonic()
    with engine_server.client() as client:
        result = client.begin_infer_radiology_insights(
            "repeat-" + phrase.strip(), job_body((phrase * 50_000)[:50_000])).result()
    assert result.patient_results[0].inferences == []
    assert time.monotonic() - started < 10
