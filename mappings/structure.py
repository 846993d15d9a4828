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

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import hl7

from .errors import ContentError
from .frozen import frozen_instance
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


_NEXT_MESSAGE_IDS = "MSH|BTS|FTS|BHS|FHS"
_NEXT_MESSAGE = re.compile(f"\r(?:{_NEXT_MESSAGE_IDS})")


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
    body = _splittable_body(text, header)
    if body is None:
        return parse_segments(text, header)
    fs = header.field_separator
    raw_segments = body.split("\r")
    msh = raw_segments[0]
    end = msh.find(fs, 4)
    segments = [Segment("MSH", 0, ("MSH", fs, msh[4:end], *msh[end + 1:].split(fs)), msh)]
    segments.extend(_segment(raw, index, fs) for index, raw in enumerate(raw_segments[1:], 1))
    return tuple(segments)


def _splittable_body(text: str, header: MessageHeader) -> str | None:
    """The first message, stripped, when ``str.split`` reads it as python-hl7 does; else None."""
    body = first_message(text).strip()
    return body if _splits_like_python_hl7(body, header) else None


def _splits_like_python_hl7(body: str, header: MessageHeader) -> bool:
    fs = header.field_separator
    if not _distinct_separators(fs, header.encoding_characters) or not body.startswith("MSH" + fs):
        return False
    msh_end = body.find("\r")
    # Without a field after MSH-2, python-hl7 decides what the message means.
    return body.find(fs, 4, msh_end if msh_end >= 0 else len(body)) >= 0


@functools.lru_cache(maxsize=64)  # a handful of distinct MSH-1/MSH-2 pairs in practice
def _distinct_separators(fs: str, enc: str) -> bool:
    """Whether the five separators python-hl7 splits on (CR, field, repetition, component,
    sub-component, with its defaults for missing positions) are all different."""
    separators = {"\r", fs, enc[1] if len(enc) > 1 else "~", enc[0] if enc else "^",
                  enc[3] if len(enc) > 3 else "&"}
    return len(separators) == 5


def _segment(raw: str, index: int, fs: str) -> Segment:
    fields = tuple(raw.split(fs))
    return frozen_instance(Segment, id=fields[0].strip(), index=index, fields=fields, raw=raw)


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


class LocatedGroup(NamedTuple):
    """An order group found in the text by its OBR; its OBX and NTE are read on demand.

    The pre-ACK check needs every OBR and its PID but, per group, only the items up to
    the first one with report text: turning the forty OBX of a long report into
    ``Segment`` objects would cost more than the rest of the check together.
    ``items`` and ``obx`` give what :class:`OrderGroup` holds, read from
    ``body[start:end]`` (the lines between the OBR and the next PID, ORC or OBR).
    """

    obr: Segment
    pid: Segment | None
    body: str
    start: int
    end: int
    field_separator: str

    @property
    def items(self) -> Iterator[Segment]:
        """The OBX and NTE segments of the group, in order, as ``split_segments`` reads them."""
        fs, body, end = self.field_separator, self.body, self.end
        index, start = self.obr.index + 1, self.start
        while start < end:  # one line at a time: the caller often stops at the first OBX
            line_end = body.find("\r", start, end)
            line_end = end if line_end < 0 else line_end
            raw = body[start:line_end]
            if _is_item(raw, fs):
                yield _segment(raw, index, fs)
            index, start = index + 1, line_end + 1

    @property
    def obx(self) -> Iterator[Segment]:
        return (s for s in self.items if s.id == "OBX")


def locate_groups(text: str, header: MessageHeader) -> tuple[LocatedGroup, ...] | None:
    """The order groups :func:`group_segments` finds in ``split_segments(text, header)``,
    located without splitting every segment; None when ``split_segments`` would fall back
    to python-hl7 (the caller then takes that path)."""
    fs = header.field_separator
    if fs.isspace() or fs.isalnum():
        return None  # the pattern below takes the separator for punctuation
    msh, _ = locate_msh(text)
    body, boundaries = _scan_first_message(text, msh, fs)
    if not _splits_like_python_hl7(body, header):
        return None
    groups: list[LocatedGroup] = []
    pid: Segment | None = None
    index = previous = 0  # the segment index of the line starting at ``previous``
    for i, (seg_id, cr) in enumerate(boundaries):
        if seg_id == "ORC":
            continue  # it only ends the group before it, as every boundary does
        start = cr + 1  # the segment starts after its CR
        index += body.count("\r", previous, start)
        previous = start
        line_end = body.find("\r", start)
        line_end = len(body) if line_end < 0 else line_end
        seg = _segment(body[start:line_end], index, fs)
        if seg_id == "PID":
            pid = seg
        else:
            group_end = boundaries[i + 1][1] if i + 1 < len(boundaries) else len(body)
            groups.append(LocatedGroup(seg, pid, body, line_end + 1, group_end, fs))
    return tuple(groups)


def _scan_first_message(text: str, msh: int, fs: str) -> tuple[str, list[tuple[str, int]]]:
    """``first_message(text).strip()`` and, in it, the id and CR offset of each PID, ORC and
    OBR, found in one pass over the text."""
    boundaries: list[tuple[str, int]] = []
    end = len(text)
    for match in _boundaries(fs).finditer(text, msh):
        seg_id = match.group(1)
        if seg_id is None:  # the next message or a batch trailer: first_message ends here
            end = match.start()
            break
        boundaries.append((seg_id, match.start() - msh))
    # The text from the MSH starts with "MSH", so strip() moves no offset; at the end it
    # only drops whitespace after the last segment id.
    return text[msh:end].strip(), boundaries


@functools.lru_cache(maxsize=16)  # one pattern per field separator in use
def _boundaries(field_separator: str) -> re.Pattern[str]:
    """A CR followed by a PID, ORC or OBR segment (the segments that open or close a
    group, captured), or by what ends the first message for :func:`first_message`.

    The id is matched as ``split_segments`` reads it (the text before the first field
    separator, stripped of whitespace), so ``" PID |"`` is a PID too; ``\\Z`` at the end of
    the text or of the first message gives the same matches, since the text after the
    last segment id that ``strip()`` drops holds no CR-started id.  The field separator
    is punctuation here (``locate_groups`` checks).
    """
    fs = re.escape(field_separator)
    return re.compile(rf"\r(?:{_NEXT_MESSAGE_IDS}|[^\S\r]*(PID|ORC|OBR)[^\S\r]*(?={fs}|\r|\Z))")


def _is_item(raw: str, fs: str) -> bool:
    """Whether ``_segment(raw, ...).id`` is OBX or NTE, without splitting every field.

    When the fourth character is the field separator (nearly always), an id of OBX or
    NTE can only be the first three characters themselves.
    """
    if raw[3:4] == fs:
        return raw[:3] in ("OBX", "NTE")
    return raw.partition(fs)[0].strip() in ("OBX", "NTE")
