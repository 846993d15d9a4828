"""What the ``map`` and ``analyze`` commands read: HL7 messages, RI request JSON, plain text.

:func:`requests_from` looks at the content, not the file name:

* starts with ``MSH`` (or a batch/file envelope, or a BOM before it): an HL7 v2
  ORU^R01, mapped with ``mappings.inbound.map_oru``: one request per analysable OBR group;
* starts with ``{``: an RI request, ``{"jobData": ...}`` or the bare jobData object,
  read and checked by :func:`gateway.jobs.validate_and_parse` (the REST API's own path);
* anything else: plain report text, wrapped in a one-patient, one-document request with
  the metadata given on the command line (:class:`TextMetadata`).

Errors: an HL7 message that cannot be mapped raises its ``mappings.errors.HL7Error``;
a bad request raises ``ModelError``/``RequestError``; JSON that does not parse raises
:class:`~gateway.errors.InputError`, and so does JSON holding an unpaired surrogate
escape (``"\\ud800"``), refused by the REST API too (:mod:`gateway.json_text`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ri_engine.models import (
    CodeableConcept, Coding, DocumentAdministrativeMetadata, DocumentContent,
    ModelConfiguration, OrderedProcedure, PatientDetails, PatientDocument, PatientEncounter,
    PatientRecord, RadiologyInsightsData,
)

from .errors import InputError
from .json_text import find_lone_surrogate

__all__ = ["Request", "TextMetadata", "looks_like_hl7", "mapped_reports", "parse_json",
           "requests_from"]

_HL7_STARTS = ("MSH", "FHS", "BHS")


@dataclass(frozen=True)
class TextMetadata:
    """Patient and order details for a plain-text report."""

    sex: str | None = None
    birth_date: str | None = None
    procedure_code: str | None = None
    procedure_display: str | None = None
    procedure_system: str = "http://loinc.org"


@dataclass(frozen=True)
class Request:
    """One request to analyse; ``label`` says where it came from (``file#OBR2``)."""

    label: str
    data: RadiologyInsightsData | None
    skip_reason: str | None = None  # set for an OBR group mapping marked not analysable


def _text(raw: bytes) -> str:
    for codec in ("utf-8-sig", "latin-1"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def looks_like_hl7(raw: bytes) -> bool:
    return _text(raw[:64]).lstrip()[:3] in _HL7_STARTS


def mapped_reports(raw: bytes, mapping_config: Any = None) -> list[Any]:
    """Decode, read and map an HL7 message: its MappedReports (HL7Error when it cannot)."""
    from mappings.decoding import decode_message
    from mappings.header import read_header
    from mappings.inbound import map_oru

    decoded = decode_message(raw)
    read_header(decoded.text)
    return list(map_oru(decoded.text, mapping_config))


def text_request(text: str, meta: TextMetadata, now: datetime | None = None) -> RadiologyInsightsData:
    """A one-patient, one-document RI request around plain report text."""
    now = now or datetime.now(timezone.utc)
    procedures = None
    if meta.procedure_code:
        display = meta.procedure_display or meta.procedure_code
        procedures = [OrderedProcedure(
            code=CodeableConcept(coding=[Coding(system=meta.procedure_system,
                                                code=meta.procedure_code, display=display)]),
            description=display)]
    document = PatientDocument(
        type="note", clinical_type="radiologyReport", id="document1", language="en",
        created_at=now.strftime("%Y-%m-%dT%H:%M:%S"), specialty_type="radiology",
        administrative_metadata=DocumentAdministrativeMetadata(
            ordered_procedures=procedures, encounter_id="encounter1"),
        content=DocumentContent(source_type="inline", value=text))
    details = None
    if meta.sex or meta.birth_date:
        details = PatientDetails(sex=meta.sex, birth_date=meta.birth_date)  # type: ignore[arg-type]
    patient = PatientRecord(id="patient1", details=details,
                            encounters=[PatientEncounter(id="encounter1")],
                            patient_documents=[document])
    return RadiologyInsightsData(patients=[patient],
                                 configuration=ModelConfiguration(locale="en-US",
                                                                  include_evidence=True))


def parse_json(text: str, label: str | None = None) -> Any:
    """The JSON value of a request in ``text``; :class:`InputError` (its message starting
    with ``label``, when given) when it is not JSON or holds a string that is no Unicode
    text (checked as the REST API does)."""
    where = f"{label}: " if label else ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}not valid JSON ({exc.msg} at line {exc.lineno})") from None
    surrogate = find_lone_surrogate(text, value)
    if surrogate is not None:
        raise InputError(f"{where}{surrogate.path or 'the request'} {surrogate.message}")
    return value


def request_from_json(value: Any, label: str) -> Request:
    from .jobs import validate_and_parse

    return Request(label, validate_and_parse(value))


def requests_from(raw: bytes, label: str, meta: TextMetadata, mapping_config: Any = None
                  ) -> list[Request]:
    """The requests in one input (see the module docstring)."""
    text = _text(raw)
    head = text.lstrip()
    if head[:3] in _HL7_STARTS:
        out = []
        for report in mapped_reports(raw, mapping_config):
            where = f"{label}#OBR{report.obr_index}"
            if report.analyse:
                out.append(Request(where, report.request))
            else:
                out.append(Request(where, None, report.skip_reason or "not analysable"))
        return out
    if head.startswith("{"):
        return [request_from_json(parse_json(text, label), label)]
    if not head:
        raise InputError(f"{label}: empty input")
    return [Request(label, text_request(text, meta))]
