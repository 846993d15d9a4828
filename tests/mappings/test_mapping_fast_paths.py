"""The shortcuts of the pre-ACK path against the general code they stand in for.

Each test feeds the same tricky inputs (every corpus file, LF and CRLF separators, odd
delimiters, padded segment ids, escapes, missing fields, several OBR groups, NTE-only
reports, batches) to the shortcut and to the general path, and compares whole values.
"""

from __future__ import annotations

import codecs
import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mappings.ack import build_ack, encode_message, format_ts, frameable_ack
from mappings.datatypes import hl7_datetime, is_hl7_datetime
from mappings.decoding import charset_codec, decode_message, normalise_segments
from mappings.errors import HL7Error, UnreadableHeader
from mappings.escapes import escape
from mappings.header import Delimiters, read_header
from mappings.structure import group_segments, locate_groups, split_segments

from oru_builder import obx, oru, segment

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7"
FILES = sorted(CORPUS.glob("*.hl7")) if CORPUS.is_dir() else []

SECOND_GROUP = [segment("ORC", {1: "RE"}), segment("OBR", {1: "2", 7: "20240301113000"}),
                obx(1, "Second report.")]


def tricky_texts() -> dict[str, str]:
    plain = oru()
    texts = {
        "plain": plain,
        "two-groups": oru(extra_groups=[SECOND_GROUP]),
        "group-without-orc": oru(extra_groups=[SECOND_GROUP[1:]]),
        "pid-between-groups": oru(extra_groups=[[segment("PID", {3: "OTHER"}), *SECOND_GROUP]]),
        "nte-only": oru(body=["NTE|1|L|A note on the order."]),
        "no-items": oru(body=[]),
        "no-obr": plain.replace("\rOBR|", "\rZBR|"),
        "no-pid": oru(with_pid=False),
        "obx-before-obr": plain.replace("\rORC|", "\r" + obx(9, "Patient level.") + "\rORC|"),
        "other-segment-inside-group": oru(body=[obx(1, "One."), "SPM|1", obx(2, "Two.")]),
        "escapes": oru(body=[obx(1, "A\\F\\B\\.br\\C\\X0D0A\\D", "FT")]),
        "padded-ids": plain.replace("\rPID|", "\r PID |").replace("\rOBR|", "\rOBR\t|")
                           .replace("\rOBX|", "\r OBX|"),
        "id-without-fields": plain + "\rOBR\rOBX",
        "two-character-id": plain.replace("\rPV1|", "\rBX|"),
        "blank-lines": plain.replace("\rORC|", "\r\r\rORC|") + "\r\r",
        "trailing-whitespace": plain + "  \t\r\n ",
        "leading-whitespace": "\r\n  " + plain,
        "lf-inside-value": oru(body=[obx(1, "Line one\nOBR|not a segment")]),
        "second-message": plain + "\r" + oru(extra_groups=[SECOND_GROUP]),
        "batch-trailer": "BHS|^~\\&|RIS\r" + oru(extra_groups=[SECOND_GROUP]) + "\rBTS|1",
        "hash-field-separator": oru(extra_groups=[SECOND_GROUP]).replace("|", "#"),
        "odd-encoding-characters": plain.replace("MSH|^~\\&|", "MSH|$%*@|", 1),
        "truncation-character": plain.replace("MSH|^~\\&|", "MSH|^~\\&#|", 1),
        "short-encoding-characters": plain.replace("MSH|^~\\&|", "MSH|^~|", 1),
        "one-encoding-character": plain.replace("MSH|^~\\&|", "MSH|^|", 1),
        # Padding some senders put around a frame: normalise_segments strips it.
        "nul-padding": "\x00" + plain + "\x00\x00",
        "nul-and-whitespace-padding": "\x00\r\n " + plain + "\r\n\x00 \x00",
        "nul-padded-msh-alone": "\x00" + plain.split("\r")[0] + "\x00",
        "padded-msh-alone": plain.split("\r")[0] + " \t\r\n",
        # Characters whose second byte in Shift_JIS, GBK or Big5 is "|" (one character each
        # once decoded).
        "multibyte-characters": oru(charset="SHIFT_JIS", facility="倒ポ亅吜").replace("DOE", "倒ポ"),
    }
    for path in FILES:
        texts[f"corpus:{path.name}"] = decode_message(path.read_bytes()).text
        texts[f"corpus-as-sent:{path.name}"] = decode_message(path.read_bytes(), normalise=False).text
    return texts


TEXTS = tricky_texts()


def _has_header(text: str) -> bool:
    try:
        read_header(text)
    except UnreadableHeader:
        return False
    return True


# The comparisons below apply to texts with a readable MSH (the others are answered before
# any group is looked for) and, for the CR-only shortcut, to texts without LF.
WITH_HEADER = sorted(name for name, text in TEXTS.items() if _has_header(text))
CR_ONLY = sorted(name for name, text in TEXTS.items() if "\n" not in text)


def read_groups(text: str) -> tuple[object, object]:
    """(locate_groups, group_segments + split_segments), each as comparable tuples."""
    header = read_header(text)
    located = locate_groups(text, header)
    try:
        general: object = [(g.obr, g.pid, list(g.items), list(g.obx))
                           for g in group_segments(header, split_segments(text, header)).groups]
    except HL7Error as exc:
        general = exc.err_code
    if located is None:
        return None, general
    return [(g.obr, g.pid, list(g.items), list(g.obx)) for g in located], general


@pytest.mark.parametrize("name", WITH_HEADER)
def test_located_groups_are_the_split_groups(name: str) -> None:
    located, general = read_groups(TEXTS[name])
    if located is not None:
        assert general == located


@pytest.mark.parametrize("encoding", ["~", "&", "^&"])
def test_groups_are_not_located_where_python_hl7_must_read(encoding: str) -> None:
    # A missing MSH-2 position whose default is taken: split_segments hands the message
    # to python-hl7.
    text = oru().replace("MSH|^~\\&|", f"MSH|{encoding}|", 1)
    assert locate_groups(text, read_header(text)) is None


def test_most_texts_take_the_shortcut() -> None:
    # So that the comparison above is not vacuous.
    taken = [name for name in WITH_HEADER if read_groups(TEXTS[name])[0] is not None]
    assert len(taken) > len(TEXTS) * 3 // 4


def _header_or_error(text: str) -> object:
    try:
        return read_header(text)
    except UnreadableHeader as exc:
        return exc.err_code, exc.location


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_msh_reads_the_same_as_sent_and_normalised(name: str) -> None:
    # With map_before_ack = "none" the receiver reads MSH from the text as sent; otherwise
    # from the normalised text. Both must answer alike.
    text = TEXTS[name]
    assert _header_or_error(text) == _header_or_error(normalise_segments(text))


@pytest.mark.parametrize("name", CR_ONLY)
def test_cr_only_text_normalises_as_its_crlf_form(name: str) -> None:
    # A text with LF always goes through the rejoining path; the CR-only shortcut must agree.
    text = TEXTS[name]
    assert normalise_segments(text.replace("\r", "\r\n")) == normalise_segments(text)


@pytest.mark.parametrize("text", [
    "", "ACK1", "20240101-0001", "a b\tc", "x|y", "x^y", "x~y", "x\\y", "x&y", "x#y",
    "line\r\nbreak", "bell\x07", "caf\u00e9", "\u2028",
])
@pytest.mark.parametrize("encoding", ["^~\\&", "^~\\&#", "^~"])
def test_escape_shortcut_agrees_with_the_general_path(text: str, encoding: str) -> None:
    # A trailing LF forces the character-by-character path; it comes out as one space.
    d = Delimiters.from_msh("|", encoding)
    assert escape(text + "\n", d)[:-1] == escape(text, d)


@pytest.mark.parametrize("now", [
    datetime(2024, 1, 15, 10, 15, 0),
    datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    datetime(1999, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2024, 6, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(999, 1, 1, 1, 1, 1),
    datetime(1, 1, 1, tzinfo=timezone.utc),
])
def test_format_ts_is_strftime(now: datetime) -> None:
    expected = now.strftime("%Y%m%d%H%M%S") + (now.strftime("%z") if now.tzinfo else "")
    assert expected == format_ts(now)


def datetime_values() -> list[str]:
    values = ["", " ", "2024", "202402", "2024013", "20241301", "20240100", "2024010124",
              "202401012360", "20240101235960", "20240101235959", "20240101235959.1234",
              "20240101235959+0100", "2024010112.5", "2024-01-01", "\u0661\u0669\u0669\u0669",
              "  20240101  ", "202401011", "2024010100000000", "00000101"]
    for year in (1900, 2000, 2023, 2024):
        for month in range(0, 14):
            values += [f"{year}{month:02d}{day:02d}" for day in range(0, 33)]
    values += [f"20240229{hour:02d}{minute:02d}{second:02d}"
               for hour in (0, 23, 24) for minute in (0, 59, 60) for second in (0, 59, 60)]
    return values


def test_is_hl7_datetime_agrees_with_hl7_datetime() -> None:
    values = datetime_values()
    assert [hl7_datetime(v) is not None for v in values] == [is_hl7_datetime(v) for v in values]


# MSH-18 values a sender may choose: known, unknown, repeated, and Python codecs that are
# not character sets (each falls back to the default, as an empty MSH-18 does).
ODD_CHARSETS = ["", "8859/1", "code1~8859/1", "hex", "rot13~8859/1", "idna", "undefined",
                "punycode", "raw_unicode_escape", "utf-7", "cp500", "zlib"]


@pytest.mark.parametrize("declared", ODD_CHARSETS)
@pytest.mark.parametrize("default", ["utf-8", "8859/1"])
def test_msh18_read_from_the_raw_bytes_agrees_with_the_general_paths(declared: str, default: str) -> None:
    raw = (oru(charset=declared) + "\rNTE|1||M\u00fcller").encode("latin-1")
    fast = decode_message(raw, default)
    # Leading blank lines take the BOM check and the MSH search off their shortcuts; the
    # text as sent is what the ACK path reads.
    general = decode_message(b"\r\n " + raw, default)
    as_sent = decode_message(raw, default, normalise=False)
    assert (general.text, general.charset, general.declared, general.replaced) == \
        (fast.text, fast.charset, fast.declared, fast.replaced)
    assert (normalise_segments(as_sent.text), as_sent.charset, as_sent.declared, as_sent.replaced) == \
        (fast.text, fast.charset, fast.declared, fast.replaced)
    # The mapping reads MSH-18 again from the header (mappings.inbound): the same first
    # usable value, else the same default.
    header = read_header(fast.text)
    assert fast.declared == (declared or None)
    assert header.character_sets == tuple(v for v in declared.split("~") if v)
    chosen = next((c for c in map(charset_codec, header.character_sets) if c), charset_codec(default))
    assert codecs.lookup(chosen).name == fast.charset


# Characters whose second byte, read alone, is "|", "^", "~" or "\\" in the charset named,
# in MSH-3, MSH-4 and MSH-10: MSH-18 is checked by decoding MSH in the charset it names. An
# MSH in printable ASCII skips that check; the test above shows that its byte reading is
# the one the decoded header gives, as the check would.
MULTIBYTE_MSH = {
    "SHIFT_JIS": ("shift_jis", "倒", "ポ", "\u2015"),  # 93 7C, 83 7C, 81 5C
    "GB18030": ("gb18030", "亅", "乛", "亊"),  # 81 7C, 81 5E, 81 7E
    "GBK~UNICODE UTF-8": ("gbk", "亅", "乗", "亊"),  # 81 7C, 81 5C, 81 7E
    "code1~BIG5": ("big5", "吜", "\ufe5a", "\ufe4f"),  # CA 7C, A1 7E, A1 5C
}


@pytest.mark.parametrize("declared", MULTIBYTE_MSH)
@pytest.mark.parametrize("padding", [b"", b"\x00"])
@pytest.mark.parametrize("default", ["utf-8", "8859/1"])
def test_msh18_after_multibyte_characters_agrees_with_the_general_paths(
        declared: str, padding: bytes, default: str) -> None:
    codec, *characters = MULTIBYTE_MSH[declared]
    text = oru(charset=declared, facility="".join(characters)).replace("MSG0001", characters[0] * 2)
    raw = padding + text.encode(codec) + padding
    fast = decode_message(raw, default)
    general = decode_message(b"\r\n " + raw, default)
    as_sent = decode_message(raw, default, normalise=False)
    assert (fast.text, fast.charset, fast.declared, fast.replaced) == \
        (text, codecs.lookup(codec).name, declared, 0)
    assert (general.text, general.charset, general.declared, general.replaced) == \
        (fast.text, fast.charset, fast.declared, fast.replaced)
    assert (normalise_segments(as_sent.text), as_sent.charset, as_sent.declared) == \
        (fast.text, fast.charset, fast.declared)
    # The consistent reading: the MSH of the decoded text names the charset it was decoded in.
    header = read_header(as_sent.text)
    assert header == read_header(fast.text)
    assert (header.control_id, header.sending_facility) == (characters[0] * 2, "".join(characters))
    chosen = next(c for c in map(charset_codec, header.character_sets) if c)
    assert codecs.lookup(chosen).name == fast.charset


def test_frozen_instances_are_the_constructed_ones() -> None:
    decoded = decode_message(oru().encode())
    header = read_header(decoded.text)
    (segment_read, *_) = split_segments(decoded.text, header)[1:]
    for built in (decoded, header, segment_read):
        constructed = type(built)(**{f.name: getattr(built, f.name) for f in dataclasses.fields(built)})
        assert (constructed, hash(constructed), repr(constructed)) == (built, hash(built), repr(built))
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.raw = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("text", [
    "MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.5\rMSA|AA|CTRL1", "caf\u00e9 \u2013 \u4e2d\u6587", "tab\there", "",
])
@pytest.mark.parametrize("charset", ["utf-8", "8859/1", "ASCII", "utf-16-le", "utf-16-be", "utf-32-le",
                                     "gb18030", "shift_jis"])
def test_encode_message_shortcut_agrees_with_the_character_path(text: str, charset: str) -> None:
    # A trailing FS forces the character-by-character path; it comes out as one '?'.
    assert encode_message(text + "\x1c", charset) == encode_message(text, charset) + \
        encode_message("?", charset)


@pytest.mark.parametrize("name", WITH_HEADER)
def test_frameable_ack_shortcut_agrees_with_the_re_encoding_path(name: str) -> None:
    # ACKs that frame are returned as they are; a trailing FS forces the decode, escape and
    # re-encode path, which must give the same bytes back before the escaped FS.
    decoded = decode_message(TEXTS[name].encode("utf-8"))
    ack = encode_message(build_ack(read_header(decoded.text), "AA", control_id="A1",
                                   now=datetime(2024, 1, 15, 10, 15, tzinfo=timezone.utc)),
                         decoded.charset)
    assert frameable_ack(ack) is ack
    esc = read_header(decoded.text).delimiters.escape
    assert frameable_ack(ack + b"\x1c") == ack + f"{esc}X1C{esc}".encode()
