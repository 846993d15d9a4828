"""The ORU^R01 segment structure, read with python-hl7 into patient and order groups.

ORU_R01 = MSH {PID [PV1] {[ORC] OBR [NTE] {OBX [NTE]}}}. The reader is deliberately
tolerant of order: each OBR starts a group with the ORC just before it (if any) and
the latest PID/PV1 seen; OBX and NTE segments join the current group; segments this
mapping does not use (SFT, PD1, PV2, TQ1, SPM, FT1, CTI, Z-segments, ...) are skipped.
OBX/NTE before the first OBR (patient-level observations) belong to no group.

Only the first message of a payload is read: the text is cut at a second MSH and at a
batch/file trailer (BTS/FTS), which is what the ACK answers too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import hl7

from .errors import ContentError
from .header import Delimiters, MessageHeader, locate_msh


@dataclass(frozen=True)
class Segment:
    """One segment: its id, its index in the message (MSH = 0) and its raw fields.

    ``fields[n]`` is field n as sent (for MSH, ``fields[n]`` is MSH-n too).
    """

    id: str
    index: int
    fields: tuple[str, ...]
    raw: str

    def __getitem__(self, n: int) -> str:
        return self.fields[n] if 0 < n < len(self.fields) else ""


@dataclass
class OrderGroup:
    """One ORC/OBR group with the patient segments in force when its OBR arrived."""

    obr: Segment
    orc: Segment | None
    pid: Segment | None
    pv1: Segment | None
    index: int
    items: list[Segment] = field(default_factory=list)  # OBX and NTE in order

    @property
    def obx(self) -> list[Segment]:
        return [s for s in self.items if s.id == "OBX"]


@dataclass(frozen=True)
class ParsedMessage:
    header: MessageHeader
    segments: tuple[Segment, ...]
    groups: tuple[OrderGroup, ...]

    @property
    def delimiters(self) -> Delimiters:
        return self.header.delimiters

    def first(self, segment_id: str) -> Segment | None:
        return next((s for s in self.segments if s.id == segment_id), None)


_NEXT_MESSAGE = re.compile("\r(?:MSH|BTS|FTS|BHS|FHS)")


def first_message(text: str) -> str:
    """The text of the first message: from its MSH to the next MSH or batch trailer."""
    start, _ = locate_msh(text)
    end = _NEXT_MESSAGE.search(text, start)
    return text[start:end.start() if end else len(text)]


def parse_segments(text: str, header: MessageHeader) -> tuple[Segment, ...]:
    """Split the first message into segments with python-hl7; raises ContentError 102."""
    body = first_message(text)
    try:
        message = hl7.parse(body)
    except Exception as exc:  # python-hl7 raises several types on malformed input
        raise ContentError(f"message cannot be parsed ({type(exc).__name__})", err_code="102",
                           location="MSH") from exc
    raw_segments = body.strip().split("\r")
    segments = []
    for index, seg in enumerate(message):
        # python-hl7 gives MSH as [MSH, MSH-1, MSH-2, ...], so fields[n] is SEG-n for every segment.
        fields = tuple(str(f) for f in seg)
        seg_id = fields[0].strip() if fields else ""
        raw = raw_segments[index] if index < len(raw_segments) else header.field_separator.join(fields)
        segments.append(Segment(seg_id, index, fields, raw))
    return tuple(segments)


def split_segments(text: str, header: MessageHeader) -> tuple[Segment, ...]:
    """What :func:`parse_segments` returns, read with ``str.split`` (no python-hl7 objects).

    python-hl7 splits on CR, the field separator, then repetition, component and
    sub-component separators, and ``str()`` of each field joins them back: so its fields
    are the ``str.split`` of each segment.  When two of its separators coincide (a short
    MSH-2 whose missing position defaults to a character already used) python-hl7 can
    fail or nest differently, and this falls back to :func:`parse_segments`.
    """
    fs, enc = header.field_separator, header.encoding_characters
    separators = {"\r", fs, enc[1] if len(enc) > 1 else "~", enc[0] if enc else "^",
                  enc[3] if len(enc) > 3 else "&"}
    body = first_message(text).strip()
    if len(separators) != 5 or not body.startswith("MSH" + fs):
        return parse_segments(text, header)
    raw_segments = body.split("\r")
    msh = raw_segments[0]
    end = msh.find(fs, 4)
    if end < 0:
        return parse_segments(text, header)
    segments = [Segment("MSH", 0, ("MSH", fs, msh[4:end], *msh[end + 1:].split(fs)), msh)]
    for index, raw in enumerate(raw_segments[1:], 1):
        fields = tuple(raw.split(fs))
        segments.append(Segment(fields[0].strip(), index, fields, raw))
    return tuple(segments)


def read_structure(text: str, header: MessageHeader) -> ParsedMessage:
    return group_segments(header, parse_segments(text, header))


def group_segments(header: MessageHeader, segments: tuple[Segment, ...]) -> ParsedMessage:
    """The order groups of a message's segments (module docstring)."""
    groups: list[OrderGroup] = []
    pid = pv1 = orc = None
    current: OrderGroup | None = None
    for seg in segments:
        if seg.id == "PID":
            pid, pv1, orc, current = seg, None, None, None
        elif seg.id == "PV1":
            pv1 = seg
        elif seg.id == "ORC":
            orc, current = seg, None
        elif seg.id == "OBR":
            current = OrderGroup(seg, orc, pid, pv1, len(groups) + 1)
            groups.append(current)
            orc = None
        elif seg.id in ("OBX", "NTE") and current is not None:
            current.items.append(seg)
    return ParsedMessage(header, segments, tuple(groups))
