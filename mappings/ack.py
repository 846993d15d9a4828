"""Acknowledgements: building ours from the inbound MSH, reading the ones we get back.

``build_ack`` writes, with the sender's own delimiters:

* MSH: MSH-3/4 = inbound MSH-5/6 (or the configured application/facility), MSH-5/6 =
  inbound MSH-3/4, MSH-7 = ``now``, MSH-9 = ``ACK`` (v2.1-2.2), ``ACK^<event>`` (v2.3) or
  ``ACK^<event>^ACK`` (v2.3.1+), MSH-10 = the new control id, MSH-11 and MSH-12 copied as
  sent, MSH-18 copied when the sender declared one (the ACK is encoded in that charset).
* MSA: MSA-1 the code, MSA-2 the inbound MSH-10; MSA-3 the text for versions before 2.7
  (withdrawn in 2.7; the text is in ERR-8 there).
* ERR (when an error is given): v2.5+ ``ERR||<seg>^<seq>^<field>|<code>^<text>^HL70357|E||||<message>`` (ERR-8 user message);
  earlier versions ``ERR|<seg>^<seq>^<field>^<code>&<text>&HL70357``. The location comes
  from ``HL7Error.location`` (``PID``, ``OBR-4``, ``OBX[3]-5``); the segment sequence is 1
  when the error does not name the occurrence. The human-readable text is escaped; line
  breaks become spaces.

A version this module cannot parse (an unsupported MSH-12) is answered in v2.5 layout,
still echoing MSH-12 as sent.

**Unreadable MSH** (``build_unreadable_ack``): when the field separator and MSH-10 can be
salvaged from the text, the answer is an AR whose ERR carries the error's code (default
102, data type error) and location; MSH-2 falls back to ``^~\\&`` when the sender's is
unusable, MSA-2 echoes the salvaged MSH-10. When not even that is possible (no MSH at
the start, no field separator, no MSH-10) the result is ``None``: there is nothing to
address an ACK to, and the listener closes the connection without answering.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from .decoding import charset_codec, decode_message
from .errors import ERROR_TEXTS, ContentError, HL7Error, UnreadableHeader
from .escapes import escape, render_text
from .policy import effective_event
from .header import DEFAULT_ENCODING_CHARACTERS, Delimiters, MessageHeader, read_header, \
    valid_encoding_characters

ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")
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
) -> str:
    """The ACK for ``header``: segments joined by CR, no trailing CR, no framing."""
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
    processing_id, version_id, charsets = header.fields(11, 12, 18)
    msh = [
        "MSH", header.encoding_characters,
        header.receiving_application if sending_application is None else sending_application,
        header.receiving_facility if sending_facility is None else sending_facility,
        header.sending_application, header.sending_facility,
        format_ts(now), "", message_type, escape(control_id, d),
        processing_id, version_id,
    ]
    if charsets:
        msh += ["", "", "", "", "", charsets]
    message = text if text is not None else (error.message if error is not None else None)
    msa = ["MSA", code, header.control_id]
    if message and version < (2, 7):
        msa.append(escape(message, d))
    segments = [header.field_separator.join(msh), header.field_separator.join(msa)]
    if error is not None:
        segments.append(_err_segment(error, message, d, version))
    return "\r".join(segments)


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
) -> str | None:
    """An AR/AE for a message whose MSH could not be read, or None (module docstring)."""
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
    salvaged = fs.join(parts[:11] + [version if version_tuple(version) else "2.5"])
    try:
        header = read_header(salvaged)
    except UnreadableHeader:
        return None
    header = replace(header, message_type="", trigger_event="", message_structure="")
    return build_ack(header, code, control_id=control_id, now=now, error=error)


def encode_message(text: str, charset: str) -> bytes:
    """Encode an outgoing message; characters the charset lacks become ``?``."""
    codec = charset_codec(charset) or "utf-8"
    return text.encode(codec, errors="replace")


@dataclass(frozen=True)
class AckInfo:
    """What a downstream ACK says: MSA-1, MSA-2, its text and the first ERR code."""

    code: str
    acked_control_id: str
    text: str | None
    error_code: str | None


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
    error_code, err_text = _read_err(segments, d, decoded.charset)
    return AckInfo(code, acked, text or err_text or None, error_code)


def _read_err(segments: list[str], d: Delimiters, charset: str) -> tuple[str | None, str | None]:
    err = next((s for s in segments if s.startswith("ERR" + d.field)), None)
    if err is None:
        return None, None
    fields = err.split(d.field)
    comps = lambda f: f.split(d.component) if d.component else [f]  # noqa: E731
    if len(fields) > 3 and fields[3]:  # v2.5+: ERR-3 CWE, ERR-8 user message
        cwe = comps(fields[3])
        message = fields[8] if len(fields) > 8 and fields[8] else (cwe[1] if len(cwe) > 1 else "")
        return cwe[0] or None, render_text(message, d, charset) or None
    if len(fields) > 1 and fields[1]:  # v2.1-2.4: ERR-1 ELD, 4th component CE
        eld = comps(fields[1].split(d.repetition)[0] if d.repetition else fields[1])
        if len(eld) > 3:
            ce = eld[3].split(d.subcomponent) if d.subcomponent else [eld[3]]
            return ce[0] or None, render_text(ce[1], d, charset) if len(ce) > 1 else None
    return None, None
