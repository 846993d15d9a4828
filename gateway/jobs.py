"""Request JSON -> a checked ``RadiologyInsightsData``: the one code path shared by the
CLI ``analyze`` command and the REST API.

:func:`validate_and_parse` reads the request (``{"jobData": ...}`` or the bare
``jobData`` object) with the shared models, then applies the input rules Radiology
Insights enforces (ri_contract §1.1):

- exactly one patient, one document, at most one encounter;
- at most 50,000 characters of document text per patient;
- ``locale`` one of RI's English locales, document ``language`` English;
- document ``type`` ``note``, ``content.sourceType`` ``inline``, content not empty,
  ``createdAt`` present; ``clinicalType``/``specialtyType`` radiology or pathology;
- every ordered procedure with a coded ``code`` (code and display) and a ``description``;
- ``inferenceTypes`` and ``measureTypes`` from RI's enumerations.

Errors: a JSON shape that does not fit the models raises
``ri_engine.models.ModelError`` (``path`` names the field); a rule broken raises
``ri_engine.errors.RequestError`` (``target`` names the field).  Both mean "the
caller's fault": REST 400, CLI exit 2.
"""

from __future__ import annotations

from typing import Any

from ri_engine.errors import RequestError
from ri_engine.models import (
    INFERENCE_TYPES, LOCALES, QUALITY_MEASURE_TYPES, PatientDocument, RadiologyInsightsData,
)
from ri_engine.models.request import IGNORED_INFERENCE_TYPES

__all__ = ["MAX_TEXT_CHARACTERS", "validate", "validate_and_parse"]

MAX_TEXT_CHARACTERS = 50_000
_CLINICAL_TYPES = ("radiologyReport", "pathologyReport")
_SPECIALTY_TYPES = ("radiology", "pathology")
_LOCALES = {locale.lower() for locale in LOCALES}


def validate_and_parse(body: Any) -> RadiologyInsightsData:
    """Parse a request and check it against RI's input rules."""
    data = RadiologyInsightsData.from_request_json(body)
    validate(data)
    return data


def validate(data: RadiologyInsightsData) -> None:
    """Raise :class:`RequestError` for the first RI input rule ``data`` breaks."""
    root = "jobData"
    if len(data.patients) != 1:
        raise RequestError(f"A request must hold exactly one patient, not {len(data.patients)}.",
                           code="InvalidPatientCount", target=f"{root}.patients")
    patient = data.patients[0]
    where = f"{root}.patients[0]"
    documents = patient.patient_documents or []
    if len(documents) != 1:
        raise RequestError(
            f"A patient must have exactly one document, not {len(documents)}.",
            code="InvalidDocumentCount", target=f"{where}.patientDocuments")
    encounters = patient.encounters or []
    if len(encounters) > 1:
        raise RequestError(f"A patient can have one encounter, not {len(encounters)}.",
                           code="InvalidEncounterCount", target=f"{where}.encounters")
    _check_document(documents[0], f"{where}.patientDocuments[0]")
    _check_configuration(data, f"{root}.configuration")


def _check_document(document: PatientDocument, where: str) -> None:
    if document.type != "note":
        raise RequestError(f"Only documents of type 'note' are supported, not '{document.type}'.",
                           code="UnsupportedDocumentType", target=f"{where}.type")
    if document.clinical_type is not None and document.clinical_type not in _CLINICAL_TYPES:
        raise RequestError(
            f"clinicalType must be one of {', '.join(_CLINICAL_TYPES)}.",
            code="UnsupportedClinicalType", target=f"{where}.clinicalType")
    if document.specialty_type is not None and document.specialty_type not in _SPECIALTY_TYPES:
        raise RequestError(
            f"specialtyType must be one of {', '.join(_SPECIALTY_TYPES)}.",
            code="UnsupportedSpecialtyType", target=f"{where}.specialtyType")
    if document.language is not None and not _is_english(document.language):
        raise RequestError("Only English documents are supported (language 'en').",
                           code="UnsupportedLanguage", target=f"{where}.language")
    if not document.created_at:
        raise RequestError("The document needs createdAt.", code="MissingCreatedAt",
                           target=f"{where}.createdAt")
    if document.content.source_type != "inline":
        raise RequestError("Only inline document content is supported.",
                           code="UnsupportedSourceType", target=f"{where}.content.sourceType")
    text = document.content.value
    if not text.strip():
        raise RequestError("The document content is empty.", code="EmptyDocument",
                           target=f"{where}.content.value")
    if len(text) > MAX_TEXT_CHARACTERS:
        raise RequestError(
            f"The document text has {len(text)} characters; the limit is "
            f"{MAX_TEXT_CHARACTERS}.", code="DocumentTooLong", target=f"{where}.content.value")
    metadata = document.administrative_metadata
    for i, procedure in enumerate((metadata.ordered_procedures or []) if metadata else []):
        at = f"{where}.administrativeMetadata.orderedProcedures[{i}]"
        codings = procedure.code.coding if procedure.code and procedure.code.coding else []
        if not any(c.code and c.display for c in codings):
            raise RequestError("An ordered procedure needs a code with code and display.",
                               code="InvalidOrderedProcedure", target=f"{at}.code")
        if not procedure.description:
            raise RequestError("An ordered procedure needs a description.",
                               code="InvalidOrderedProcedure", target=f"{at}.description")


def _check_configuration(data: RadiologyInsightsData, where: str) -> None:
    configuration = data.configuration
    if configuration is None:
        return
    if configuration.locale is not None and configuration.locale.lower() not in _LOCALES:
        raise RequestError(
            f"Unsupported locale '{configuration.locale[:20]}'; use one of {', '.join(LOCALES)}.",
            code="UnsupportedLocale", target=f"{where}.locale")
    known = (*INFERENCE_TYPES, *IGNORED_INFERENCE_TYPES)
    for i, kind in enumerate(configuration.inference_types or []):
        if kind not in known:
            raise RequestError(f"Unknown inference type '{kind[:40]}'.",
                               code="UnknownInferenceType", target=f"{where}.inferenceTypes[{i}]")
    options = configuration.inference_options
    measures = options.quality_measure_options if options else None
    for i, measure in enumerate(measures.measure_types if measures else []):
        if measure not in QUALITY_MEASURE_TYPES:
            raise RequestError(
                f"Unknown quality measure type '{measure[:40]}'.", code="UnknownMeasureType",
                target=f"{where}.inferenceOptions.qualityMeasureOptions.measureTypes[{i}]")


def _is_english(language: str) -> bool:
    language = language.strip().lower()
    return language == "en" or language.startswith("en-") or language == "english"
