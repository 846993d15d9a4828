"""Optional structure validation with hl7apy, per sending facility.

Levels (``MappingConfig.validation`` / ``validation_by_facility``):

* ``none``: no hl7apy at all (the hot path; python-hl7 only).
* ``lenient``: hl7apy parses the message in tolerant mode and fits segments to the
  ORU_R01 groups of the message's version; problems become warnings on the mapped
  report, never a rejection.
* ``strict``: hl7apy parses in strict mode and validates the whole structure (cardinality,
  data types, lengths, tables); any problem is a ContentError 102 (AE).

A version hl7apy has no tables for (2.7.1) is validated against the nearest earlier one
(2.7); that substitution only affects the copy handed to hl7apy.
Messages are never echoed into errors: hl7apy's own text can contain field values, so
only the kind of problem (its exception class) is reported.
"""

from __future__ import annotations

from .errors import ContentError, UnreadableHeader
from .header import read_header

# Versions without their own hl7apy reference tables -> the release they amend.
_NEAREST_VERSION = {"2.7.1": "2.7"}


def reference_version(version: str) -> str:
    """The version whose hl7apy tables stand for ``version`` (2.7 for 2.7.1)."""
    return _NEAREST_VERSION.get(version, version)


def validate_structure(text: str, level: str) -> tuple[str, ...]:
    """Validate ``text`` (CR-separated, first message only); returns warnings (lenient).

    Raises ContentError 102 in strict mode when the message does not validate.
    """
    if level == "none":
        return ()
    if level not in ("lenient", "strict"):
        raise ValueError(f"unknown validation level {level!r}")
    # Imported here so the hot path (level "none") never loads hl7apy's tables.
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message

    strict = level == "strict"
    text = _with_known_version(text)
    try:
        message = parse_message(
            text,
            validation_level=VALIDATION_LEVEL.STRICT if strict else VALIDATION_LEVEL.TOLERANT,
            find_groups=True,
        )
        if strict:
            message.validate()
    except (HL7apyException, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        problem = f"message does not validate against its HL7 structure ({type(exc).__name__})"
        if strict:
            raise ContentError(problem, err_code="102", location="MSH-9") from exc
        return (problem,)
    return ()


def _with_known_version(text: str) -> str:
    try:
        header = read_header(text)
    except UnreadableHeader:
        return text
    nearest = reference_version(header.version)
    if nearest == header.version:
        return text
    fs = header.field_separator
    parts = header.raw_msh.split(fs)
    parts[11] = parts[11].replace(header.version, nearest, 1)
    return fs.join(parts) + text[text.find(header.raw_msh) + len(header.raw_msh):]
