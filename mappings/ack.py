"""Acknowledgements: building ours from the inbound MSH, reading the ones we get back.

``build_ack`` writes, with the sender's own delimiters:

* MSH: MSH-3/4 = inbound MSH-5/6 (or the configured application/facility), MSH-5/6 =
  inbound MSH-3/4, MSH-7 = ``now``, MSH-9 = ``ACK`` (v2.1-2.2), ``ACK^<event>`` (v2.3) or
  ``ACK^<event>^ACK`` (v2.3.1+), MSH-10 = the new control id, MSH-11 and MSH-12 copied as
  sent, MSH-18 echoed when the sender declared one, each name as decoding reads it (stripped
  of surrounding whitespace and control characters). The ACK is encoded in the charset the
  message was decoded with, and MSH-18 says so: where that is not the charset the sender's
  MSH-18 names (a byte order mark won over it; UTF-16 declared on a message read as
  ASCII), MSH-18 names the ACK's own (``UNICODE UTF-8``). A name decoding does not know
  is echoed as sent.
* MSA: MSA-1 the code, MSA-2 the inbound MSH-10; MSA-3 the text for versions before 2.7
  (withdrawn in 2.7; the text is in ERR-8 there).
* ERR (when an error is given): v2.5+ ``ERR||<seg>^<seq>^<field>|<code>^<text>^HL70357|E||||<message>`` (ERR-8 user message);
  earlier versions ``ERR|<seg>^<seq>^<field>^<code>&<text>&HL70357``. The location comes
  from ``HL7Error.location`` (``PID``, ``OBR-4``, ``OBX[3]-5``); the segment sequence is 1
  when the error does not name the occurrence. The human-readable text is escaped; line
  breaks become spaces.

A version this module cannot parse (an unsupported MSH-12) is answered in v2.5 layout,
still echoing MSH-12 as sent.

**Always frameable.** Echoed fields are copied as sent except for C0 control characters
(all but TAB; CR and LF end the MSH before a field is read): VT and FS would make the ACK
impossible to frame in MLLP, and the others are not HL7 text. Each becomes the HL7 hex
escape ``\\Xhh\\`` with the sender's escape character (``?`` when MSH-2 has none), so
MSA-2 unescapes to exactly the MSH-10 that was sent. ``encode_message`` then replaces any
character whose encoding in the message charset contains a VT or FS byte (``Ĝ`` U+011C
in UTF-16) by ``?``; ``frameable_ack`` gives the same treatment to ACK bytes stored by
an earlier version, before they are sent again for a duplicate.

**MSH-7 with the sender's delimiters.** ``now`` is written with its UTC offset, unless
the offset's sign (``+``/``-``) is one of the sender's delimiters: then the offset would
split MSH-7 into more fields or components and every later field would be misread, so
MSH-7 is the gateway's local time without an offset (which HL7 reads as the sender's
local time). A configured ``sending_application``/``sending_facility`` is escaped with
the sender's delimiters for the same reason.

**Unreadable MSH** (``build_unreadable_ack``): when the field separator and MSH-10 can be
salvaged from the text, the answer is an AR whose ERR carries the error's code (default
102, data type error) and location; MSH-2 falls back to ``^~\\&`` when the sender's is
unusable, MSA-2 echoes the salvaged MSH-10, and MSH-18 (as the field separator places it)
follows the rule above. When not even that is possible (no MSH at the start, no field
separator, no MSH-10) the result is ``None``: there is nothing to address an ACK to, and
the listener closes the connection without answering.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from .datatypes import components, repetitions, subcomponents
from .decoding import charset_codec, charset_name, declares, decode_message
from .errors import ERROR_TEXTS, ContentError, HL7Error, UnreadableHeader
from .escapes import escape, escape_controls, render_text
from .policy import effective_event
from .header import DEFAULT_ENCODING_CHARACTERS, Delimiters, MessageHeader, read_header, \
    valid_encoding_characters

ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")
_VT, _FS = 0x0B, 0x1C  # MLLP's start and end of frame (ints: ``in`` on bytes is fastest so)
_LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?(?:\.(\d+))?$")


@functools.lru_cache(maxsize=64)  # read for every ACK; senders use a handful of versions
def version_tuple(version: str) -> tuple[int, ...] | None:
    """``"2.5.1"`` -> (2, 5, 1); None for anything that is not a v2 version number."""
    if not re.fullmatch(r"2(\.\d+){1,2}", version.strip()):
        return None
    return tuple(int(p) for p in version.strip().split("."))


def format_ts(now: datetime) -> str:
    """HL7 TS to the second, with the UTC offset when ``now`` is timezone-aware."""
    if now.year >= 1000 and (now.tzinfo is None or now.tzinfo is timezone.utc):
        # The receiver's clock: the same digits as strftime below, in a third of its time.
        text = "%04d%02d%02d%02d%02d%02d" % (now.year, now.month, now.day, now.hour, now.minute, now.second)
        return text if now.tzinfo is None else text + "+0000"
    text = now.strftime("%Y%m%d%H%M%S")
    return text + now.strftime("%z") if now.tzinfo is not None else text


def build_ack(
    header: MessageHeader,
    code: str,
    *,
    control_id: str,
    now: datetime,
    error: HL7Error | None = None,
    text: str | None = None,
    sending_application: str | None = None,
    sending_facility: str | None = None,
    charset: str | None = None,
    accept_ack_type: str | None = None,
) -> str:
    """The ACK for ``header``: segments joined by CR, no trailing CR, no framing.

    ``charset`` is the codec the ACK will be encoded in (the one the message was decoded
    with): MSH-18 names it where the sender's MSH-18 names another (module docstring).
    ``accept_ack_type`` is written in MSH-15 (empty otherwise): an application ACK sent on
    its own connection asks with ``AL`` for the accept ACK it waits for, since a receiver
    does not acknowledge an acknowledgement that does not ask for it.
    """
    if code not in ACK_CODES:
        raise ValueError(f"unknown acknowledgement code {code!r}")
    d = header.delimiters
    version = version_tuple(header.version) or (2, 5)
    event = effective_event(header)
    if version < (2, 3):
        message_type = "ACK"
    elif version < (2, 3, 1):
        message_type = f"ACK{d.component}{event}" if event else "ACK"
    else:
        message_type = f"ACK{d.component}{event}{d.component}ACK" if event else f"ACK{d.component}{d.component}ACK"
    processing_id, version_id = header.fields(11, 12)
    msh = [
        "MSH", header.encoding_characters,
        header.receiving_application if sending_application is None else escape(sending_application, d),
        header.receiving_facility if sending_facility is None else escape(sending_facility, d),
        header.sending_application, header.sending_facility,
        _message_datetime(now, d), "", message_type, escape(control_id, d),
        processing_id, version_id,
    ]
    # MSH-13, MSH-14, MSH-15 (accept ACK type), MSH-16, MSH-17; trailing empties dropped.
    optional = ["", "", accept_ack_type or "", "", ""]
    if header.character_sets:
        # The names as decoding read them (each repetition stripped, as decoding strips it):
        # a trailing control character, echoed and escaped, would leave a name no reader
        # knows on an ACK encoded in the charset it names.
        names = d.repetition.join(header.character_sets)
        if charset is not None and not declares(header.character_sets, charset):
            names = charset_name(charset) or names
        msh += [*optional, names]
    elif accept_ack_type:
        msh += optional[:3]
    message = text if text is not None else (error.message if error is not None else None)
    msa = ["MSA", code, header.control_id]
    if message and version < (2, 7):
        msa.append(escape(message, d))
    segments = [header.field_separator.join(msh), header.field_separator.join(msa)]
    if error is not None:
        segments.append(_err_segment(error, message, d, version))
    text = "\r".join(segments)
    if header.raw_msh.isprintable():
        return text  # nearly every ACK: every echoed field is a piece of the MSH
    # Over the whole text: what we write ourselves has no control characters (escape()
    # turns them into spaces), so only the fields echoed as sent can be changed.
    return escape_controls(text, d.escape)


def _message_datetime(now: datetime, d: Delimiters) -> str:
    """MSH-7 (module docstring): ``now`` with its offset when the sign is not a delimiter."""
    stamp = format_ts(now)
    if d.characters.isdisjoint(stamp):
        return stamp
    # Only an aware ``now`` has an offset: astimezone() converts it to the local time.
    return format_ts(now.astimezone().replace(tzinfo=None))


def _err_segment(error: HL7Error, message: str | None, d: Delimiters, version: tuple[int, ...]) -> str:
    seg, seq, field_no = _location_parts(error.location)
    code_text = ERROR_TEXTS.get(error.err_code, "Application error")
    fs, cs = d.field, d.component
    if version >= (2, 5):
        location = cs.join([seg, seq, field_no]).rstrip(cs) if seg else ""
        cwe = cs.join([error.err_code, escape(code_text, d), "HL70357"])
        fields = ["ERR", "", location, cwe, "E", "", "", "", escape(message or "", d)]
        return fs.join(fields).rstrip(fs)
    sub = d.subcomponent or cs
    ce = sub.join([error.err_code, escape(code_text, d), "HL70357"])
    return fs.join(["ERR", cs.join([seg, seq, field_no, ce])])


def _location_parts(location: str) -> tuple[str, str, str]:
    """``"OBR-4"`` -> ("OBR", "", "4"); ``"OBX[3]-5"`` -> ("OBX", "3", "5")."""
    match = _LOCATION.match(location.strip())
    if not match:
        return "", "", ""
    # ERL-2 (segment sequence) is required; without a better answer it is the first occurrence.
    return match.group(1), match.group(2) or "1", match.group(3) or ""


def build_unreadable_ack(
    text_or_none: str | None, code: str, control_id: str, now: datetime, error: HL7Error,
    charset: str | None = None,
) -> str | None:
    """An AR/AE for a message whose MSH could not be read, or None (module docstring).
    ``charset`` as for :func:`build_ack`."""
    if not text_or_none:
        return None
    text = text_or_none.lstrip("\ufeff \t\r\n")
    if not text.startswith("MSH") or len(text) < 4:
        return None
    fs = text[3]
    if fs.isalnum() or fs.isspace():
        return None
    segment = re.split(r"[\r\n]", text, maxsplit=1)[0]
    parts = segment.split(fs)
    if len(parts) < 10 or not parts[9].strip():
        return None
    parts += [""] * (12 - len(parts))
    if not valid_encoding_characters(fs, parts[1]):
        if fs in DEFAULT_ENCODING_CHARACTERS:
            return None
        parts[1] = DEFAULT_ENCODING_CHARACTERS
    version = parts[11].split(parts[1][0])[0].strip()
    salvaged = parts[:11] + [version if version_tuple(version) else "2.5"]
    # MSH-18 where the field separator puts it (read, stripped and escaped as any MSH-18),
    # unless it is what keeps the salvaged MSH from being read.
    tries = [salvaged + ["", "", "", "", "", parts[17]], salvaged] if len(parts) > 17 else [salvaged]
    for fields in tries:
        try:
            header = read_header(fs.join(fields))
            break
        except UnreadableHeader:
            continue
    else:
        return None
    header = replace(header, message_type="", trigger_event="", message_structure="")
    return build_ack(header, code, control_id=control_id, now=now, error=error, charset=charset)


def encode_message(text: str, charset: str) -> bytes:
    """Encode an outgoing message; characters the charset lacks become ``?``, and so do
    characters whose encoding contains a VT or FS byte, which MLLP could not frame (a C0
    control character, or ``Ĝ`` U+011C and ``ċ`` U+010B in UTF-16)."""
    codec = charset_codec(charset) or "utf-8"
    data = text.encode(codec, errors="replace")
    if _VT not in data and _FS not in data:
        return data  # every message in an ASCII-based charset without control characters
    # In the codecs that can carry an MSH (ASCII-based ones, UTF-16/32) a frame byte comes
    # from one character's own encoding, never from two neighbours: test each alone.
    safe = "".join("?" if _VT in (b := ch.encode(codec, errors="replace")) or _FS in b else ch
                   for ch in text)
    return safe.encode(codec, errors="replace")


def frameable_ack(payload: bytes, default_charset: str = "utf-8") -> bytes:
    """ACK bytes MLLP can frame: ``payload`` itself, unless it holds a VT or FS byte (an
    ACK stored by a version that copied them from the sender's MSH); then it is decoded
    and re-encoded with the rules :func:`build_ack` and :func:`encode_message` apply now.
    Sent again as stored, it would be refused by the framing and the sender, answered
    with a closed connection, would resend it for ever."""
    if _VT not in payload and _FS not in payload:
        return payload
    decoded = decode_message(payload, default_charset, normalise=False)
    try:
        esc = read_header(decoded.text).delimiters.escape
    except UnreadableHeader:
        esc = ""
    return encode_message(escape_controls(decoded.text, esc), decoded.charset)


# Table 0357 as the coding system of a CE/CWE (component 3 or 6): ``HL70357`` as HL7 writes
# it, and the spellings receivers send (``HL7357``, ``0357``), in any case.
TABLE_0357_SYSTEMS = frozenset({"HL70357", "HL7357", "0357"})


def table_0357_code(parts: list[str]) -> str | None:
    """The table 0357 code of an error CE/CWE split into its (sub)components.

    Components 1-3 are identifier, text and coding system, 4-6 the alternate ones; a
    receiver with codes of its own sends its local code in one triplet and HL7's in the
    other. The identifier whose coding system names table 0357 wins; else the first
    identifier that names no system (a receiver that leaves the system out means HL7's);
    ``""`` when every identifier names another system (a local code alone: ``L``,
    ``99xxx``), None when there is no identifier at all.
    """
    parts = [p.strip() for p in parts] + [""] * 6
    triplets = ((parts[0], parts[2]), (parts[3], parts[5]))
    for identifier, system in triplets:
        if identifier and system.upper() in TABLE_0357_SYSTEMS:
            return identifier
    for identifier, system in triplets:
        if identifier and not system:
            return identifier
    return "" if any(identifier for identifier, _ in triplets) else None


@dataclass(frozen=True)
class AckError:
    """One error a downstream ACK reports: its table 0357 code as sent (``""`` when it
    gives only a code of another system, :func:`table_0357_code`), where it is
    (``PID-5``, ``OBX[2]-5``, ``PID``; ``""`` when not given or not a segment and field
    reference) and its severity (ERR-4, table 0516: ``E``, ``F``, ``W``, ``I``; ``""`` when
    not sent, as before v2.5). Never the destination's text, which may quote a value."""

    code: str
    location: str = ""
    severity: str = ""


@dataclass(frozen=True)
class AckInfo:
    """What a downstream ACK says: MSA-1, MSA-2, its text, the first table 0357 error code
    and every error (``errors``: each ERR segment, each ERR-1 repetition before v2.5, and
    MSA-6 when it names a code no ERR does)."""

    code: str
    acked_control_id: str
    text: str | None
    error_code: str | None
    errors: tuple[AckError, ...] = ()


def parse_ack(payload: bytes) -> AckInfo:
    """Read a downstream ACK; raises UnreadableHeader or ContentError (no MSA)."""
    decoded = decode_message(payload)
    header = read_header(decoded.text)
    d = header.delimiters
    segments = decoded.text.split("\r")
    msa = next((s for s in segments if s.startswith("MSA" + d.field)), None)
    if msa is None:
        raise ContentError("acknowledgement has no MSA segment", err_code="100", location="MSA")
    fields = msa.split(d.field)
    code = fields[1].strip().upper() if len(fields) > 1 else ""
    if code not in ACK_CODES:
        raise ContentError("MSA-1 is not an acknowledgement code", err_code="103", location="MSA-1")
    acked = fields[2].strip() if len(fields) > 2 else ""
    text = render_text(fields[3], d, decoded.charset).strip() if len(fields) > 3 else ""
    errors, err_text = _read_errors(segments, d, decoded.charset)
    # MSA-6 (error condition, a CE of table 0357, in older versions; ERR carries the code
    # since): a sender may put its code there only, or there as well as in ERR.
    condition = (table_0357_code(components(fields[6], d)) if len(fields) > 6 else None) or ""
    if condition and condition not in {e.code for e in errors}:
        errors.append(AckError(condition))
    return AckInfo(code, acked, text or err_text or None,
                   next((e.code for e in errors if e.code), None), tuple(errors))


def _first(parts: list[str]) -> str:
    return parts[0].strip() if parts else ""


def _err_location(segment: str, sequence: str, field_no: str) -> str:
    """``PID-5``, ``OBX[2]-5`` or ``PID`` (the form ``HL7Error.location`` takes); ``""``
    for anything that is not a segment id with numbers, so no value can pass as one."""
    segment, sequence, field_no = segment.strip(), sequence.strip(), field_no.strip()
    if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", segment) or not re.fullmatch(r"\d*", sequence) \
            or not re.fullmatch(r"\d*", field_no):
        return ""
    return (segment + (f"[{sequence}]" if sequence not in ("", "1") else "")
            + (f"-{field_no}" if field_no else ""))


def _read_errors(segments: list[str], d: Delimiters,
                 charset: str) -> tuple[list[AckError], str | None]:
    """Every error of the ERR segments, and the first one's text (ERR-8, else the code's
    text; before v2.5 the text of ERR-1's CE)."""
    errors: list[AckError] = []
    text: str | None = None
    for err in (s for s in segments if s.startswith("ERR" + d.field)):
        fields = err.split(d.field) + [""] * 8
        if fields[3]:  # v2.5+: ERR-2 ERL (repeating), ERR-3 CWE, ERR-4 severity, ERR-8 text
            cwe = components(fields[3], d)
            erl = components(repetitions(fields[2], d)[0], d) + ["", "", ""]
            code = table_0357_code(cwe)
            if code is not None:
                errors.append(AckError(code, _err_location(*erl[:3]),
                                       _first(components(fields[4], d)).upper()))
            message = fields[8] or (cwe[1] if len(cwe) > 1 else "")
            if text is None and message:
                text = render_text(message, d, charset) or None
            continue
        for eld in repetitions(fields[1], d) if fields[1] else []:  # v2.1-2.4: ERR-1 ELD
            parts = components(eld, d)
            if len(parts) < 4:
                continue
            ce = subcomponents(parts[3], d)
            code = table_0357_code(ce)
            if code is not None:
                errors.append(AckError(code, _err_location(*parts[:3])))
                if text is None and len(ce) > 1 and ce[1]:
                    text = render_text(ce[1], d, charset) or None
    return errors, text
