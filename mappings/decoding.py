"""Bytes off the wire -> message text with CR segment separators. Never raises on bytes.

Decisions (each has a test in tests/mappings/test_mapping_decoding.py):

* **Byte order marks** (UTF-8, UTF-16 LE/BE) are stripped and win over MSH-18: a sender
  that writes a BOM knows its encoding better than its MSH-18 field. UTF-16 without a
  BOM is recognised from the NUL pattern of ``"MSH"``, after any padding.
* **MSH-18 is read from the raw bytes**, as latin-1, before decoding: every character set
  in HL7 table 0211 that can carry an MSH segment keeps ASCII bytes for ASCII characters.
  MSH-18 may repeat (``8859/1~UNICODE UTF-8``, v2.3+): the first value this module knows
  is used. Names are matched case-insensitively ignoring spaces, ``_`` and ``-``, so
  ``UNICODE UTF-8``, ``UTF-8``, ``utf8``, ``ISO_IR 192`` and ``ISO-IR-192`` are the same.
* **An MSH holding bytes that are not printable ASCII is read in the charset it names.**
  Read byte by byte, a multi-byte character can look like a delimiter: its second byte may
  be anything in 0x40-0x7E in Shift_JIS, GBK/GB18030 and Big5 (``倒`` is ``93 7C`` in
  Shift_JIS, ``|`` being 7C), and in ISO-2022 any byte after a shift (ESC, SO) can be half
  of a character. Each such byte adds a field separator (or a repetition separator), so the
  field the bytes show at MSH-18 can be MSH-17 or less, and the true MSH-18 one of the
  fields after it. The rule is a consistent reading: MSH-18 is the first value, in field
  order from that position on, naming a charset in which the MSH, decoded, has at MSH-18
  (its first value this module knows) that same charset. Without such a value the byte
  reading stands. An MSH in printable ASCII reads the same in every charset, so it is not
  decoded twice.
* **Without a usable MSH-18** the configured default (``default_charset``) is used. A name
  is usable when it names a character set HL7 text can be carried in (:func:`charset_codec`):
  one in which every ASCII character stands for itself wherever it stands, since MSH-18
  itself, the delimiters, segment ids and escape sequences were read as ASCII; or one of the
  Unicode encoding forms a BOM identifies. A Python codec that is not a character set
  (``hex``, ``base64``, ``rot13``, ``zlib``; ``idna``, ``punycode``, ``undefined``,
  ``unicode_escape``, ``raw_unicode_escape``, ``utf-7``; EBCDIC code pages) counts as
  unknown: the message falls back to the default exactly as with an empty MSH-18.
* **Declared UTF-16 on a message whose MSH we just read as ASCII** cannot be right (UTF-16
  would have NUL bytes there); it is decoded as UTF-8 instead. ``UNICODE`` alone (a
  pre-2.5 name for UCS-2 that senders use loosely) is treated the same way.
* **Fallback**: the declared codec is tried strictly, then UTF-8, then the default. If none
  decodes every byte, the declared (else default) codec decodes with one U+FFFD per
  undecodable byte, and ``replaced`` counts them. ``charset`` names the codec really used,
  and is always one :func:`charset_codec` accepts, so the ACK can be encoded in it. Where
  MSH is not in printable ASCII, a codec is taken only if its text names at MSH-18 the
  charset chosen (or none, as chosen): one that reads a second byte as a separator would
  move MSH-10. So a Shift_JIS message with one bad byte is read in Shift_JIS with one
  replacement rather than in a single-byte default, and a UTF-8 message naming Shift_JIS
  that Shift_JIS would misread is read as UTF-8. Should even the lossy reading move MSH's
  fields (a stray lead byte just before a separator), MSH keeps its byte reading (UTF-8 with
  replacements) and the segments after it are read in the declared codec.
* **Padding around a message** (NUL bytes, which some senders pad frames with, and
  whitespace: space, TAB, CR, LF) before the first segment and after the last is not part
  of the message, whether or not the segments are normalised: :func:`normalise_segments`
  strips it, MSH is found after it and an MSH that ends the message ends before it (here
  for MSH-18, in :func:`mappings.header.read_header` for every field).
* **Segment separators**: CRLF, CR and LF all end a segment. A line that does not start
  with a segment id (a capital letter and one or two capitals/digits followed by the field
  separator) continues the previous segment and is joined to it with LF. Spaces or tabs
  before a segment id (``" OBR|1|..."``, from a sender that indents or pads lines) are
  dropped and the line is a segment: read as a continuation, the order group it starts
  would vanish into the previous report's text. This keeps a raw
  line break inside an ED base64 value or a multi-line NTE inside its field instead of
  inventing a bogus segment; base64 decoders ignore the LF. Blank lines between segments
  are dropped; blank lines inside a continued value are kept. A segment id of two
  characters (a truncated ``OBX`` sent as ``BX|``) still starts a segment so the damage
  stays in one unknown segment rather than spilling into the previous one. Header segments
  (MSH, BHS, FHS) never continue: their fields are never multi-line, so a damaged line
  after MSH (``PID<VT>|...``) stays a segment of its own and MSH stays readable.
"""

from __future__ import annotations

import codecs
import functools
import re
import threading
from dataclasses import dataclass

from .frozen import frozen_instance

_MARK = "\ud800"  # a lone surrogate: no strict decoder produces one, so it marks our replacements


def _mark_errors(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _MARK * (exc.end - exc.start), exc.end


codecs.register_error("ri-gateway-mark", _mark_errors)

# HL7 table 0211 names, DICOM (0008,0005) spellings and the common IANA/Windows names,
# keyed by _key(name). Values are Python codec names.
_CHARSETS: dict[str, str] = {}


# The MSH-18 value naming each codec (keyed by codecs.lookup name): its first name
# registered, the HL7 table 0211 one where the table has it (charset_name).
_NAMES: dict[str, str] = {}


def _register(codec: str, *names: str, msh18: str | None = None) -> None:
    """``names`` read as ``codec``; ``msh18`` (default: the first name) names it in an ACK."""
    for name in names:
        _CHARSETS[_key(name)] = codec
    _NAMES.setdefault(codecs.lookup(codec).name, msh18 or names[0])


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).upper()


_register("ascii", "ASCII", "US-ASCII", "ANSI_X3.4-1968", "ISO_IR 6", "ISO 646", "ISO646-US")
_ISO8859 = {1: 100, 2: 101, 3: 109, 4: 110, 5: 144, 6: 127, 7: 126, 8: 138, 9: 148,
            10: None, 11: 166, 13: None, 14: None, 15: 203}
for _n, _dicom in _ISO8859.items():
    _names = [f"8859/{_n}", f"ISO-8859-{_n}", f"ISO8859-{_n}", f"ISO_8859-{_n}", f"8859-{_n}", f"ISO8859{_n}"]
    if _dicom is not None:
        _names += [f"ISO_IR {_dicom}", f"ISO IR{_dicom}"]
    _register(f"iso8859_{_n}", *_names)
_register("latin_1", "LATIN1", "LATIN-1", "L1", "ISO-IR-100")
_register("iso8859_15", "LATIN9", "LATIN-9")
_register("cp1252", "WINDOWS-1252", "CP1252", "WIN1252", "MS-ANSI")
_register("cp1250", "WINDOWS-1250", "CP1250")
_register("cp1251", "WINDOWS-1251", "CP1251")
_register("utf-8", "UNICODE UTF-8", "UTF-8", "UTF8", "ISO_IR 192", "UNICODE")
# UTF-8 with a BOM: the BOM is stripped before decoding anyway, and an ACK must not start
# with one (Python's utf-8-sig would write it).
_register("utf-8", "UTF-8-SIG")
_register("utf-16", "UNICODE UTF-16", "UTF-16", "UTF16", "UCS-2")
_register("utf-32", "UNICODE UTF-32", "UTF-32")
# The byte orders a BOM or NULs identify (_strip_bom); table 0211 has one name for each form.
_register("utf-16-le", "UTF-16LE", msh18="UNICODE UTF-16")
_register("utf-16-be", "UTF-16BE", msh18="UNICODE UTF-16")
_register("gb18030", "GB 18030-2000", "GB18030", "GB 18030")
_register("gbk", "GBK")
_register("big5", "BIG-5", "BIG5")
_register("euc_kr", "KS X 1001", "ISO 2022 IR 149")
_register("shift_jis", "ISO IR14", "ISO IR87", "SHIFT_JIS", "SJIS", "ISO_IR 13")
_register("euc_jp", "ISO IR159", "EUC-JP")
_register("tis_620", "TIS-620")

_SEGMENT_END = re.compile(r"\r\n|\r|\n")

# What may pad a message before its first segment and after its last (module docstring).
PADDING = "\r\n\t \x00"
# The part of PADDING that can end a segment's last line (CR and LF end the line itself).
LINE_PADDING = "\t \x00"
# Nothing but padding from a position to the end of the text: the segment before it is the
# message's last one.
ONLY_PADDING = re.compile(rf"[{re.escape(PADDING)}]*\Z")
_ONLY_PADDING_BYTES = re.compile(ONLY_PADDING.pattern.encode("ascii"))
# What may stand before the first segment: padding, any other whitespace and a BOM character
# (read_header and the MSH-18 reading skip the same).
LEADING_PADDING = re.compile(r"[\s\x00\ufeff]*")
# An MSH that starts a segment after the first (read_header finds the one after an envelope).
MSH_AFTER_BREAK = re.compile(r"[\r\n]MSH")


def without_trailing_padding(segment: str, text: str, end: int) -> str:
    """``segment``, which ends at ``end`` of ``text``, without the padding after it when
    nothing but padding follows it: what trails the last segment pads the message (as
    :func:`normalise_segments` strips it). Only a segment ending in such a character can
    have any (few do)."""
    if segment and segment[-1] in LINE_PADDING and ONLY_PADDING.match(text, end):
        return segment.rstrip(LINE_PADDING)
    return segment


@dataclass(frozen=True)
class DecodedMessage:
    """A message as text: ``text`` has CR segment separators and no BOM.

    ``charset`` is the Python codec that produced ``text``; ``declared`` is MSH-18 as
    sent (``None`` when absent); ``replaced`` counts undecodable bytes turned into U+FFFD.
    """

    text: str
    charset: str
    declared: str | None
    replaced: int = 0


@functools.lru_cache(maxsize=256)  # called for every message with a handful of names
def charset_codec(name: str) -> str | None:
    """The Python codec for an MSH-18 value or charset alias, or None when the name is
    unknown or names a codec that is not a character set for HL7 text (_is_charset)."""
    codec = _CHARSETS.get(_key(name))
    if codec is None:
        try:
            codec = codecs.lookup(name.strip()).name
        except (LookupError, ValueError):
            return None
    return codec if _is_charset(codec) else None


def charset_name(codec: str) -> str | None:
    """The MSH-18 value naming a Python codec (``"UNICODE UTF-8"`` for ``utf-8``,
    ``"8859/1"`` for ``latin_1``), or None for a codec no name here stands for."""
    return _NAMES.get(_codec_name(codec))


def declares(names: tuple[str, ...] | list[str], codec: str) -> bool:
    """Whether MSH-18 values ``names`` declare ``codec``, as decoding reads them: their
    first known name names it, or none is known (an unknown name is not contradicted)."""
    named = _first_known(list(names))
    return named is None or _codec_name(named) == _codec_name(codec)


# The Unicode encoding forms a BOM or the NUL pattern of "MSH" identifies (_strip_bom) and
# HL7 table 0211 names: not ASCII-compatible, but recognised before MSH-18 is read.
_UNICODE_FORMS = frozenset(codecs.lookup(name).name for name in (
    "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"))
# Every ordered pair of the ASCII characters HL7 text is written in (printable, TAB, LF,
# CR): a codec that reads a character differently after another one (an escape such as
# "\u" or "+", a shift such as "~{") shows it here.
_HL7_ASCII = "".join(map(chr, range(0x20, 0x7F))) + "\t\n\r"
_ASCII_PAIRS = "".join(a + b for a in _HL7_ASCII for b in _HL7_ASCII)
_ASCII_PAIR_BYTES = _ASCII_PAIRS.encode("ascii")


@functools.lru_cache(maxsize=256)  # a probe of 19 KB, once per codec
def _is_charset(codec: str) -> bool:
    """Whether a Python codec can carry HL7 text: MSH-18 was read from the raw bytes as
    ASCII, so a declared codec must give every ASCII character its ASCII byte both ways,
    wherever it stands (else the MSH it was read from would mean something else). That
    rules out bytes-to-bytes codecs (hex, base64, zlib, rot13: str.encode refuses them),
    transformations (idna, punycode, unicode_escape, raw_unicode_escape, utf-7), codecs
    that never work (undefined) and EBCDIC, without a list of names to keep up to date.
    The Unicode forms are the exception: a BOM or NULs identify them before MSH-18 is read."""
    if codec in _UNICODE_FORMS:
        return True
    try:
        # Encoding first: unicode_escape fails there without the DeprecationWarning its
        # decoder gives for "\\]".
        return (_ASCII_PAIRS.encode(codec) == _ASCII_PAIR_BYTES
                and _ASCII_PAIR_BYTES.decode(codec) == _ASCII_PAIRS)
    except Exception:  # noqa: BLE001 - a codec that fails on plain ASCII is not a charset
        return False


def decode_message(raw: bytes, default_charset: str = "utf-8", *,
                   normalise: bool = True) -> DecodedMessage:
    """Decode one message payload; see the module docstring for every rule applied.

    ``normalise=False`` leaves the segment separators as sent: enough to read the MSH
    (``read_header`` stops at the first CR or LF) and cheaper on the ACK path, where the
    body is not parsed. Call :func:`normalise_segments` on the text before parsing it.
    """
    finish = normalise_segments if normalise else _as_sent
    default = charset_codec(default_charset) or "utf-8"
    body, bom_codec = _strip_bom(raw)
    if bom_codec is not None:
        # The view holds one byte per character already: no multi-byte reading to check.
        declared, values, alike = _declared_charset(_ascii_view(body, bom_codec), multibyte=False)
        named = None  # unread: one character per byte, every charset reads the view alike
        codec = bom_codec
        candidates = [bom_codec]
    else:
        declared, values, alike = _declared_charset(body)
        named = _first_known(values)
        codec = named or default
        if codec.startswith(("utf_16", "utf-16", "utf_32", "utf-32")):
            codec = "utf-8"  # MSH was readable as ASCII, so this cannot be UTF-16/32
        candidates = list(dict.fromkeys([codec, "utf-8", default]))
    for candidate in candidates:
        try:
            text = body.decode(candidate)
        except (UnicodeError, LookupError):
            continue
        if not alike and _named_at_msh18(text) != named:
            # A codec that decodes every byte but reads MSH otherwise than the reading that
            # chose the charset: a single-byte default takes a Shift_JIS character whose
            # second byte is "|" for a character and a field separator, and every field
            # after it moves, MSH-10 too (module docstring, Fallback).
            continue
        return frozen_instance(DecodedMessage, text=finish(text), charset=_codec_name(candidate),
                               declared=declared, replaced=0)
    # Where every charset reads MSH alike the marks are only counted, so U+FFFD goes in at
    # once (one pass less over the text); elsewhere MSH is read again with them.
    mark = "\ufffd" if alike else _MARK
    try:
        text, replaced = _marked(body, codec, mark)
    except (UnicodeError, LookupError):
        # Decoding never raises (a message without an ACK and an audit row is lost):
        # should a codec fail even with replacements, UTF-8 with them cannot.
        codec = "utf-8"
        text, replaced = _marked(body, codec, mark)
    else:
        if not alike and _named_at_msh18(text) != named:
            # Even read with replacements, the charset takes a stray lead byte and the
            # separator after it for one character and moves MSH's fields (MSH-10 too).
            # MSH is then read as its bytes read (UTF-8 with replacements keeps every
            # ASCII byte itself), the rest in the charset; a CR or LF byte is never the
            # second byte of a double-byte character, so MSH ends at the first one.
            end = min((i for i in (body.find(b"\r"), body.find(b"\n")) if i >= 0),
                      default=len(body))
            (head, head_replaced), (rest, rest_replaced) = (
                _marked(body[:end], "utf-8", mark), _marked(body[end:], codec, mark))
            text, replaced = head + rest, head_replaced + rest_replaced
    if mark != "\ufffd":
        text = text.replace(_MARK, "\ufffd")
    return frozen_instance(DecodedMessage, text=finish(text), charset=_codec_name(codec),
                           declared=declared, replaced=replaced)


# Undecodable bytes marked by the Python error handler one at a time: beyond this many,
# and beyond one per _BAD_BYTES_SPREAD bytes of the frame, a frame is read again by
# _marked_in_bulk, whose cost does not grow with their number (bench/mapping.py). The
# handler costs about 0.2 us a call; what it marked before giving up costs at most a
# few milliseconds more.
_FEW_BAD_BYTES = 64
_BAD_BYTES_SPREAD = 1024


class _ManyBadBytes(Exception):
    """Raised out of a decode by the marking handler past its limit of errors."""


# How many errors the running _marked call has marked, and how many it marks one by one.
_marking = threading.local()


def _count_marks(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _marking.errors += 1
    if _marking.errors > _marking.limit:
        raise _ManyBadBytes
    _marking.marked += exc.end - exc.start
    return _marking.mark * (exc.end - exc.start), exc.end


codecs.register_error("ri-gateway-mark-few", _count_marks)


def _marked(data: bytes, codec: str, mark: str = _MARK) -> tuple[str, int]:
    """``data`` decoded in ``codec`` with one ``mark`` per undecodable byte, and how many
    bytes were undecodable.

    The error handler is Python code called once per undecodable byte (a byte invalid
    in UTF-8 is one error of its own): 15 MB of them took 3 s on the listener's thread.
    So the handler marks the first few (most frames with bad bytes have a handful, and
    then cost one plain decode), and a frame with many more is decoded again in bulk.
    """
    _marking.errors = _marking.marked = 0
    _marking.mark = mark
    _marking.limit = max(_FEW_BAD_BYTES, len(data) // _BAD_BYTES_SPREAD)
    try:
        text = data.decode(codec, errors="ri-gateway-mark-few")
    except _ManyBadBytes:
        return _marked_in_bulk(data, codec, mark)
    return text, _marking.marked


def _marked_in_bulk(data: bytes, codec: str, mark: str) -> tuple[str, int]:
    """What :func:`_marked` gives, in passes that each run in C over a piece of
    _BULK_PIECE bytes.

    ``surrogateescape`` turns each undecodable byte into one surrogate (U+DC80-U+DCFF;
    strict decoders never produce one) without Python code where CPython decodes the
    codec itself (UTF-8, ASCII); the incremental decoder reads a character split between
    two pieces as a whole decoder would. Pieces keep each C call short: decode_message
    runs on a thread for large frames (gateway.receiver), and a thread in one long C call
    keeps the reactor from running. Other codecs, and an error holding a byte below 0x80
    (which ``surrogateescape`` refuses: possible in UTF-16 and double-byte codecs, never in
    UTF-8 or ASCII), are marked by the handler one error at a time.
    """
    if _codec_name(codec) not in _DECODED_IN_C:
        # Elsewhere surrogateescape is called per error from C as well: hardly faster, and
        # one long C call, where the Python handler lets other threads run in between.
        return _marked_one_by_one(data, codec, mark)
    decoder = codecs.getincrementaldecoder(codec)(errors="surrogateescape")
    pieces = []
    count = 0
    for start in range(0, len(data), _BULK_PIECE):
        end = start + _BULK_PIECE
        piece = _escapes_marked(decoder.decode(data[start:end], final=end >= len(data)), mark)
        if piece is None:
            return _marked_one_by_one(data, codec, mark)
        pieces.append(piece[0])
        count += piece[1]
    return "".join(pieces), count


def _marked_one_by_one(data: bytes, codec: str, mark: str) -> tuple[str, int]:
    text = data.decode(codec, errors="ri-gateway-mark")
    return (text if mark == _MARK else text.replace(_MARK, mark)), text.count(_MARK)


def _escapes_marked(text: str, mark: str) -> tuple[str, int] | None:
    """``text`` with each surrogate of surrogateescape turned into ``mark``, and how many;
    None when the text holds every parking character (hardly ever: then the caller marks
    another way).

    Encoding the text as UTF-8 with ``replace`` turns each of those surrogates into
    ``?``; a ``?`` of the text itself is parked meanwhile on a character the text does not
    hold, so that each ``?`` left marks a bad byte.
    """
    if "?" not in text:
        encoded = text.encode("utf-8", "replace")
        return encoded.decode("utf-8").replace("?", mark), encoded.count(b"?")
    park = next((c for c in _PARKING if c not in text), None)
    if park is None:
        return None
    encoded = text.replace("?", park).encode("utf-8", "replace")
    return encoded.decode("utf-8").replace("?", mark).replace(park, "?"), encoded.count(b"?")


_BULK_PIECE = 1 << 20

# The codecs CPython decodes with surrogateescape in its own loop, without an error
# handler call per bad byte (Latin-1 has no bad byte).
_DECODED_IN_C = frozenset({"utf-8", "ascii"})

# Characters to park a text's own "?" on while the bad bytes are "?": private-use
# characters, which HL7 text hardly ever holds.
_PARKING = tuple(map(chr, range(0xE000, 0xE010)))


@functools.lru_cache(maxsize=64)  # a handful of codecs, named for every message
def _codec_name(codec: str) -> str:
    return codecs.lookup(codec).name


def _as_sent(text: str) -> str:
    return text


def _strip_bom(raw: bytes) -> tuple[bytes, str | None]:
    if raw.startswith(b"MSH"):
        return raw, None  # nearly every message: no BOM, and not UTF-16 (no NUL after M)
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8):], "utf-8"
    if raw.startswith(codecs.BOM_UTF16_LE):
        return raw[2:], "utf-16-le"
    if raw.startswith(codecs.BOM_UTF16_BE):
        return raw[2:], "utf-16-be"
    if _UTF16_LE_MSH.match(raw):
        return raw, "utf-16-le"
    if _UTF16_BE_MSH.match(raw):
        return raw, "utf-16-be"
    return raw, None


# "MSH" in UTF-16 without a BOM, after padding (module docstring) read two bytes at a time:
# stripping single bytes misaligns it (little-endian "\r\x00M\x00S\x00H\x00" without its CR
# looks big-endian, and a CRLF or NUL before it hid it).
_UTF16_LE_MSH = re.compile(rb"(?:[\r\n\t \x00]\x00)*M\x00S\x00H\x00")
_UTF16_BE_MSH = re.compile(rb"(?:\x00[\r\n\t \x00])*\x00M\x00S\x00H")


def _ascii_view(body: bytes, codec: str) -> bytes:
    """The first KB of a UTF-16 body as latin-1 bytes, to find MSH-18 in it."""
    try:
        return body[:2048].decode(codec, errors="ignore").encode("latin-1", errors="replace")
    except LookupError:
        return b""


def _first_known(values: list[str]) -> str | None:
    for value in values:
        codec = charset_codec(value)
        if codec is not None:
            return codec
    return None


def _declared_charset(body: bytes, *,
                      multibyte: bool = True) -> tuple[str | None, list[str], bool]:
    """MSH-18 as sent and its repetitions, read from raw bytes as latin-1, then checked in
    the charset they name when a byte may be part of a multi-byte character (module
    docstring); and whether every charset reads MSH-18 alike (an MSH without one, or in
    printable ASCII). ``multibyte=False``: ``body`` has one byte per character."""
    segment = _msh_segment(body)
    if segment is None:
        return None, [], True
    fs = segment[3]
    # The byte reading sees every separator any charset's reading sees (and maybe second
    # bytes as more): fewer than 17 here means no MSH-18 in any reading.
    if segment.count(fs) < 17:
        return None, [], True  # no MSH-18 (most messages): not worth splitting the segment
    fields = segment.split(fs)
    # fields[0] = "MSH", fields[1] = MSH-2, so MSH-n is fields[n - 1].
    rep = _repetition(fields[1])
    # In printable ASCII every byte stands for itself in every charset. Outside it a byte
    # may start a multi-byte character, whose second byte can then look like a delimiter,
    # or shift ISO-2022 (ESC, SO) to two bytes per character.
    if not multibyte or (segment.isascii() and segment.isprintable()):
        return (*_msh18_values(fields[17], rep), True)
    consistent = _consistent_msh18(segment, fields[17:], fs, rep)
    return (*(consistent or _msh18_values(fields[17], rep)), False)


def _repetition(encoding: str) -> str:
    """The repetition separator of MSH-2 (``~`` when MSH-2 has none)."""
    return encoding[1] if len(encoding) > 1 else "~"


def _msh18_values(value: str, rep: str) -> tuple[str | None, list[str]]:
    """MSH-18 as sent (None when blank) and its non-blank repetitions."""
    if not value.strip():
        return None, []
    return value, [v.strip() for v in value.split(rep) if v.strip()]


def _msh18_of(text: str) -> tuple[str | None, list[str]]:
    """MSH-18 and its repetitions as ``text``, a decoded message, has them."""
    segment = _msh_line(text, whole=True)
    if segment is None or segment.count(segment[3]) < 17:
        return None, []
    fields = segment.split(segment[3])
    return _msh18_values(fields[17], _repetition(fields[1]))


def _named_at_msh18(text: str) -> str | None:
    """The codec ``text``, a decoded message, names at MSH-18 (its first known value)."""
    return _first_known(_msh18_of(text)[1])


def _consistent_msh18(segment: str, candidates: list[str], fs: str,
                      rep: str) -> tuple[str | None, list[str]] | None:
    """MSH-18 of the first consistent reading of ``segment`` (the MSH as latin-1), or None.

    ``candidates`` are the fields of the byte reading from its MSH-18 on: the true MSH-18 is
    one of them, or, should a multi-byte character in it hold a separator byte, is split
    across them. Each value naming a charset is tried in field order; the reading is
    consistent when the MSH decoded in that charset names the same charset at MSH-18.
    """
    raw = segment.encode("latin-1")  # the bytes again: latin-1 maps each byte to itself
    tried: set[str] = set()
    for field in candidates:
        for value in field.split(rep):
            codec = charset_codec(value) if value.strip() else None
            if codec is None or _codec_name(codec) in tried:
                continue
            tried.add(_codec_name(codec))
            try:
                # Replacements: a stray byte elsewhere in MSH does not move MSH-18.
                fields = raw.decode(codec, errors="replace").split(fs)
            except (UnicodeError, LookupError):
                continue
            if len(fields) < 18:
                continue
            declared, values = _msh18_values(fields[17], rep)
            named = _first_known(values)
            if named is not None and _codec_name(named) == _codec_name(codec):
                return declared, values
    return None


def _msh_segment(body: bytes) -> str | None:
    """The first MSH segment in the first 64 KB of ``body`` as latin-1 text, without the
    padding after it when it is the last segment, or None without one that has at least a
    field separator."""
    head = body[:65536]
    if head.startswith(b"MSH"):  # the common case: decode the MSH line only
        end = head.find(b"\r")
        end = len(head) if end < 0 else end
        lf = head.find(b"\n", 0, end)
        end = end if lf < 0 else lf
        segment = head[:end].decode("latin-1")
        # As normalise_segments and read_header read it, what trails the last segment pads
        # the message. Only a segment ending in such a character can have any (few do).
        if segment[-1] in LINE_PADDING and _ONLY_PADDING_BYTES.match(body, end):
            segment = segment.rstrip(LINE_PADDING)
        return segment if len(segment) >= 4 else None  # "MSH" alone: nothing to read
    return _msh_line(head.decode("latin-1"), whole=len(head) == len(body))


def _msh_line(text: str, *, whole: bool) -> str | None:
    """The first MSH segment of ``text`` as _msh_segment reads it; ``whole``: ``text`` is
    the whole message, so padding at its end is padding."""
    start = _find_msh(text)
    if start < 0:
        return None
    end_match = _SEGMENT_END.search(text, start)
    end = end_match.start() if end_match else len(text)
    segment = text[start:end]  # starts with "MSH"
    if whole:
        segment = without_trailing_padding(segment, text, end)
    return segment if len(segment) >= 4 else None


def _find_msh(text: str) -> int:
    """Offset of the first MSH segment (at the start, after padding, or after a segment
    break), or -1."""
    if text.startswith("MSH"):
        return 0
    padding = LEADING_PADDING.match(text)  # always a match, perhaps empty
    skipped = padding.end() if padding else 0
    if text.startswith("MSH", skipped):
        return skipped
    match = MSH_AFTER_BREAK.search(text)
    return match.start() + 1 if match else -1


def normalise_segments(text: str, field_separator: str | None = None) -> str:
    """Rejoin a message so segments are separated by CR only (rules in the module docstring)."""
    text = text.strip(PADDING)
    if field_separator is None:
        msh = _find_msh(text)
        field_separator = text[msh + 3] if msh >= 0 and len(text) > msh + 3 else "|"
    if field_separator not in ("\r", "\n") and "\n" not in text and \
            _stray_break(field_separator).search(text) is None:
        return text  # CR only, and every CR starts a segment: nothing to rejoin
    return _rejoin(text, field_separator)


@functools.lru_cache(maxsize=16)
def _stray_break(field_separator: str) -> re.Pattern[str]:
    """A CR that is not followed by what _rejoin takes for the start of a segment (a blank
    line, a continued value): where there is none, _rejoin would give the text back as is."""
    fs = re.escape(field_separator)
    return re.compile(rf"\r(?![A-Z][A-Z0-9]{{1,2}}(?:{fs})|[A-Z][A-Z0-9]{{2}}(?:\r|\Z))")


def _rejoin(text: str, field_separator: str) -> str:
    fs = re.escape(field_separator)
    starts = re.compile(rf"[A-Z][A-Z0-9]{{1,2}}(?:{fs})|[A-Z][A-Z0-9]{{2}}$")
    # Each segment is a list of its lines, joined once at the end: adding every continuation
    # line to the segment's string copied the string each time, so a report of many short
    # lines took quadratic time before the ACK (16 s for 1.6 MB of them).
    segments: list[list[str]] = []
    blank = 0
    for line in _SEGMENT_END.split(text):
        if line[:1] in (" ", "\t") and starts.match(line.lstrip(" \t")):
            line = line.lstrip(" \t")  # an indented segment: a segment, not a continuation
        if starts.match(line) or not segments or (
                line and segments[-1][0][:3] in ("MSH", "BHS", "FHS")):
            if line or segments:
                segments.append([line])
            blank = 0
        elif not line:
            blank += 1
        else:
            segments[-1].append("\n" * (blank + 1) + line)
            blank = 0
    return "\r".join("".join(lines) for lines in segments)
