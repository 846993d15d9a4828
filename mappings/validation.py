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
only the kind of problem (its exception class) is reported, with the field at fault
(``PID-7``), found by validating the segments and then that segment's fields one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    except _problems() as exc:
        # Where hl7apy found the problem, found again without its text (which quotes the
        # value): "MSH-9" alone sent the sender's admin looking at the message type.
        location = _first_invalid(text, type(exc)) if strict else None
        if location is None:
            problem = f"message does not validate against its HL7 structure ({type(exc).__name__})"
        else:
            problem = (f"{location} does not validate against HL7 v{read_header(text).version} "
                       f"({type(exc).__name__})")
        if strict:
            raise ContentError(problem, err_code="102", location=location or "MSH-9") from exc
        return (problem,)
    return ()


def _problems() -> tuple[type[BaseException], ...]:
    """What hl7apy raises for a message, a segment or a field that does not validate."""
    from hl7apy.exceptions import HL7apyException

    return (HL7apyException, ValueError, KeyError, IndexError, TypeError, AttributeError)


def _first_invalid(text: str, kind: type[BaseException]) -> str | None:
    """``SEG-n`` (``SEG[k]-n`` for the k-th segment of its id) of the first field that
    fails strict validation on its own with the error the message failed with; ``SEG``
    when no single field does; None when every segment validates (the structure is at
    fault: segment order, cardinality)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_field, parse_segment

    try:
        header = read_header(text)
    except UnreadableHeader:
        return None
    fs, encoding = header.field_separator, header.raw_msh[4:8]
    if len(encoding) < 4:
        return None
    version = reference_version(header.version)
    chars = {"FIELD": fs, "COMPONENT": encoding[0], "REPETITION": encoding[1],
             "ESCAPE": encoding[2], "SUBCOMPONENT": encoding[3], "GROUP": "\r",
             "SEGMENT": "\r"}
    strict = VALIDATION_LEVEL.STRICT
    seen: dict[str, int] = {}
    for line in text.split("\r"):
        seg_id = line[:3]
        if len(line) < 4 or line[3] != fs:
            continue
        seen[seg_id] = seen.get(seg_id, 0) + 1
        where = seg_id if seen[seg_id] == 1 else f"{seg_id}[{seen[seg_id]}]"
        if _fails(lambda: parse_segment(line, version=version, encoding_chars=chars,
                                        validation_level=strict), kind):
            # MSH-1 is the field separator itself, so MSH's fields are one further on;
            # MSH-2 (the encoding characters) was read to split the message.
            offset = 1 if seg_id == "MSH" else 0
            for index, value in enumerate(line.split(fs)[1:], start=1):
                number = index + offset
                if value and not (seg_id == "MSH" and number <= 2) and _fails(
                        lambda: parse_field(value, name=f"{seg_id}_{number}", version=version,
                                            encoding_chars=chars, validation_level=strict),
                        kind):
                    return f"{where}-{number}"
            return where
    return None


def _fails(parse: Callable[[], Any], kind: type[BaseException]) -> bool:
    """Whether parsing and validating an element raises ``kind``."""
    try:
        element = parse()
        element.validate()
    except _problems() as exc:
        return isinstance(exc, kind)
    return False


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
