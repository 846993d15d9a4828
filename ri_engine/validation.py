"""Request checks RI applies before analysing (ri_contract §1.1, §7.4, §7.5).

``validate(data)`` returns the single patient, document, encounter and the resolved
configuration, or raises ``RequestError`` with ``code`` and ``target`` (the JSON path at
fault, e.g. ``jobData.patients[0].patientDocuments[0].content.value``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .errors import RequestError
from .models import (
    INFERENCE_TYPES, LOCALES, QUALITY_MEASURE_TYPES, ModelConfiguration, PatientDocument,
    PatientEncounter, PatientRecord, RadiologyInsightsData,
)
from .models.base import shown
from .models.request import IGNORED_INFERENCE_TYPES

MAX_CHARACTERS = 50_000
_CLINICAL_TYPES = ("radiologyReport", "pathologyReport")
_SPECIALTY_TYPES = ("radiology", "pathology")
_LOCALES = {locale.lower() for locale in LOCALES}


@dataclass(frozen=True)
class ValidRequest:
    patient: PatientRecord
    document: PatientDocument
    encounter: PatientEncounter | None
    configuration: ModelConfiguration
    kinds: tuple[str, ...]


def validate(data: RadiologyInsightsData) -> ValidRequest:
    """Raise :class:`RequestError` for the first RI input rule ``data`` breaks.

    The one rule set for every caller: the engine itself, the CLI and the REST API (which
    answers 400 with ``code`` and ``target``).  Messages are written for the person who
    sent the request.
    """
    patients = data.patients or []
    if len(patients) != 1:
        raise RequestError(f"A request must hold exactly one patient, not {len(patients)}.",
                           code="InvalidPatientCount", target="jobData.patients")
    patient = patients[0]
    base = "jobData.patients[0]"
    documents = patient.patient_documents or []
    if len(documents) != 1:
        raise RequestError(f"A patient must have exactly one document, not {len(documents)}.",
                           code="InvalidDocumentCount", target=f"{base}.patientDocuments")
    encounters = patient.encounters or []
    if len(encounters) > 1:
        raise RequestError(f"A patient can have one encounter, not {len(encounters)}.",
                           code="InvalidEncounterCount", target=f"{base}.encounters")
    document = documents[0]
    _check_document(document, f"{base}.patientDocuments[0]")
    _check_dates(patient, document, encounters[0] if encounters else None, base)
    configuration = data.configuration or ModelConfiguration()
    return ValidRequest(patient=patient, document=document,
                        encounter=encounters[0] if encounters else None,
                        configuration=configuration, kinds=_check_configuration(configuration))


def _check_document(document: PatientDocument, path: str) -> None:
    if document.type != "note":
        raise RequestError(f"Only documents of type 'note' are supported, not {shown(document.type)}.",
                           code="UnsupportedDocumentType", target=f"{path}.type")
    if document.clinical_type is not None and document.clinical_type not in _CLINICAL_TYPES:
        raise RequestError(f"clinicalType must be one of {', '.join(_CLINICAL_TYPES)}.",
                           code="UnsupportedClinicalType", target=f"{path}.clinicalType")
    if document.specialty_type is not None and document.specialty_type not in _SPECIALTY_TYPES:
        raise RequestError(f"specialtyType must be one of {', '.join(_SPECIALTY_TYPES)}.",
                           code="UnsupportedSpecialtyType", target=f"{path}.specialtyType")
    if document.language and not _is_english(document.language):
        raise RequestError("Only English documents are supported (language 'en').",
                           code="UnsupportedLanguage", target=f"{path}.language")
    if not document.created_at:
        raise RequestError("The document needs createdAt.", code="MissingCreatedAt",
                           target=f"{path}.createdAt")
    if document.content.source_type != "inline":
        raise RequestError("Only inline document content is supported.",
                           code="UnsupportedContentSource", target=f"{path}.content.sourceType")
    text = document.content.value
    if not text or not text.strip():
        raise RequestError("The document content is empty.", code="EmptyDocument",
                           target=f"{path}.content.value")
    if len(text) > MAX_CHARACTERS:
        raise RequestError(
            f"The document text has {len(text)} characters; the limit is {MAX_CHARACTERS}.",
            code="DocumentTooLong", target=f"{path}.content.value")
    metadata = document.administrative_metadata
    for index, order in enumerate((metadata.ordered_procedures if metadata else None) or []):
        where = f"{path}.administrativeMetadata.orderedProcedures[{index}]"
        codings = order.code.coding if order.code else None
        if not codings or not any(c.code and c.display for c in codings):
            raise RequestError("An ordered procedure needs a code with code and display.",
                               code="InvalidOrderedProcedure", target=f"{where}.code")
        if not order.description:
            raise RequestError("An ordered procedure needs a description.",
                               code="InvalidOrderedProcedure", target=f"{where}.description")


# A date as RI sends it: ISO 8601 calendar date, month and day with one or two digits
# ("2014-2-20T00:00:00" is in RI's own examples), then optionally a time, which the engine
# does not read.  birthDate may also be partial (FHIR "1979", "1979-05"), as the HL7 mapping
# writes it from a partial PID-7.
_FULL_DATE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?", re.DOTALL)
_PARTIAL_DATE = re.compile(r"\s*\d{4}(?:-(?:0?[1-9]|1[0-2]))?\s*")
_DATE_HINT = "use an ISO 8601 date (2024-05-01) or date and time (2024-05-01T10:00:00Z)"


def _check_dates(patient: PatientRecord, document: PatientDocument,
                 encounter: PatientEncounter | None, base: str) -> None:
    """Refuse a date the engine cannot read, rather than analyse without it.

    createdAt dates follow-up recommendations and guidance, the encounter start and
    birthDate give the patient's age: an unreadable one would silently leave those out.
    The value is not quoted back (a birth date is identifying).
    """
    if document.created_at and not _is_full_date(document.created_at):
        raise _invalid_date("createdAt", f"{base}.patientDocuments[0].createdAt")
    period = encounter.period if encounter else None
    for name, value in (("start", period.start if period else None),
                        ("end", period.end if period else None)):
        if value and not _is_full_date(value):
            raise _invalid_date(f"The encounter period's {name}",
                                f"{base}.encounters[0].period.{name}")
    birth_date = patient.details.birth_date if patient.details else None
    if birth_date and not (_PARTIAL_DATE.fullmatch(birth_date) or _is_full_date(birth_date)):
        raise _invalid_date("birthDate", f"{base}.details.birthDate")


def _is_full_date(value: str) -> bool:
    match = _FULL_DATE.fullmatch(value)
    if match is None:
        return False
    try:
        dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return False
    return True


def _invalid_date(what: str, target: str) -> RequestError:
    return RequestError(f"{what} is not a date the engine can read; {_DATE_HINT}.",
                        code="InvalidDate", target=target)


def _is_english(language: str) -> bool:
    language = language.strip().lower()
    return language == "en" or language.startswith("en-") or language == "english"


def _check_configuration(configuration: ModelConfiguration) -> tuple[str, ...]:
    where = "jobData.configuration"
    if configuration.locale is not None and configuration.locale.lower() not in _LOCALES:
        raise RequestError(
            f"Unsupported locale '{configuration.locale[:20]}'; use one of {', '.join(LOCALES)}.",
            code="UnsupportedLocale", target=f"{where}.locale")
    requested = configuration.inference_types
    for index, kind in enumerate(requested or []):
        if kind not in INFERENCE_TYPES and kind not in IGNORED_INFERENCE_TYPES:
            raise RequestError(f"Unknown inference type '{kind[:40]}'.",
                               code="UnknownInferenceType",
                               target=f"{where}.inferenceTypes[{index}]")
    kinds = tuple(k for k in INFERENCE_TYPES if k in requested) if requested else INFERENCE_TYPES
    options = configuration.inference_options
    measures = options.quality_measure_options if options else None
    for index, measure in enumerate(measures.measure_types if measures else []):
        if measure not in QUALITY_MEASURE_TYPES:
            raise RequestError(
                f"Unknown quality measure type '{measure[:40]}'.", code="UnknownMeasureType",
                target=f"{where}.inferenceOptions.qualityMeasureOptions.measureTypes[{index}]")
    return kinds
