"""A PUT body that Python's json module reads but that is not RI's JSON gets a 400, never a
500 or a job that fails inside the engine."""

from __future__ import annotations

import json

import pytest
from rest_harness import Harness, job_body

from gateway.http.request_body import MAX_DEPTH


def _body_text(**document_changes: object) -> str:
    body = job_body()
    body["jobData"]["patients"][0]["patientDocuments"][0].update(document_changes)
    return json.dumps(body)


def _put(harness: Harness, text: str):
    response = harness.put_job("job-1", text.encode("utf-8"))
    error = response.json()["error"]
    assert response.header("x-ms-error-code") == error["code"]
    return response.status, error


def _nested_clinical_info(depth: int) -> str:
    """A request whose clinicalInfo holds arrays nested so that the deepest reaches ``depth``."""
    body = job_body()
    # The body, jobData, patients, the patient, details, clinicalInfo, the resource: seven.
    body["jobData"]["patients"][0]["details"]["clinicalInfo"] = [{"resourceType": "Basic",
                                                                  "x": "@"}]
    nested = "[" * (depth - 7) + "]" * (depth - 7)
    return json.dumps(body).replace('"@"', nested)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 90_000])
def test_nesting_past_the_limit_is_refused(harness: Harness, depth: int) -> None:
    assert _put(harness, _nested_clinical_info(depth)) == (400, {
        "code": "InvalidRequestBody",
        "message": f"The request body is nested deeper than {MAX_DEPTH} levels."})
    assert harness.analysis.calls == []


def test_nesting_up_to_the_limit_is_accepted_and_echoed(harness: Harness) -> None:
    text = _nested_clinical_info(MAX_DEPTH)
    put = harness.request("PUT", "/health-insights/radiology-insights/jobs/job-1"
                          "?api-version=2024-10-01&expand=jobData", text.encode())
    assert put.status == 201
    assert put.json()["jobData"] == json.loads(text)["jobData"]


@pytest.mark.parametrize(("literal", "message"), [
    ("NaN", "NaN is not a JSON number"),
    ("Infinity", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ("1e400", "the number 1e400 is out of range"),
    ("-2.5E+999", "the number -2.5E+999 is out of range"),
])
def test_numbers_json_cannot_carry_are_refused(harness: Harness, literal: str,
                                               message: str) -> None:
    body = job_body()
    body["jobData"]["patients"][0]["details"]["clinicalInfo"] = [
        {"resourceType": "Observation", "valueQuantity": {"value": "@"}}]
    text = json.dumps(body).replace('"@"', literal)
    assert _put(harness, text) == (400, {
        "code": "InvalidRequestBody", "message": f"The request body is not valid JSON: {message}."})


def test_an_integer_too_long_to_read_is_refused(harness: Harness) -> None:
    text = _body_text().replace('"includeEvidence": true', '"includeEvidence": 1' + "0" * 5000)
    assert _put(harness, text) == (400, {
        "code": "InvalidRequestBody",
        "message": "The request body is not valid JSON: an integer has more than 4300 digits."})


@pytest.mark.parametrize(("escape", "shown"), [("\\ud800", "\\ud800"), ("\\uDFFF", "\\udfff")])
def test_an_unpaired_surrogate_in_the_report_is_refused_naming_the_field(
        harness: Harness, escape: str, shown: str) -> None:
    text = _body_text().replace("No acute abnormality.", f"No acute {escape}abnormality.")
    assert _put(harness, text) == (400, {
        "code": "InvalidRequestBody",
        "message": f"The request body holds an unpaired surrogate escape ({shown}), which is "
                   "not a Unicode character.",
        "target": "jobData.patients[0].patientDocuments[0].content.value"})
    assert harness.analysis.calls == []


def test_an_unpaired_surrogate_in_a_key_names_its_object(harness: Harness) -> None:
    text = _body_text().replace('"sourceType"', '"\\ud83dsource": 1, "sourceType"', 1)
    status, error = _put(harness, text)
    assert (status, error["target"]) == (
        400, "jobData.patients[0].patientDocuments[0].content")


def test_a_surrogate_pair_is_one_character_and_accepted(harness: Harness) -> None:
    text = _body_text().replace("No acute abnormality.", "No acute abnormality \\ud83d\\ude00.")
    response = harness.put_job("job-1", text.encode())
    assert response.status == 201
    (data, _), = harness.analysis.calls
    assert data.patients[0].patient_documents[0].content.value == (
        "FINDINGS: No acute abnormality \N{GRINNING FACE}.")
