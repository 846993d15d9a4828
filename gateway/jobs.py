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
- ``createdAt``, the encounter period and ``birthDate`` dates the engine can read;
- every ordered procedure with a coded ``code`` (code and display) and a ``description``;
- ``inferenceTypes`` and ``measureTypes`` from RI's enumerations.

Errors: a JSON shape that does not fit the models raises
``ri_engine.models.ModelError`` (``path`` names the field); a rule broken raises
``ri_engine.errors.RequestError`` (``target`` names the field).  Both mean "the
caller's fault": REST 400, CLI exit 2.
"""

from __future__ import annotations

from typing import Any

from ri_engine.models import RadiologyInsightsData
from ri_engine.validation import MAX_CHARACTERS as MAX_TEXT_CHARACTERS
from ri_engine.validation import validate as _engine_validate

__all__ = ["MAX_TEXT_CHARACTERS", "validate", "validate_and_parse"]


def validate_and_parse(body: Any) -> RadiologyInsightsData:
    """Parse a request and check it against RI's input rules."""
    data = RadiologyInsightsData.from_request_json(body)
    validate(data)
    return data


def validate(data: RadiologyInsightsData) -> None:
    """Raise :class:`ri_engine.errors.RequestError` for the first RI input rule ``data`` breaks.

    The rules are the engine's own (``ri_engine.validation``), so a request the REST API or
    the CLI accepts is one the engine accepts, and the other way round.
    """
    _engine_validate(data)
