"""Request checks RI applies before analysing (ri_contract §1.1, §7.4, §7.5).

``validate(data)`` returns the single patient, document, encounter and the resolved
configuration, or raises ``RequestError`` with ``code`` and ``target`` (the JSON path at
fault, e.g. ``jobData.patients[0].patientDocuments[0].content.value``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RequestError
from .models import (
    INFERENCE_TYPES, LOCALES, QUALITY_MEASURE_TYPES, ModelConfiguration, PatientDocument,
    PatientEncounter, PatientRecord, RadiologyInsightsData,
)
from .models.request import IGNORED_INFERENCE_TYPES

MAX_CHARACTERS = 50_000


@dataclass(frozen=True)
class ValidRequest:
    patient: PatientRecord
    document: PatientDocument
    encounter: PatientEncounter | None
    configuration: ModelConfiguration
    kinds: tuple[str, ...]


def validate(data: RadiologyInsightsData) -> ValidRequest:
    patients = data.patients or []
    if len(patients) != 1:
        raise RequestError(f"exactly 1 patient is required per request, got {len(patients)}",
                           code="InvalidPatientCount", target="jobData.patients")
    patient = patients[0]
    base = "jobData.patients[0]"
    documents = patient.patient_documents or []
    if len(documents) != 1:
        raise RequestError(f"exactly 1 patient document is required, got {len(documents)}",
                           code="InvalidDocumentCount", target=f"{base}.patientDocuments")
    encounters = patient.encounters or []
    if len(encounters) > 1:
        raise RequestError(f"at most 1 encounter is allowed, got {len(encounters)}",
                           code="InvalidEncounterCount", target=f"{base}.encounters")
    document = documents[0]
    _check_document(document, f"{base}.patientDocuments[0]")
    configuration = data.configuration or ModelConfiguration()
    return ValidRequest(patient=patient, document=document,
                        encounter=encounters[0] if encounters else None,
                        configuration=configuration, kinds=_check_configuration(configuration))


def _check_document(document: PatientDocument, path: str) -> None:
    if document.type != "note":
        raise RequestError(f"document type {document.type!r} is not supported; only 'note' is",
                           code="UnsupportedDocumentType", target=f"{path}.type")
    if document.content.source_type != "inline":
        raise RequestError("only inline document content is supported",
                           code="UnsupportedContentSource", target=f"{path}.content.sourceType")
    text = document.content.value
    if not text or not text.strip():
        raise RequestError("document content is empty", code="EmptyDocument",
                           target=f"{path}.content.value")
    if len(text) > MAX_CHARACTERS:
        raise RequestError(
            f"document has {len(text)} characters; at most {MAX_CHARACTERS} are allowed",
            code="DocumentTooLong", target=f"{path}.content.value")
    if document.language and not document.language.lower().startswith("en"):
        raise RequestError(f"document language {document.language!r} is not supported; English only",
                           code="UnsupportedLanguage", target=f"{path}.language")
    if not document.created_at:
        raise RequestError("document createdAt is required", code="MissingCreatedAt",
                           target=f"{path}.createdAt")
    metadata = document.administrative_metadata
    for index, order in enumerate((metadata.ordered_procedures if metadata else None) or []):
        where = f"{path}.administrativeMetadata.orderedProcedures[{index}]"
        codings = order.code.coding if order.code else None
        if not codings or not any(c.code and c.display for c in codings):
            raise RequestError("ordered procedure needs a code with a code and a display",
                               code="InvalidOrderedProcedure", target=f"{where}.code")
        if not order.description:
            raise RequestError("ordered procedure needs a description",
                               code="InvalidOrderedProcedure", target=f"{where}.description")


def _check_configuration(configuration: ModelConfiguration) -> tuple[str, ...]:
    if configuration.locale is not None and configuration.locale not in LOCALES:
        raise RequestError(
            f"locale {configuration.locale!r} is not supported (supported: {', '.join(LOCALES)})",
            code="UnsupportedLocale", target="jobData.configuration.locale")
    requested = configuration.inference_types
    if not requested:
        kinds = INFERENCE_TYPES
    else:
        for index, kind in enumerate(requested):
            if kind not in INFERENCE_TYPES and kind not in IGNORED_INFERENCE_TYPES:
                raise RequestError(
                    f"unknown inference type {kind!r} (known: {', '.join(INFERENCE_TYPES)})",
                    code="UnknownInferenceType",
                    target=f"jobData.configuration.inferenceTypes[{index}]")
        kinds = tuple(k for k in INFERENCE_TYPES if k in requested)
    options = configuration.inference_options
    measures = options.quality_measure_options if options else None
    for index, measure in enumerate(measures.measure_types if measures else []):
        if measure not in QUALITY_MEASURE_TYPES:
            raise RequestError(
                f"unknown quality measure type {measure!r}", code="UnknownMeasureType",
                target=f"jobData.configuration.inferenceOptions.qualityMeasureOptions.measureTypes[{index}]")
    return kinds
