"""Every refused request gets RI's error body, with x-ms-error-code naming the same code."""

from __future__ import annotations

import copy
import gzip
import json

import pytest
from rest_harness import JOB_URL, Harness, Response, job_body, make_harness

PATH = JOB_URL.format("job-1", "2024-10-01")


def _error(response: Response) -> tuple[int, dict]:
    body = response.json()
    assert set(body) == {"error"}
    assert response.header("x-ms-error-code") == body["error"]["code"]
    assert response.header("Content-Type") == "application/json; charset=utf-8"
    assert response.header("x-ms-request-id")
    return response.status, body["error"]


def _with(mutate) -> dict:
    body = job_body()
    mutate(body["jobData"])
    return body


def _patient(data: dict) -> dict:
    return data["patients"][0]


def _document(data: dict) -> dict:
    return data["patients"][0]["patientDocuments"][0]


@pytest.mark.parametrize(("job_id", "shown"), [
    ("a" * 37, "a" * 37),
    ("ab", "ab"),
    ("-leading-dash", "-leading-dash"),
    ("trailing_", "trailing_"),
    ("has%20space", "has space"),
    ("dots.not.allowed", "dots.not.allowed"),
])
def test_bad_job_ids_are_refused(harness: Harness, job_id: str, shown: str) -> None:
    status, error = _error(harness.put_job(job_id, job_body()))
    assert (status, error) == (400, {
        "code": "InvalidJobId",
        "message": f"The job id '{shown}' is invalid: use 3 to 36 letters, digits, '-' or '_', "
                   "starting and ending with a letter or digit.",
        "target": "id"})
    assert harness.analysis.calls == []


def test_the_longest_and_shortest_valid_ids_are_accepted(harness: Harness) -> None:
    assert harness.put_job("a" * 36, job_body()).status == 201
    assert harness.put_job("a-b", job_body()).status == 201
    assert harness.put_job("A_9", job_body()).status == 201


def test_missing_api_version(harness: Harness) -> None:
    response = harness.request("PUT", "/health-insights/radiology-insights/jobs/job-1", job_body())
    assert _error(response) == (400, {
        "code": "MissingApiVersionParameter",
        "message": "The api-version query parameter is required (2024-04-01, 2024-10-01).",
        "target": "api-version"})


@pytest.mark.parametrize("version", ["2023-09-01-preview", "2025-07-01-preview", "latest"])
def test_unsupported_api_version(harness: Harness, version: str) -> None:
    for response in (harness.put_job("job-1", job_body(), api_version=version),
                     harness.get_job("job-1", api_version=version)):
        assert _error(response) == (400, {
            "code": "UnsupportedApiVersion",
            "message": f"The api-version '{version}' is not supported; "
                       "use one of 2024-04-01, 2024-10-01.",
            "target": "api-version"})


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "The request body is not valid JSON: Expecting property name enclosed in "
                   "double quotes at line 1 column 2."),
    (b'{"jobData": ', "The request body is not valid JSON: Expecting value at line 1 column 13."),
    (b"\xff\xfe\x00garbage", "The request body is not UTF-8."),
    (b"   ", "The request body is empty."),
    (b"[1, 2]", "The request body must be a JSON object."),
])
def test_malformed_bodies(harness: Harness, body: bytes, message: str) -> None:
    assert _error(harness.put_job("job-1", body)) == (
        400, {"code": "InvalidRequestBody", "message": message})


def test_a_body_without_job_data(harness: Harness) -> None:
    assert _error(harness.put_job("job-1", {"patients": []})) == (400, {
        "code": "InvalidRequestBody", "message": "The request body has no 'jobData'.",
        "target": "jobData"})


def test_a_body_that_does_not_fit_the_model_names_the_field(harness: Harness) -> None:
    body = _with(lambda d: _document(d)["content"].pop("value"))
    assert _error(harness.put_job("job-1", body)) == (400, {
        "code": "InvalidRequestBody",
        "message": "missing required field 'value'",
        "target": "jobData.patients[0].patientDocuments[0].content"})


def _two_patients(d: dict) -> None:
    d["patients"].append(copy.deepcopy(d["patients"][0]))


def _two_documents(d: dict) -> None:
    docs = _patient(d)["patientDocuments"]
    docs.append(dict(docs[0], id="doc-2"))


def _two_encounters(d: dict) -> None:
    _patient(d)["encounters"].append({"id": "enc-2"})


@pytest.mark.parametrize(("mutate", "code", "message", "target"), [
    (_two_patients, "InvalidPatientCount",
     "A request must hold exactly one patient, not 2.", "jobData.patients"),
    (lambda d: d.update(patients=[]), "InvalidPatientCount",
     "A request must hold exactly one patient, not 0.", "jobData.patients"),
    (_two_documents, "InvalidDocumentCount",
     "A patient must have exactly one document, not 2.", "jobData.patients[0].patientDocuments"),
    (_two_encounters, "InvalidEncounterCount",
     "A patient can have one encounter, not 2.", "jobData.patients[0].encounters"),
    (lambda d: d["configuration"].update(locale="fr-FR"), "UnsupportedLocale",
     "Unsupported locale 'fr-FR'; use one of en-CA, en-US, en-AU, en-DE, en-IE, en-NZ, en-GB.",
     "jobData.configuration.locale"),
    (lambda d: _document(d).update(language="de"), "UnsupportedLanguage",
     "Only English documents are supported (language 'en').",
     "jobData.patients[0].patientDocuments[0].language"),
    (lambda d: _document(d)["content"].update(value="x" * 50_001), "DocumentTooLong",
     "The document text has 50001 characters; the limit is 50000.",
     "jobData.patients[0].patientDocuments[0].content.value"),
    (lambda d: _document(d).pop("createdAt"), "MissingCreatedAt",
     "The document needs createdAt.", "jobData.patients[0].patientDocuments[0].createdAt"),
    (lambda d: _document(d)["content"].update(value="  \n"), "EmptyDocument",
     "The document content is empty.", "jobData.patients[0].patientDocuments[0].content.value"),
    (lambda d: d["configuration"].update(inferenceTypes=["finding", "mood"]),
     "UnknownInferenceType", "Unknown inference type 'mood'.",
     "jobData.configuration.inferenceTypes[1]"),
])
def test_requests_breaking_ri_input_rules(harness: Harness, mutate, code, message, target) -> None:
    assert _error(harness.put_job("job-1", _with(mutate))) == (
        400, {"code": code, "message": message, "target": target})
    assert harness.analysis.calls == []


def test_exactly_50000_characters_are_accepted(harness: Harness) -> None:
    body = _with(lambda d: _document(d)["content"].update(value="x" * 50_000))
    assert harness.put_job("job-1", body).status == 201


def test_an_unknown_job(harness: Harness) -> None:
    assert _error(harness.get_job("never-made")) == (404, {
        "code": "NotFound",
        "message": "There is no job 'never-made' (jobs expire 24 hours after they are created).",
        "target": "id"})


@pytest.mark.parametrize("path", [
    "/", "/health-insights", "/health-insights/radiology-insights/jobs",
    "/health-insights/radiology-insights/jobs/a/b?api-version=2024-10-01",
])
def test_unknown_paths(harness: Harness, path: str) -> None:
    status, error = _error(harness.request("GET", path))
    assert (status, error["code"]) == (404, "NotFound")


def test_unsupported_method(harness: Harness) -> None:
    response = harness.request("DELETE", PATH)
    assert _error(response) == (405, {
        "code": "MethodNotAllowed", "message": "Only GET and PUT are supported on a job."})
    assert response.header("Allow") == "GET, PUT"


def test_a_declared_oversize_body_is_refused_before_it_is_read() -> None:
    harness = make_harness(max_body_bytes=1000)
    head = (f"PUT {PATH} HTTP/1.1\r\nHost: h\r\nOcp-Apim-Subscription-Key: {harness.key}\r\n"
            "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n").encode()
    response = harness.raw(head + b"x" * 100)
    assert _error(response) == (413, {
        "code": "RequestEntityTooLarge",
        "message": "The request body is larger than the limit of 1000 bytes."})
    assert response.closed
    assert b"100 Continue" not in response.body
    assert harness.analysis.calls == []
    assert harness.metrics.get("ri_gateway_http_requests_total", {"status": "413"}) == 1


def test_a_chunked_body_growing_past_the_limit_is_refused() -> None:
    harness = make_harness(max_body_bytes=1000)
    head = (f"PUT {PATH} HTTP/1.1\r\nHost: h\r\nOcp-Apim-Subscription-Key: {harness.key}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunks = b"".join(b"258\r\n" + b"y" * 600 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    response = harness.raw(head + chunks)
    status, error = _error(response)
    assert (status, error["code"], response.closed) == (413, "RequestEntityTooLarge", True)
    assert harness.analysis.calls == []


def test_a_body_at_the_limit_is_accepted() -> None:
    body = job_body()
    size = len(__import__("json").dumps(body).encode())
    harness = make_harness(max_body_bytes=size)
    assert harness.put_job("job-1", body).status == 201


_DATE_HINT = ("is not a date the engine can read; use an ISO 8601 date (2024-05-01) or date and "
              "time (2024-05-01T10:00:00Z).")


def _set_period(d: dict, **period: str) -> None:
    _patient(d)["encounters"][0]["period"] = period


@pytest.mark.parametrize(("mutate", "what", "target"), [
    (lambda d: _document(d).update(createdAt="yesterday"), "createdAt",
     "jobData.patients[0].patientDocuments[0].createdAt"),
    (lambda d: _document(d).update(createdAt="20240501"), "createdAt",
     "jobData.patients[0].patientDocuments[0].createdAt"),
    (lambda d: _document(d).update(createdAt="2024-02-30T10:00:00Z"), "createdAt",
     "jobData.patients[0].patientDocuments[0].createdAt"),
    (lambda d: _document(d).update(createdAt="05/01/2024"), "createdAt",
     "jobData.patients[0].patientDocuments[0].createdAt"),
    (lambda d: _set_period(d, start="soon"), "The encounter period's start",
     "jobData.patients[0].encounters[0].period.start"),
    (lambda d: _set_period(d, start="2024-05-01", end="2024-13-01"), "The encounter period's end",
     "jobData.patients[0].encounters[0].period.end"),
    (lambda d: _patient(d)["details"].update(birthDate="unknown"), "birthDate",
     "jobData.patients[0].details.birthDate"),
    (lambda d: _patient(d)["details"].update(birthDate="1970-02-30"), "birthDate",
     "jobData.patients[0].details.birthDate"),
    (lambda d: _patient(d)["details"].update(birthDate="01/02/1970"), "birthDate",
     "jobData.patients[0].details.birthDate"),
])
def test_a_date_the_engine_cannot_read_is_refused(harness: Harness, mutate, what,
                                                  target) -> None:
    # Analysed anyway, the request would silently lose its due dates or the patient's age.
    assert _error(harness.put_job("job-1", _with(mutate))) == (
        400, {"code": "InvalidDate", "message": f"{what} {_DATE_HINT}", "target": target})
    assert harness.analysis.calls == []


@pytest.mark.parametrize("mutate", [
    lambda d: _document(d).update(createdAt="2014-2-20T00:00:00"),
    lambda d: _document(d).update(createdAt="2024-05-01"),
    lambda d: _document(d).update(createdAt="2024-05-01T23:30:00-11:00"),
    lambda d: _document(d).update(createdAt="2024-05-01T10:00:00.1234567Z"),
    lambda d: _set_period(d, start="2024-05-01T10:00:00+05:30", end="2024-05-02"),
    lambda d: _patient(d)["details"].update(birthDate="1970"),
    lambda d: _patient(d)["details"].update(birthDate="1970-07"),
    lambda d: _patient(d)["details"].update(birthDate="1970-07-04T00:00:00.000Z"),
    lambda d: _patient(d)["details"].pop("birthDate"),
])
def test_every_date_form_ri_and_its_sdks_send_is_accepted(harness: Harness, mutate) -> None:
    assert harness.put_job("job-1", _with(mutate)).status == 201


@pytest.mark.parametrize(("value", "shown"), [
    ("F", "'F'"),
    ("f" * 5000, f"'{'f' * 40}'... (5000 characters)"),
    (["female"] * 3000, "an array"),
    ({"text": "FINDINGS: " + "x" * 10_000}, "an object"),
    (10 ** 300, "a number"),
    (2, "2"),
    (True, "true"),
])
def test_a_wrong_value_is_described_not_copied_into_the_error(harness: Harness, value,
                                                              shown: str) -> None:
    # The message goes back to the client, and often into its logs: a report pasted into
    # the wrong field must not come back whole.
    body = _with(lambda d: _patient(d)["details"].update(sex=value))
    assert _error(harness.put_job("job-1", body)) == (400, {
        "code": "InvalidRequestBody",
        "message": f"{shown} is not one of 'female', 'male', 'unspecified'",
        "target": "jobData.patients[0].details.sex"})


def test_a_long_document_type_is_not_copied_into_the_error(harness: Harness) -> None:
    body = _with(lambda d: _document(d).update(type="note " * 1000))
    assert _error(harness.put_job("job-1", body)) == (400, {
        "code": "UnsupportedDocumentType",
        "message": "Only documents of type 'note' are supported, not "
                   f"'{'note ' * 8}'... (5000 characters).",
        "target": "jobData.patients[0].patientDocuments[0].type"})


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate, gzip"])
def test_a_compressed_body_is_refused_by_its_encoding(harness: Harness, encoding: str) -> None:
    # Read as text, a gzip body was refused as "not UTF-8", which sends a client looking for
    # a charset problem; a br label on a plain body was ignored.
    body = json.dumps(job_body()).encode()
    if encoding == "gzip":
        body = gzip.compress(body)
    response = harness.put_job("job-1", body, headers={"Content-Encoding": encoding})
    assert _error(response) == (415, {
        "code": "UnsupportedMediaType",
        "message": f"Content-Encoding '{encoding}' is not supported; send the request body "
                   "uncompressed.",
        "target": "Content-Encoding"})
    assert harness.analysis.calls == []


def test_identity_content_encoding_is_plain(harness: Harness) -> None:
    response = harness.put_job("job-1", job_body(), headers={"Content-Encoding": "identity"})
    assert response.status == 201


@pytest.mark.parametrize(("value", "named"), [
    (None, "null"), ("note", "a string"), ([], "an array"), (1, "a number"), (False, "a boolean")])
def test_a_value_that_should_be_an_object_is_named_in_json_terms(harness: Harness, value,
                                                                 named: str) -> None:
    body = _with(lambda d: _document(d).update(content=value))
    assert _error(harness.put_job("job-1", body)) == (400, {
        "code": "InvalidRequestBody", "message": f"expected an object, got {named}",
        "target": "jobData.patients[0].patientDocuments[0].content"})
