"""The report text of one order group, with a map from every offset back to its segment.

Rules (the order of OBX segments is kept):

* OBX-2 TX, FT, ST: OBX-5 rendered (escapes, FT formatting); repetitions on new lines.
* OBX-2 CE/CWE/CNE/CF: the text of the coded value (CE.2, else CWE.9 original text, else
  the identifier), repetitions on new lines.
* ST values that are DICOM UIDs, and OBX-3 identifiers listed in
  ``excluded_observations`` (study/series/SOP instance UIDs), are identifiers, not text.
* OBX-2 ED/RP: never text. Each is recorded as an ``Attachment`` (type, subtype, encoding,
  size) so it can be audited. CDA XML in an ED (text/xml, plain or Base64) is the
  exception: its section titles and narrative text are extracted with xml.etree (no
  network, no DTDs, no external entities) and become report text. The XML is read as the
  text it was decoded to (an encoding named in its declaration is ignored), and XML that
  cannot be read, declares a DTD, nests elements deeper than ``MAX_XML_DEPTH`` (100;
  real CDA nests some 20 deep) or has more than ``MAX_XML_ELEMENTS`` (50,000; a long
  report has a few thousand) is an unreadable attachment: a warning and no text, so the
  message is answered as it would be without it. Extraction walks the tree without
  recursion and renders each element once (a section nested in another's text or title
  is left to its own entry), so its cost follows the size of the XML and stays bounded.
* Section headings: when OBX-3 names a section (a sub-identifier such as ``&IMP``, a LOINC
  or DICOM section code, all in ``section_headings``) and it differs from the previous
  OBX's section, a heading line (``IMPRESSION:``) is written before the text, unless the
  text already starts with that heading word.
* NTE: ``nte = "obx"`` keeps NTE text that follows an OBX, ``"all"`` also keeps notes on
  the order (NTE after OBR); ``"none"`` (default) keeps none.
* Pieces are joined with a single LF. Offsets index the exact string the engine receives.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .config import MappingConfig
from .datatypes import coded, components, repetitions, subcomponents, text
from .escapes import render_text
from .header import Delimiters
from .structure import LocatedGroup, OrderGroup, Segment

_TEXT_TYPES = ("TX", "FT", "ST")
_CODED_TYPES = ("CE", "CWE", "CNE", "CF")
_UID = re.compile(r"^[0-2](\.(0|[1-9]\d*)){3,}$")


@dataclass(frozen=True)
class SourceRef:
    """Where a piece of report text came from: the segment's index in the message."""

    segment_index: int
    obx_set_id: str | None
    obx_3: str
    segment: str = "OBX"


@dataclass(frozen=True)
class SourceMap:
    """Sorted, non-overlapping ``(start, end, SourceRef)`` spans over the report text."""

    spans: tuple[tuple[int, int, SourceRef], ...] = ()

    def source_of(self, offset: int) -> SourceRef | None:
        """The segment the character at ``offset`` came from (None for joining line breaks)."""
        starts = [s[0] for s in self.spans]
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0 and self.spans[i][0] <= offset < self.spans[i][1]:
            return self.spans[i][2]
        return None


@dataclass(frozen=True)
class Attachment:
    """An encapsulated (ED) or referenced (RP) value: metadata only, never the data."""

    segment_index: int
    obx_set_id: str | None
    value_type: str
    type_of_data: str
    subtype: str
    encoding: str
    size: int
    text_extracted: bool = False


@dataclass(frozen=True)
class ReportText:
    text: str
    source_map: SourceMap
    attachments: tuple[Attachment, ...]
    warnings: tuple[str, ...]


def build_report_text(group: OrderGroup, d: Delimiters, config: MappingConfig, charset: str) -> ReportText:
    attachments: list[Attachment] = []
    warnings: list[str] = []
    pieces = list(_pieces(group.items, d, config, charset, attachments, warnings))
    return _join(pieces, attachments, warnings)


def has_report_text(group: OrderGroup | LocatedGroup, d: Delimiters, config: MappingConfig,
                    charset: str) -> bool:
    """Whether ``build_report_text(group, ...).text.strip()`` is non-empty, stopping at the
    first piece with text (the pieces are joined with LF only, so one piece decides).

    Section headings are left out: one is only ever put before a piece that has text."""
    for _, body in _bodies(group.items, d, config, charset, [], []):
        if body.strip():
            return True
    return False


def _pieces(items: Iterable[Segment], d: Delimiters, config: MappingConfig, charset: str,
            attachments: list[Attachment], warnings: list[str]) -> Iterator[tuple[str, SourceRef]]:
    """The report text's pieces in order, with their section headings."""
    section: str | None = None
    for seg, body in _bodies(items, d, config, charset, attachments, warnings):
        if seg.id == "NTE":
            yield body, SourceRef(seg.index, seg[1] or None, "", "NTE")
            continue
        if body.strip():
            # A blank OBX (a spacer line) opens no section: a heading over nothing would make
            # a report without text look like one with text.
            heading = _section_heading(seg[3], d, config)
            if heading and heading != section and \
                    not body.lstrip().upper().startswith(heading.rstrip(":")):
                body = f"{heading}\n{body}"
            section = heading or section
        yield body, SourceRef(seg.index, seg[1].strip() or None, seg[3])


def _bodies(items: Iterable[Segment], d: Delimiters, config: MappingConfig, charset: str,
            attachments: list[Attachment], warnings: list[str]) -> Iterator[tuple[Segment, str]]:
    """Each OBX or NTE that gives report text, with its text (no heading yet); attachments
    and warnings are appended as found."""
    seen_obx = False
    for seg in items:
        if seg.id == "NTE":
            if config.nte == "all" or (config.nte == "obx" and seen_obx):
                note = _nte_text(seg, d, charset)
                if note is not None:
                    yield seg, note
            continue
        seen_obx = True
        body = _obx_text(seg, d, config, charset, attachments, warnings)
        if body is not None:
            yield seg, body


def _obx_text(seg: Segment, d: Delimiters, config: MappingConfig, charset: str,
              attachments: list[Attachment], warnings: list[str]) -> str | None:
    """The text of one OBX, or None when it gives none (module docstring)."""
    value_type = seg[2].strip().upper().split(d.component)[0] if d.component else seg[2].strip().upper()
    if value_type in ("ED", "RP"):
        attachment, body, warning = _attachment(seg, value_type, d, charset)
        attachments.append(attachment)
        if warning:
            warnings.append(warning)
        return body
    if _excluded(seg[3], d, config):
        return None
    if value_type in _TEXT_TYPES:
        lines = [render_text(r, d, charset) for r in repetitions(seg[5], d)]
        if value_type == "ST" and all(_UID.match(v.strip()) for v in lines if v.strip()) and \
                any(v.strip() for v in lines):
            return None
        return "\n".join(lines)
    if value_type in _CODED_TYPES:
        labels = [coded(r, d).label for r in repetitions(seg[5], d)]
        return "\n".join(v for v in labels if v)
    return None


def _join(pieces: list[tuple[str, SourceRef]], attachments: list[Attachment], warnings: list[str]) -> ReportText:
    out: list[str] = []
    spans: list[tuple[int, int, SourceRef]] = []
    offset = 0
    for i, (body, ref) in enumerate(pieces):
        if i:
            out.append("\n")
            offset += 1
        if body:
            spans.append((offset, offset + len(body), ref))
        out.append(body)
        offset += len(body)
    return ReportText("".join(out), SourceMap(tuple(spans)), tuple(attachments), tuple(warnings))


def _nte_text(seg: Segment, d: Delimiters, charset: str) -> str | None:
    values = [render_text(r, d, charset) for r in repetitions(seg[3], d)]
    joined = "\n".join(values)
    return joined if joined.strip() else None


def _observation_ids(obx3: str, d: Delimiters) -> list[str]:
    """Identifier, sub-identifiers (``&GDT``) and text of OBX-3, upper-cased."""
    comps = components(obx3, d)
    ids = [s.strip().upper() for s in subcomponents(comps[0], d) if s.strip()]
    if len(comps) > 1 and comps[1].strip():
        ids.append(text(comps[1], d).upper())
    if len(comps) > 3 and comps[3].strip():
        ids.append(comps[3].strip().upper())
    return ids


def _excluded(obx3: str, d: Delimiters, config: MappingConfig) -> bool:
    excluded = config.excluded_observations
    for ident in _observation_ids(obx3, d):  # a loop: cheaper than any() over a generator
        if ident in excluded:
            return True
    return False


def _section_heading(obx3: str, d: Delimiters, config: MappingConfig) -> str | None:
    for ident in _observation_ids(obx3, d):
        heading = config.section_headings.get(ident)
        if heading:
            return heading
    return None


def _attachment(seg: Segment, value_type: str, d: Delimiters, charset: str) -> tuple[Attachment, str | None, str | None]:
    comps = components(seg[5], d)
    set_id = seg[1].strip() or None
    if value_type == "RP":
        # RP: pointer^application id^type of data^subtype
        return Attachment(seg.index, set_id, "RP", _c(comps, 2), _c(comps, 3), "", len(seg[5])), None, None
    # ED: source application^type of data^data subtype^encoding^data (data may contain stray ^)
    data = d.component.join(comps[4:]) if len(comps) > 4 else ""
    type_of_data, subtype, encoding = _c(comps, 1), _c(comps, 2), _c(comps, 3)
    body: str | None = None
    warning: str | None = None
    if "XML" in subtype.upper() or data.lstrip().startswith("<"):
        try:
            body = cda_text(_ed_payload(data, encoding, d, charset))
        # Everything bad XML, a bad Base64/hex payload or a codec name can raise: an
        # attachment that cannot be read must not turn the whole message into an error.
        except (ET.ParseError, ValueError, binascii.Error, UnicodeError, LookupError):
            warning = f"OBX-5 ED at segment {seg.index} is XML that cannot be read"
    attachment = Attachment(seg.index, set_id, "ED", type_of_data, subtype, encoding, len(data), body is not None)
    return attachment, body, warning


def _c(comps: list[str], i: int) -> str:
    return comps[i].strip() if i < len(comps) else ""


def _ed_payload(data: str, encoding: str, d: Delimiters, charset: str) -> str:
    if encoding.upper() in ("BASE64", "B64"):
        raw = base64.b64decode(re.sub(r"\s+", "", data))
        for codec in ("utf-8", charset, "latin-1"):
            try:
                return raw.decode(codec)
            except (UnicodeDecodeError, LookupError):
                continue
    if encoding.upper() == "HEX":
        return bytes.fromhex(re.sub(r"\s+", "", data)).decode("utf-8", errors="replace")
    return render_text(data, d, charset)


_BLOCKS = {"paragraph", "item", "tr", "list", "table", "tbody", "thead", "td", "th"}

# Limits on CDA in an ED (module docstring). Real CDA nests some 20 deep (document, body,
# nested sections, table, list, content) and a long report has a few thousand elements;
# each element costs a few microseconds, so the cap keeps one attachment well under a
# second of the reactor whatever the frame size.
MAX_XML_DEPTH = 100
MAX_XML_ELEMENTS = 50_000

# Blank lines in a narrative become one line break. The look-behind makes the pattern
# start only where a run of spaces starts: without it, a long run of spaces not followed
# by a line break was rescanned from each of its positions (quadratic in the run).
_BLANK_LINES = re.compile(r"(?<![ \t])[ \t]*\n\s*\n+")


def cda_text(xml_text: str) -> str:
    """Section titles and narrative of a CDA document as plain text.

    Raises ET.ParseError or ValueError for XML that is not read (module docstring)."""
    if "<!DOCTYPE" in xml_text.upper() or "<!ENTITY" in xml_text.upper():
        raise ValueError("DTDs and entities are not accepted in CDA content")
    # The text is already decoded: the parser is told it is UTF-8 (overriding the XML
    # declaration, whose encoding name may be unknown or wrong) and given it as such.
    parser = ET.XMLParser(target=_LimitedBuilder(), encoding="utf-8")
    parser.feed(xml_text.encode("utf-8", errors="replace"))
    root = parser.close()
    lines: list[str] = []
    sections = [el for el in root.iter() if _local(el.tag) == "section"]
    if not sections:
        body = [el for el in root.iter() if _local(el.tag) in ("nonXMLBody", "structuredBody")]
        return _narrative(body[0]).strip() if body else ""
    for sec in sections:
        title = next((c for c in sec if _local(c.tag) == "title"), None)
        narrative = next((c for c in sec if _local(c.tag) == "text"), None)
        heading = _narrative(title, plain=True).strip() if title is not None else ""
        if heading:
            lines.append(heading.upper() + ":")
        if narrative is not None:
            content = _narrative(narrative).strip()
            if content:
                lines.append(content)
    return "\n".join(lines)


class _LimitedBuilder(ET.TreeBuilder):
    """The standard tree builder, refusing nesting deeper than ``MAX_XML_DEPTH`` or more
    than ``MAX_XML_ELEMENTS`` elements while parsing (before a hostile document is built
    in full)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.elements = 0

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_XML_DEPTH:
            raise ValueError(f"CDA content nests deeper than {MAX_XML_DEPTH} elements")
        if self.elements > MAX_XML_ELEMENTS:
            raise ValueError(f"CDA content has more than {MAX_XML_ELEMENTS} elements")
        return super().start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _narrative(el: ET.Element, *, plain: bool = False) -> str:
    """The text of ``el``: narrative layout (line breaks for ``br`` and block elements,
    ``": "`` after a caption, blank lines collapsed in ``text``), or with ``plain`` its
    text and tails only, as ``itertext`` gives them (for titles).

    An explicit stack instead of recursion, and every element visited once: a section
    nested inside ``el`` is skipped (``cda_text`` renders it as a section of its own), so
    the cost follows the size of the tree whatever its shape. Blank lines are collapsed
    once, over the outermost ``text`` element (a ``text`` nested in another is not CDA).
    """
    out: list[str] = []
    collapse_from: int | None = None  # where the outermost <text> being rendered starts
    collapse_owner: ET.Element | None = None
    stack: list[tuple[ET.Element, bool]] = [(el, False)]
    while stack:
        node, closing = stack.pop()
        name = _local(node.tag)
        if closing:
            if node is collapse_owner:
                out[collapse_from:] = [_BLANK_LINES.sub("\n", "".join(out[collapse_from:]))]
                collapse_owner = collapse_from = None
            if node is not el:
                if not plain and name == "caption":
                    out.append(": ")
                if not plain and name in _BLOCKS:
                    out.append("\n")
                if node.tail:
                    out.append(node.tail)
            continue
        if node is not el:
            if name == "section":
                if node.tail:
                    out.append(node.tail)
                continue
            if not plain and name in _BLOCKS:
                out.append("\n")
        if not plain and name == "text" and collapse_owner is None:
            collapse_owner, collapse_from = node, len(out)
        if not plain and name == "br":
            out.append("\n")
        if node.text:
            out.append(node.text)
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node))
    return "".join(out)
