"""Reading the MSH segment with the sender's own delimiters.

Decisions:

* The message must start with ``MSH`` once leading whitespace, NUL bytes and a BOM character
  are skipped (padding around a message is not part of it: :mod:`mappings.decoding`). A
  file/batch envelope (``FHS``/``BHS`` first) is tolerated: the first MSH that starts a
  segment is read and ``envelope`` names the wrapper. Anything else before the first MSH
  makes the header unreadable.
* MSH-1 is the character after ``MSH``; it must be printable, not a letter, digit or space.
* MSH-2 is read as sent: 1 to 5 distinct printable ASCII characters, none a letter, digit,
  space or the field separator (``^~\\&``, ``^~\\}``, ``^~}``, ``^~\\&#`` all pass; a
  replacement character or mojibake in MSH-2 does not). Positions follow the standard:
  component, repetition, escape, sub-component, truncation; a missing position takes its
  default only if that character is not already used (so ``^~}`` has ``}`` as its escape
  character and ``&`` as sub-component separator).
* A trailing field separator after the last MSH field is harmless (an empty field).
* An MSH that is the last segment of the text ends before the padding after it (spaces,
  TABs, NULs, line breaks), so MSH reads the same whether or not the segments were
  normalised (:func:`mappings.decoding.normalise_segments` strips that padding).
* Values are kept as sent (escape sequences included), so an ACK can echo them byte for
  byte. ``field(n)`` gives any raw MSH-n.
* MSH-10 is required: without a control id no acknowledgement can be matched, so a header
  without one is unreadable (``err_code`` 101, location MSH-10).
* One message per frame (:func:`check_single_message`): a text holding a second MSH segment
  (a batch of several messages, or two messages sent in one frame) is refused as a whole
  (``ContentError`` 100 at ``MSH[2]``). The ACK answers the first MSH-10 only, and only the
  first message is read, so the others would be acknowledged and never processed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .decoding import LEADING_PADDING, MSH_AFTER_BREAK, without_trailing_padding
from .errors import ContentError, UnreadableHeader
from .frozen import frozen_instance

DEFAULT_ENCODING_CHARACTERS = "^~\\&"


@dataclass(frozen=True)
class Delimiters:
    """The separators and escape character of one message ("" when the sender has none)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @classmethod
    @functools.lru_cache(maxsize=64)  # a handful of distinct MSH-1/MSH-2 pairs in practice
    def from_msh(cls, field_separator: str, encoding_characters: str) -> Delimiters:
        defaults = ("^", "~", "\\", "&")
        chosen: list[str] = []
        used = {field_separator, *encoding_characters}
        for position, default in enumerate(defaults):
            if position < len(encoding_characters):
                chosen.append(encoding_characters[position])
            elif default not in used:
                chosen.append(default)
                used.add(default)
            else:
                chosen.append("")
        truncation = encoding_characters[4] if len(encoding_characters) > 4 else ""
        return cls(field_separator, chosen[0], chosen[1], chosen[2], chosen[3], truncation)

    @functools.cached_property  # computed once: from_msh hands out the same instances
    def characters(self) -> frozenset[str]:
        """Every separator and the escape character (those the message has)."""
        return frozenset(c for c in (self.field, self.component, self.repetition, self.escape,
                                     self.subcomponent, self.truncation) if c)


@dataclass(frozen=True)
class MessageHeader:
    """The MSH segment of one message; values are raw field strings as sent.

    ``message_type``/``trigger_event``/``message_structure`` are MSH-9 components;
    ``processing_id`` is MSH-11.1, ``version`` MSH-12.1, ``character_sets`` the MSH-18
    repetitions. ``raw_msh`` is the whole segment; ``envelope`` is "FHS"/"BHS" when the
    message came wrapped in a batch/file envelope.
    """

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_datetime: str
    message_type: str
    trigger_event: str
    message_structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    character_sets: tuple[str, ...]
    raw_msh: str
    envelope: str | None = None

    @property  # from_msh caches: cheaper than a cached_property, which takes a lock in 3.11
    def delimiters(self) -> Delimiters:
        return Delimiters.from_msh(self.field_separator, self.encoding_characters)

    def field(self, n: int) -> str:
        """Raw MSH-n as sent ("" when absent). MSH-1 is the field separator itself."""
        return self.fields(n)[0]

    def fields(self, *numbers: int) -> tuple[str, ...]:
        """Raw MSH-n for each of ``numbers``, as :meth:`field` reads them, splitting MSH once."""
        parts = self.raw_msh.split(self.field_separator)
        return tuple([self.field_separator if n == 1 else parts[n - 1] if 0 < n - 1 < len(parts) else ""
                      for n in numbers])

    @property
    def is_report(self) -> bool:
        """An ORU: the one message type mapped to RI requests and analysed (others a
        configuration accepts are only stored and acknowledged)."""
        return self.message_type == "ORU"

    @property
    def message_code(self) -> str:
        """``TYPE^TRIGGER`` (or just ``TYPE``) as used in configuration and logs."""
        return f"{self.message_type}^{self.trigger_event}" if self.trigger_event else self.message_type


def locate_msh(text: str) -> tuple[int, str | None]:
    """Offset of the MSH segment and the envelope segment id before it.

    Raises UnreadableHeader when the text does not start with MSH (or an FHS/BHS
    envelope followed by an MSH).
    """
    if text.startswith("MSH"):
        return 0, None  # nearly every message
    padding = LEADING_PADDING.match(text)  # always a match, perhaps empty
    start = padding.end() if padding else 0
    head = text[start:start + 3]
    if head == "MSH":
        return start, None
    if head in ("FHS", "BHS"):
        # The first MSH after the envelope, whichever line break comes before it (a "\rMSH"
        # further on would be a later message of the batch).
        found = MSH_AFTER_BREAK.search(text, start)
        if found:
            return found.start() + 1, head
        raise UnreadableHeader(f"{head} envelope without an MSH segment", err_code="100")
    if not text[start:].strip():
        raise UnreadableHeader("empty message", err_code="100")
    raise UnreadableHeader("message does not start with an MSH segment", err_code="100")


@functools.lru_cache(maxsize=64)  # read for every message; senders use a few values
def valid_encoding_characters(field_separator: str, chars: str) -> bool:
    if not 1 <= len(chars) <= 5 or len(set(chars)) != len(chars):
        return False
    return all(_is_delimiter(c) and c != field_separator for c in chars)


def _is_delimiter(c: str) -> bool:
    return 0x21 <= ord(c) <= 0x7E and not c.isalnum()


def read_header(text: str) -> MessageHeader:
    """Read the MSH of ``text`` (see the module docstring); raises UnreadableHeader."""
    start, envelope = locate_msh(text)
    end = _segment_end(text, start)
    segment = without_trailing_padding(text[start:end], text, end)
    if len(segment) < 4:
        raise UnreadableHeader("MSH segment has no field separator", location="MSH-1")
    fs = segment[3]
    if not _is_delimiter(fs):
        raise UnreadableHeader("MSH-1 field separator is not a printable delimiter", location="MSH-1")
    parts = segment.split(fs)
    encoding = parts[1] if len(parts) > 1 else ""
    if not valid_encoding_characters(fs, encoding):
        raise UnreadableHeader("MSH-2 encoding characters are invalid", location="MSH-2")
    delims = Delimiters.from_msh(fs, encoding)
    # parts[n - 1] is MSH-n; padded so that every field read below exists.
    raw = parts + [""] * (18 - len(parts))
    control_id = raw[9]
    if not control_id.strip():
        raise UnreadableHeader("MSH-10 message control id is missing", err_code="101", location="MSH-10")
    cs = delims.component
    msh9 = raw[8].split(cs) if cs else [raw[8]]
    msh9 += [""] * (3 - len(msh9))
    charsets = raw[17].split(delims.repetition) if delims.repetition else [raw[17]]
    return frozen_instance(
        MessageHeader,
        field_separator=fs,
        encoding_characters=encoding,
        sending_application=raw[2],
        sending_facility=raw[3],
        receiving_application=raw[4],
        receiving_facility=raw[5],
        message_datetime=raw[6],
        message_type=msh9[0].strip().upper(),
        trigger_event=msh9[1].strip().upper(),
        message_structure=msh9[2].strip().upper(),
        control_id=control_id,
        processing_id=_first_component(raw[10], cs).upper(),
        version=_first_component(raw[11], cs),
        accept_ack_type=raw[14].strip().upper(),
        application_ack_type=raw[15].strip().upper(),
        character_sets=tuple(c.strip() for c in charsets if c.strip()) if raw[17] else (),
        raw_msh=segment,
        envelope=envelope,
    )


def check_single_message(text: str, header: MessageHeader) -> None:
    """Raise ContentError (100, ``MSH[2]``) when ``text`` holds another message after the
    one ``header`` was read from: an MSH segment (MSH and the field separator at the start
    of a line, after any indent) further on (module docstring)."""
    marker = "MSH" + header.field_separator
    pos = locate_msh(text)[0] + len(marker)
    while (pos := text.find(marker, pos)) >= 0:  # nearly every message: not found at all
        line = pos
        while line > 0 and text[line - 1] in " \t":
            line -= 1
        if line > 0 and text[line - 1] in "\r\n":
            raise ContentError("more than one message in one frame (a second MSH segment); "
                               "send each message in a frame of its own", err_code="100",
                               location="MSH[2]")
        pos += len(marker)


def _segment_end(text: str, start: int) -> int:
    """Where the segment starting at ``start`` ends: the first CR or LF, else the end."""
    end = text.find("\r", start)
    end = len(text) if end < 0 else end
    lf = text.find("\n", start, end)  # only up to the CR: the rest of the text can be long
    return end if lf < 0 else lf


def _first_component(value: str, component_separator: str) -> str:
    return (value.split(component_separator, 1)[0] if component_separator else value).strip()
