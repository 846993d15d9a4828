"""The FHIR R4 subset RI uses inside requests and inferences."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .base import Model, field, required

SNOMED = "http://snomed.info/sct"
RADLEX = "http://radlex.org"
LOINC = "http://loinc.org"
DERIVATION_REFERENCE = "http://hl7.org/fhir/StructureDefinition/derivation-reference"


@dataclass(kw_only=True, slots=True)
class Reference(Model):
    reference: str | None = None
    type: str | None = None
    display: str | None = None


@dataclass(kw_only=True, slots=True)
class Quantity(Model):
    value: float | None = None
    comparator: str | None = None
    unit: str | None = None
    system: str | None = None
    code: str | None = None


@dataclass(kw_only=True, slots=True)
class Range(Model):
    low: Quantity | None = None
    high: Quantity | None = None


@dataclass(kw_only=True, slots=True)
class Period(Model):
    start: str | None = None
    end: str | None = None


@dataclass(slots=True)  # positional too: see ``document_token``
class Extension(Model):
    url: str = required()
    value_string: str | None = None
    value_integer: int | None = None
    value_boolean: bool | None = None
    value_reference: Reference | None = None
    value_date_time: str | None = None
    value_codeable_concept: CodeableConcept | None = None
    value_quantity: Quantity | None = None
    extension: list[Extension] | None = None


@dataclass(slots=True)  # positional too: see ``document_token``
class Coding(Model):
    system: str | None = None
    version: str | None = None
    code: str | None = None
    display: str | None = None
    extension: list[Extension] | None = None


@dataclass(slots=True)  # positional too: see ``document_token``
class CodeableConcept(Model):
    coding: list[Coding] | None = None
    text: str | None = None
    extension: list[Extension] | None = None


@dataclass(slots=True)  # positional too: see ``document_token``
class ObservationComponent(Model):
    code: CodeableConcept = required()
    value_quantity: Quantity | None = None
    value_codeable_concept: CodeableConcept | None = None
    value_string: str | None = None
    value_boolean: bool | None = None
    value_integer: int | None = None
    value_range: Range | None = None
    value_period: Period | None = None
    value_date_time: str | None = None
    interpretation: list[CodeableConcept] | None = None
    extension: list[Extension] | None = None


@dataclass(kw_only=True, slots=True)
class Observation(Model):
    # Optional on input because RI's own size observations carry neither; the engine
    # always sets resourceType "Observation" and status "unknown" on findings.
    resource_type: str | None = None
    id: str | None = None
    status: str | None = None
    category: list[CodeableConcept] | None = None
    code: CodeableConcept | None = None
    interpretation: list[CodeableConcept] | None = None
    component: list[ObservationComponent] | None = None
    value_quantity: Quantity | None = None
    value_codeable_concept: CodeableConcept | None = None
    value_string: str | None = None
    value_boolean: bool | None = None
    value_range: Range | None = None
    effective_date_time: str | None = None
    extension: list[Extension] | None = None


def coding(system: str, code: str, display: str | None = None) -> Coding:
    return Coding(system, None, code, display)  # (system, version, code, display)


def concept(system: str, code: str, display: str | None = None, *,
            extension: list[Extension] | None = None) -> CodeableConcept:
    return CodeableConcept([Coding(system, None, code, display)], None, extension)  # (coding, text, extension)


def token_extension(offset: int, length: int, document_id: str) -> Extension:
    """One evidence token: a span of the document text (RI's derivation-reference)."""
    return document_token(document_reference(document_id), offset, length)


def document_token(reference: Extension, offset: int, length: int) -> Extension:
    """``token_extension`` with the document's ``reference`` part given: the tokens of one
    document share it (a report has hundreds of them).

    Built positionally (url, valueString, valueInteger, valueBoolean, valueReference,
    valueDateTime, valueCodeableConcept, valueQuantity, extension): a keyword call costs
    about twice as much, and tokens are a third of the model objects of a report. The
    ``length`` part is shared between tokens of the same length (values never change
    once built)."""
    return Extension(DERIVATION_REFERENCE, None, None, None, None, None, None, None,
                     [reference, Extension("offset", None, offset), _length_part(length)])


@functools.cache
def _length_part(length: int) -> Extension:
    return Extension("length", None, length)


def document_reference(document_id: str) -> Extension:
    """The ``reference`` part of an evidence token: which document the offsets are in."""
    return Extension(url="reference", value_reference=Reference(reference=document_id, type="documentId"))


def token_spans(extensions: list[Extension] | None) -> list[tuple[int, int]]:
    """The (offset, length) pairs of every evidence token among ``extensions``."""
    spans = []
    for ext in extensions or []:
        if ext.url != DERIVATION_REFERENCE:
            continue
        parts: dict[str, Any] = {e.url: e.value_integer for e in ext.extension or []}
        if parts.get("offset") is not None and parts.get("length") is not None:
            spans.append((parts["offset"], parts["length"]))
    return spans
