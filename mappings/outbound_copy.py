"""Carry the patient, visit and order segments of an inbound ORU over to an outbound one.

The outbound result must name the same patient, accession and order numbers as the report
it was derived from, so PID/PD1/PV1/PV2/ORC/OBR are copied from the inbound message rather
than rebuilt field by field: whatever the sender put there (local identifiers, OID-qualified
assigning authorities, OBR-16 ordering provider, OBR-32 reading radiologist) goes back out
unchanged.

Inbound messages may use non-standard encoding characters (MSH-2 ``^~\\}`` or only three
characters); copied segments are translated to the standard ``^~\\&`` of outbound messages,
escaping any data character that would collide with a standard delimiter.

Segments are found as the inbound mapping finds them (:func:`mappings.decoding.
normalise_segments`: a line that does not start a segment continues the one before, so a
line feed inside a free-text field stays in that field). A line break kept in a copied
field is written as a space: sent as is, a receiver that ends segments at LF would cut
the segment there. Any other C0 control character but TAB becomes the hex escape
``\\Xhh\\``: the inbound framing lets a lone FS through as data (an FS not followed by
CR), and copied as is it made every outbound message of the report impossible to frame,
so its alert was retried until dead-lettered, and its escalated copies with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .decoding import normalise_segments
from .escapes import escape_controls
from .outbound_fields import ENCODING_CHARACTERS, ESCAPE_CHAR, FIELD_SEP

_LINE_BREAKS = re.compile(r"\n+")
_PATIENT_SEGMENTS = ("PID", "PD1")
_VISIT_SEGMENTS = ("PV1", "PV2")


class InboundCopyError(ValueError):
    """The inbound text has no MSH, or no OBR at the requested index."""


@dataclass(frozen=True)
class OrderGroup:
    """The inbound segments an outbound message for one OBR group carries over."""

    patient: tuple[str, ...]   # PID (+ PD1) as translated segment strings
    visit: tuple[str, ...]     # PV1 (+ PV2)
    order: str | None          # ORC directly preceding the OBR, if any
    observation_request: str   # the OBR itself
    processing_id: str         # MSH-11 of the inbound message (P, T, D)


def order_group(text: str, obr_number: int = 1) -> OrderGroup:
    """The segments of OBR group ``obr_number`` (1-based, as ``MappedReport.obr_index``)."""
    # Split as the inbound mapping splits: on LF as well, OBR-13 "chest pain<LF>dyspnoea"
    # ended the copied OBR at OBR-13, without the accession, OBR-25 and OBR-32 after it.
    segments = [s for s in normalise_segments(text).split("\r") if s.strip()]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise InboundCopyError("inbound message does not start with an MSH segment")
    msh = segments[0]
    field_sep = msh[3]
    encoding = msh[4:].split(field_sep, 1)[0]
    translator = _translator(field_sep, encoding)

    def translate(seg: str) -> str:
        return escape_controls(_LINE_BREAKS.sub(" ", translator(seg)), ESCAPE_CHAR)

    msh_fields = msh.split(field_sep)
    processing_id = msh_fields[10].split(encoding[:1] or "^")[0] if len(msh_fields) > 10 else ""

    patient: list[str] = []
    visit: list[str] = []
    order: str | None = None
    seen = 0
    for seg in segments[1:]:
        name = seg[:3]
        if name == "PID":
            patient, visit, order = [translate(seg)], [], None
        elif name in _PATIENT_SEGMENTS:
            patient.append(translate(seg))
        elif name in _VISIT_SEGMENTS:
            visit.append(translate(seg))
        elif name == "ORC":
            order = translate(seg)
        elif name == "OBR":
            seen += 1
            if seen == obr_number:
                return OrderGroup(tuple(patient), tuple(visit), order, translate(seg), processing_id)
            order = None
        elif name == "OBX":
            # An ORC belongs to the OBR directly after it; a later OBR without one has none.
            order = None
    raise InboundCopyError(f"inbound message has no OBR number {obr_number}")


def _translator(field_sep: str, encoding: str):  # type: ignore[no-untyped-def]
    """A function re-encoding one segment from the inbound delimiters to the standard ones."""
    inbound = [field_sep, *encoding[:4]]
    standard = [FIELD_SEP, *ENCODING_CHARACTERS]
    if inbound == standard:
        return lambda seg: seg
    mapping: dict[str, str] = {}
    for src, dst in zip(inbound, standard):
        mapping[src] = dst
    has_escape = len(encoding) >= 3
    collisions = {"|": "F", "^": "S", "&": "T", "~": "R", "\\": "E"}
    for ch, code in collisions.items():
        if ch not in mapping:
            # A standard delimiter that is plain data in the inbound encoding.
            mapping[ch] = f"\\{code}\\"
    if not has_escape:
        mapping.setdefault("\\", "\\E\\")

    def translate(seg: str) -> str:
        return "".join(mapping.get(ch, ch) for ch in seg)

    return translate


def with_field(segment: str, position: int, value: str) -> str:
    """``segment`` with field ``position`` (1-based, e.g. OBR-1) replaced by ``value``."""
    fields = segment.split(FIELD_SEP)
    while len(fields) <= position:
        fields.append("")
    fields[position] = value
    return FIELD_SEP.join(fields)


def without_fields(segment: str, positions: frozenset[int]) -> str:
    """``segment`` with the fields at ``positions`` (1-based) emptied."""
    fields = segment.split(FIELD_SEP)
    if not any(fields[p] for p in positions if p < len(fields)):
        return segment
    return FIELD_SEP.join("" if n in positions else value for n, value in enumerate(fields))


def field(segment: str | None, position: int) -> str:
    if not segment:
        return ""
    fields = segment.split(FIELD_SEP)
    return fields[position] if len(fields) > position else ""
