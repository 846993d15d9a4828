"""HL7 v2 escape sequences and FT formatting commands, with the message's own delimiters.

``render_text`` turns an escaped TX/FT/ST/CE value into plain text:

=================  ==============================================================
sequence           rendered as
=================  ==============================================================
``\\F\\ \\S\\ \\T\\``    the field / component / sub-component separator character
``\\R\\ \\E\\ \\P\\``    the repetition separator / escape / truncation character
``\\Xhh...\\``        the bytes hh... decoded with the message charset (UTF-8, else
                   latin-1 when they are not valid in it); CR/LF become line breaks
``\\H\\ \\N\\``         nothing (highlighting has no plain-text form)
``\\Zxx\\``           nothing (locally defined; meaning unknown here)
``\\Cxxyy\\ \\Mxxyyzz\\`` nothing (ISO 2022 character set switches; the text between
                   is already decoded)
``\\.br\\``           line break
``\\.sp N\\``         line break plus N blank lines (N defaults to 1; at most 20)
``\\.in N\\``         line break; following lines indented by N spaces (``+N``/``-N``
                   adjust the current indent; the indent is at most 80)
``\\.ti N\\``         line break; the next line only is indented by N more spaces
                   (at most 80 in all)
``\\.sk N\\``         N spaces (at most 80)
``\\.ce\\``           line break (centering has no plain-text form)
``\\.fi\\ \\.nf\\``      nothing (fill mode has no plain-text form)
=================  ==============================================================

**Counts are capped** (``MAX_BLANK_LINES``, ``MAX_COLUMNS``): the count comes from the
sender, and ``\\.sp 1000000000\\`` would otherwise cost gigabytes and seconds of the
reactor (a 20-digit one overflowed).  A report needs a few blank lines and an indent
within one display line; beyond that plain text shows nothing more, so a larger count is
rendered as the cap.  The worst case is then a line break and one character (``\\.br\\x``,
6 characters) rendered with a full indent (82), so the rendered text is never more than
14 times as long as the value.

Anything else between two escape characters, and an escape character with no closing
one, is kept literally: senders put stray backslashes in free text, and dropping text
would be worse than showing a backslash. Formatting commands are honoured in every text
type, not only FT, because RIS systems send ``\\.br\\`` in TX and ST too.

``escape`` is the inverse for text we write (ACK MSA-3/ERR, outbound ORU values).
"""

from __future__ import annotations

import re
from functools import lru_cache

from .header import Delimiters

# Caps on the counts of FT formatting commands (module docstring): a report needs a few
# blank lines, and no indent or skip wider than one 80-column display line.
MAX_BLANK_LINES = 20
MAX_COLUMNS = 80

# C0 control characters that text written by the gateway must not carry: all but TAB, LF
# and CR (which end a segment). VT and FS would make the message impossible to frame in
# MLLP, and the others are not HL7 text.
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_FORMAT = re.compile(r"\.(br|sp|in|ti|sk|ce|fi|nf)(?:\s*([+-]?\d+))?\s*$", re.IGNORECASE)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")


@lru_cache(maxsize=64)
def _sequence_pattern(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(rf"{e}([^{e}\r\n]{{0,256}}){e}")


def render_text(value: str, delimiters: Delimiters, charset: str = "utf-8") -> str:
    """Plain text for an escaped HL7 text value (see the module docstring)."""
    esc = delimiters.escape
    if not esc or esc not in value:
        return value
    out: list[str] = []
    state = _Layout()
    pos = 0
    for match in _sequence_pattern(esc).finditer(value):
        out.append(state.text(value[pos:match.start()]))
        out.append(_render_sequence(match.group(1), match.group(0), delimiters, charset, state))
        pos = match.end()
    out.append(state.text(value[pos:]))
    return "".join(out)


class _Layout:
    """Indentation state of FT formatting commands while rendering one value."""

    def __init__(self) -> None:
        self.indent = 0
        self.pending: int | None = None  # indent to apply at the start of the next line

    def newline(self, count: int = 1) -> str:
        self.pending = self.indent if self.pending is None else self.pending
        return "\n" * count

    def text(self, chunk: str) -> str:
        if not chunk:
            return ""
        if self.pending is not None:
            pad, self.pending = self.pending, None
            return " " * pad + chunk
        return chunk


def _render_sequence(body: str, literal: str, d: Delimiters, charset: str, state: _Layout) -> str:
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition,
              "E": d.escape, "P": d.truncation}
    if body in simple and simple[body]:
        return state.text(simple[body])
    if body in ("H", "N"):
        return ""
    head = body[:1]
    if head == "X" and _HEX.fullmatch(body[1:]):
        return state.text(_hex_text(body[1:], charset))
    if head == "Z" and len(body) > 1:
        return ""
    if head in ("C", "M") and _HEX.fullmatch(body[1:]) and len(body) - 1 in (4, 6):
        return ""
    fmt = _FORMAT.match(body)
    if fmt is None:
        return state.text(literal)
    command, number = fmt.group(1).lower(), fmt.group(2)
    # The digits are at most 256 characters (the sequence pattern): int() is cheap, and
    # clamping before any arithmetic keeps every count a small int (module docstring).
    n = max(-MAX_COLUMNS, min(int(number), MAX_COLUMNS)) if number is not None else None
    if command == "br" or command == "ce":
        return state.newline()
    if command == "sp":
        return state.newline(1 + (1 if n is None else min(max(n, 0), MAX_BLANK_LINES)))
    if command == "in":
        if number is not None and number[0] in "+-":
            state.indent = _columns(state.indent + (n or 0))
        else:
            state.indent = _columns(n or 0)
        state.pending = None
        return state.newline()
    if command == "ti":
        text = state.newline()
        state.pending = _columns(state.indent + (n or 0))
        return text
    if command == "sk":
        return state.text(" " * _columns(1 if n is None else n))
    return ""  # fi / nf


def _columns(n: int) -> int:
    """An indent or skip within one display line (``\\.in +80\\`` repeated stays 80)."""
    return max(0, min(n, MAX_COLUMNS))


def _hex_text(hexdigits: str, charset: str) -> str:
    data = bytes.fromhex(hexdigits)
    try:
        text = data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def escape(text: str, delimiters: Delimiters, *, newline: str = " ") -> str:
    """Escape ``text`` for an HL7 field; line breaks become ``newline`` (e.g. ``"\\\\.br\\\\"``).

    Without an escape character (an MSH-2 shorter than three characters) delimiter
    characters cannot be escaped and are replaced by spaces.
    """
    d = delimiters
    esc = d.escape
    if text.isprintable() and d.characters.isdisjoint(text):
        return text  # nothing to escape or replace (control ids, most messages)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    pairs = [(d.field, "F"), (d.component, "S"), (d.subcomponent, "T"), (d.repetition, "R"),
             (d.truncation, "P")]
    out: list[str] = []
    for char in text:
        if char == "\n":
            out.append(newline)
        elif esc and char == esc:
            out.append(f"{esc}E{esc}")
        else:
            for delim, code in pairs:
                if delim and char == delim:
                    out.append(f"{esc}{code}{esc}" if esc else " ")
                    break
            else:
                out.append(char if char.isprintable() or char == "\t" else " ")
    return "".join(out)


def escape_controls(text: str, esc: str) -> str:
    """``text`` with each C0 control character but TAB, LF and CR as ``\\Xhh\\``
    (the ACK's echoed fields, the segments an outbound message copies).

    Escaped rather than replaced: a receiving engine reads MSA-2 like any field, escapes
    resolved, and so matches it against the MSH-10 it sent, which a replacement character
    would never do (an engine that compares raw bytes could not have received an ACK
    with an FS in it at all). The hex is the character's byte value, the same in every
    ASCII-based charset. Without an escape character the only choice left is ``?``.
    """
    if CONTROLS.search(text) is None:
        return text  # a TAB or another non-printable character, but no control character
    if not esc:
        return CONTROLS.sub("?", text)
    return CONTROLS.sub(lambda m: f"{esc}X{ord(m.group()):02X}{esc}", text)
