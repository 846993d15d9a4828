"""decode_message: charsets from MSH-18, defaults, BOMs, segment separators, fallback."""

from __future__ import annotations

import codecs

import pytest

from mappings.decoding import DecodedMessage, charset_codec, decode_message, normalise_segments
from mappings.header import read_header


def msh(charset: str = "", version: str = "2.5") -> str:
    fields = ["MSH", "^~\\&", "RIS", "HOSP", "RI", "GW", "20240101120000", "", "ORU^R01", "C1", "P",
              version, "", "", "", "", "", charset]
    return "|".join(fields)


@pytest.mark.parametrize(("declared", "codec"), [
    ("ASCII", "ascii"),
    ("8859/1", "iso8859-1"),
    ("8859/2", "iso8859-2"),
    ("8859/5", "iso8859-5"),
    ("8859/7", "iso8859-7"),
    ("8859/9", "iso8859-9"),
    ("8859/15", "iso8859-15"),
    ("UNICODE UTF-8", "utf-8"),
    ("UNICODE", "utf-8"),
    ("ISO_IR 100", "iso8859-1"),
    ("ISO-IR-100", "iso8859-1"),
    ("ISO_IR 192", "utf-8"),
    ("ISO_IR 144", "iso8859-5"),
    ("UTF-8", "utf-8"),
    ("utf8", "utf-8"),
    ("Windows-1252", "cp1252"),
    ("CP1252", "cp1252"),
    ("ISO-8859-1", "iso8859-1"),
    ("iso8859-15", "iso8859-15"),
])
def test_charset_names(declared: str, codec: str) -> None:
    assert codecs.lookup(charset_codec(declared) or "").name == codec


def test_unknown_charset_name() -> None:
    assert charset_codec("code1") is None


# Python codecs that are not character sets HL7 text can be carried in: bytes-to-bytes
# codecs, transformations of text, a codec that always fails, EBCDIC (ASCII letters on
# other bytes), a 7-bit encoding where "~" shifts, and one where "\\" is a yen sign.
NOT_CHARSETS = ["hex", "rot13", "base64", "zlib", "bz2", "quopri", "uu", "idna", "punycode",
                "undefined", "unicode_escape", "raw_unicode_escape", "utf-7", "cp500", "hz",
                "shift_jis_2004"]


@pytest.mark.parametrize("name", NOT_CHARSETS)
def test_codec_that_is_not_a_charset_is_no_charset_name(name: str) -> None:
    assert codecs.lookup(name)  # Python knows it...
    assert charset_codec(name) is None  # ...but it cannot be what MSH-18 means


@pytest.mark.parametrize("name", ["koi8-r", "mac_roman", "cp437", "iso2022_jp", "EUC-JP", "utf_16_le",
                                  "UTF-32-BE", "utf-8-sig"])
def test_other_python_charsets_are_accepted(name: str) -> None:
    codec = charset_codec(name)
    assert codec is not None and "MSH|^~\\&|".encode(codec)


@pytest.mark.parametrize("declared", NOT_CHARSETS)
def test_msh18_naming_a_codec_that_is_not_a_charset_falls_back_to_default(declared: str) -> None:
    message = msh(declared) + "\rPID|||1||Müller"
    assert decode_message(message.encode("latin-1"), default_charset="8859/1") == \
        DecodedMessage(message, "iso8859-1", declared, 0)
    # Not decodable in the default either: replaced and counted, as with an empty MSH-18.
    raw = (msh(declared) + "\rPID|||1||M").encode() + b"\xe9ller"
    assert decode_message(raw) == DecodedMessage(msh(declared) + "\rPID|||1||M\ufffdller", "utf-8",
                                                 declared, 1)


@pytest.mark.parametrize("default", NOT_CHARSETS)
def test_default_that_is_not_a_charset_is_utf8(default: str) -> None:
    raw = (msh() + "\rPID|||1||M").encode() + b"\xe9ller"
    assert (decode_message(raw, default).charset, decode_message(raw, default).replaced) == ("utf-8", 1)


def _python_codec_names() -> list[str]:
    import encodings
    import pkgutil
    from encodings.aliases import aliases

    names = {m.name for m in pkgutil.iter_modules(encodings.__path__)} | set(aliases) | set(aliases.values())
    return sorted(names - {"aliases"})


@pytest.mark.parametrize("body", [b"", b"\xe9", b"\\u00e9+AOk-~{", bytes(range(256))])
def test_never_raises_whatever_msh18_and_the_charset_it_reports_encodes(body: bytes) -> None:
    from mappings.ack import encode_message

    for name in _python_codec_names():
        raw = (msh(name) + "\rPID|||1||M").encode() + body
        for default in ("utf-8", name):
            decoded = decode_message(raw, default)
            # The ACK is encoded in the charset reported: it has to be one that encodes.
            assert charset_codec(decoded.charset) is not None, (name, default, decoded.charset)
            assert encode_message("MSA|AA|\u00e9\u20ac\U0001f600", decoded.charset), (name, decoded.charset)


@pytest.mark.parametrize(("declared", "text", "codec"), [
    ("8859/1", "Müller", "iso8859-1"),
    ("8859/15", "price 5€", "iso8859-15"),
    ("UNICODE UTF-8", "Gisela Straße ✓", "utf-8"),
    ("Windows-1252", "“quoted”", "cp1252"),
    ("8859/5", "Иванов", "iso8859-5"),
    ("8859/7", "Παπαδόπουλος", "iso8859-7"),
])
def test_declared_charset_decodes(declared: str, text: str, codec: str) -> None:
    message = msh(declared) + "\rPID|||1||" + text
    raw = message.encode(codec)
    assert decode_message(raw) == DecodedMessage(message, codec, declared, 0)


def test_repeating_msh18_uses_first_known_value() -> None:
    message = msh("code1~8859/1~UNICODE UTF-8") + "\rPID|||1||Müller"
    decoded = decode_message(message.encode("latin-1"))
    assert (decoded.charset, decoded.declared, decoded.text) == ("iso8859-1", "code1~8859/1~UNICODE UTF-8", message)


def test_unknown_msh18_falls_back_to_default() -> None:
    message = msh("code1~code2") + "\rPID|||1||Müller"
    assert decode_message(message.encode("latin-1"), default_charset="latin-1").charset == "iso8859-1"
    assert decode_message(message.encode("utf-8")).charset == "utf-8"


def test_no_msh18_uses_configured_default() -> None:
    message = msh() + "\rPID|||1||Müller"
    assert decode_message(message.encode("cp1252"), default_charset="windows-1252") == \
        DecodedMessage(message, "cp1252", None, 0)
    assert decode_message(message.encode("utf-8"), default_charset="utf-8") == \
        DecodedMessage(message, "utf-8", None, 0)


def test_declared_ascii_but_utf8_bytes_decodes_as_utf8() -> None:
    message = msh("ASCII") + "\rPID|||1||Müller"
    assert decode_message(message.encode("utf-8")) == DecodedMessage(message, "utf-8", "ASCII", 0)


def test_undecodable_bytes_are_replaced_and_counted() -> None:
    raw = (msh("ASCII") + "\rPID|||1||M").encode() + b"\xfc\xff" + b"ller"
    decoded = decode_message(raw)
    assert decoded.text == msh("ASCII") + "\rPID|||1||M\ufffd\ufffdller"
    assert (decoded.charset, decoded.replaced) == ("ascii", 2)


def test_declared_utf16_on_ascii_readable_message_is_read_as_utf8() -> None:
    message = msh("UNICODE UTF-16") + "\rPID|||1||Zoë"
    assert decode_message(message.encode("utf-8")).charset == "utf-8"


@pytest.mark.parametrize(("bom", "codec"), [
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
])
def test_bom_is_stripped_and_wins(bom: bytes, codec: str) -> None:
    message = msh("8859/1") + "\rPID|||1||Zoë"
    decoded = decode_message(bom + message.encode(codec))
    assert (decoded.text, decoded.charset, decoded.declared) == (message, codecs.lookup(codec).name, "8859/1")


def test_utf16_without_bom_is_recognised() -> None:
    message = msh() + "\rPID|||1||Zoë"
    assert decode_message(message.encode("utf-16-le")).text == message


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_segment_separators_become_cr(separator: str) -> None:
    segments = [msh(), "PID|||1", "OBR|1", "OBX|1|TX|||text"]
    raw = (separator.join(segments) + separator).encode()
    assert decode_message(raw).text == "\r".join(segments)


def test_line_break_inside_a_value_continues_the_segment() -> None:
    raw = "\r".join([msh(), "OBX|1|ED|||^Application^PDF^Base64^JVBERi0x", "LjMNCg==||||||F", "OBX|2|TX|||x"])
    assert decode_message(raw.encode()).text.split("\r") == [
        msh(), "OBX|1|ED|||^Application^PDF^Base64^JVBERi0x\nLjMNCg==||||||F", "OBX|2|TX|||x"]


def test_blank_lines_between_segments_dropped_inside_values_kept() -> None:
    text = "\r\n".join([msh(), "", "NTE|1||first line", "", "third line", "", "OBX|1|TX|||x", "", ""])
    assert normalise_segments(text).split("\r") == [msh(), "NTE|1||first line\n\nthird line", "OBX|1|TX|||x"]


@pytest.mark.parametrize("indent", [" ", "  ", "\t", " \t"])
def test_an_indented_segment_is_a_segment(indent: str) -> None:
    text = "\r".join([msh(), "OBR|1", "OBX|1|TX|||first", f"{indent}OBR|2", f"{indent}OBX|1|TX|||second",
                      f"{indent}not a segment"])
    assert normalise_segments(text).split("\r") == [
        msh(), "OBR|1", "OBX|1|TX|||first", "OBR|2", f"OBX|1|TX|||second\n{indent}not a segment"]


def test_truncated_two_letter_segment_id_stays_a_segment() -> None:
    text = "\r".join([msh(), "OBR|1", "BX|1|SN|x"])
    assert normalise_segments(text).split("\r") == [msh(), "OBR|1", "BX|1|SN|x"]


def test_custom_field_separator_is_used_for_segment_starts() -> None:
    text = "MSH#^~\\&#A\rPID#1\rcontinued"
    assert normalise_segments(text) == "MSH#^~\\&#A\rPID#1\ncontinued"


@pytest.mark.parametrize("raw", [b"", b"\x00\x01\x02", b"\xff" * 10, b"MSH", b"MSH|", b"\r\n\r\n",
                                 b"\xef\xbb\xbf", b"\xff\xfe", b"MSH\rPID|1", b" MSH\nPID|1",
                                 b"\r\nMSH\r\nOBX|1"])
def test_never_raises(raw: bytes) -> None:
    assert isinstance(decode_message(raw), DecodedMessage)


def test_header_segment_is_never_continued() -> None:
    text = "\r".join([msh(), "PID\x0b|1||X", "OBR|1"])
    assert normalise_segments(text).split("\r") == [msh(), "PID\x0b|1||X", "OBR|1"]


def _normalise_variants() -> list[str]:
    from pathlib import Path

    corpus = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7"
    texts = [decode_message(p.read_bytes(), normalise=False).text for p in sorted(corpus.glob("*.hl7"))]
    base = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rPID|1||X\rOBR|1\rOBX|1|TX|||text"
    texts += [base, base + "\r", "\r\n" + base, base.replace("\r", "\r\n"), base.replace("\r", "\n"),
              base.replace("\rOBR", "\r\rOBR"), base.replace("\rOBX", "\rcontinued line\rOBX"),
              base.replace("\rPID", "\rPI|1"), base.replace("\rOBR|1", "\rOBR"),
              base.replace("\rOBR|1", "\rOB"), base + "\rZZ1", base.replace("|", "#"),
              "MSH\rPID|1", "", "\r\n", "not hl7 at all\rsecond line"]
    return texts


def test_normalise_takes_the_short_way_only_when_it_changes_nothing():
    from mappings.decoding import _find_msh, _rejoin

    for text in _normalise_variants():
        stripped = text.strip("\r\n\t \x00")
        msh = _find_msh(stripped)
        fs = stripped[msh + 3] if msh >= 0 and len(stripped) > msh + 3 else "|"
        assert normalise_segments(text) == _rejoin(stripped, fs), repr(text[:60])


# --- multi-byte characters whose second byte looks like a delimiter ---------------------------

# In Shift_JIS, GBK/GB18030 and Big5 the second byte of a character may be anything in
# 0x40-0x7E: "|", "^", "~" and "\\" among them ("&", 0x26, is below that range).
MULTIBYTE = {"SHIFT_JIS": "shift_jis", "GB18030": "gb18030", "GBK": "gbk", "BIG5": "big5"}


def trail_byte_character(codec: str, delimiter: str) -> str:
    """The first two-byte character of ``codec`` whose second byte is ``delimiter``."""
    for lead in range(0x81, 0xFF):
        try:
            character = bytes([lead, ord(delimiter)]).decode(codec)
        except UnicodeDecodeError:
            continue
        if len(character) == 1:
            return character
    raise LookupError(f"no {codec} character ends in {delimiter!r}")


def test_the_examples_of_the_report_are_such_characters() -> None:
    assert ["倒".encode("shift_jis"), "ポ".encode("shift_jis"), "亅".encode("gb18030"),
            "吜".encode("big5")] == [b"\x93|", b"\x83|", b"\x81|", b"\xca|"]


def msh_fields(charset: str, **values: str) -> list[str]:
    """The fields of msh(charset) (index n - 1 is MSH-n) with ``values`` set by MSH-n name."""
    fields = msh(charset).split("|")
    for name, value in values.items():
        fields[int(name[3:]) - 1] = value
    return fields


@pytest.mark.parametrize("name", MULTIBYTE)
@pytest.mark.parametrize("delimiter", ["|", "^", "~", "\\"])
@pytest.mark.parametrize("field", range(3, 18))
def test_a_trail_byte_that_looks_like_a_delimiter_does_not_move_msh18(
        name: str, delimiter: str, field: int) -> None:
    codec = MULTIBYTE[name]
    character = trail_byte_character(codec, delimiter)
    fields = msh_fields(name)
    fields[field - 1] += character
    message = "|".join(fields) + "\rPID|||1||" + character
    decoded = decode_message(message.encode(codec), default_charset="8859/1")
    assert decoded == DecodedMessage(message, codecs.lookup(codec).name, name, 0)
    header = read_header(decoded.text)
    assert (header.control_id, header.field(field), header.character_sets) == (
        fields[9], fields[field - 1], (name,))


@pytest.mark.parametrize("codec", MULTIBYTE.values())
def test_no_such_character_ends_in_the_default_subcomponent_separator(codec: str) -> None:
    with pytest.raises(LookupError):
        trail_byte_character(codec, "&")  # 0x26: below every second-byte range


@pytest.mark.parametrize("name", MULTIBYTE)
def test_another_field_separator_that_a_second_byte_can_be(name: str) -> None:
    codec = MULTIBYTE[name]
    at = trail_byte_character(codec, "@")
    message = msh(name).replace("|", "@").replace("@RIS@", f"@RIS{at}@") + "\rPID@@@1"
    decoded = decode_message(message.encode(codec))
    assert (decoded.text, decoded.charset, decoded.declared) == (message, codecs.lookup(codec).name, name)


@pytest.mark.parametrize("name", MULTIBYTE)
def test_several_such_characters_and_an_msh17(name: str) -> None:
    codec = MULTIBYTE[name]
    bar, tilde = trail_byte_character(codec, "|"), trail_byte_character(codec, "~")
    fields = msh_fields(name, MSH3=f"R{bar}I{bar}S", MSH4=bar * 3, MSH10="C" + tilde, MSH17="JPN")
    message = "|".join(fields)
    decoded = decode_message(message.encode(codec))
    assert (decoded.text, decoded.charset, decoded.declared) == (message, codecs.lookup(codec).name, name)


@pytest.mark.parametrize("declared", ["code1~SHIFT_JIS", "SHIFT_JIS~UNICODE UTF-8", "ISO IR87"])
def test_a_repeating_msh18_after_such_a_character_uses_its_first_known_value(declared: str) -> None:
    message = "|".join(msh_fields(declared, MSH3="RIS倒", MSH4="ポ")) + "\rPID|||1||倒"
    decoded = decode_message(message.encode("shift_jis"))
    assert (decoded.text, decoded.charset, decoded.declared) == (message, "shift_jis", declared)


@pytest.mark.parametrize(("name", "codec", "character"), [
    ("ISO-2022-JP", "iso2022_jp", "万"),  # ESC $ B, then 4B 7C
    ("ISO-2022-KR", "iso2022_kr", "관"),  # ESC $ ) C, SO, then 30 7C, SI
])
def test_iso2022_where_any_byte_after_a_shift_can_look_like_a_delimiter(
        name: str, codec: str, character: str) -> None:
    assert b"|" in character.encode(codec)
    message = "|".join(msh_fields(name, MSH4=character)) + "\rPID|||1||" + character
    assert decode_message(message.encode(codec)) == DecodedMessage(message, codec, name, 0)


def test_a_charset_named_where_its_own_reading_finds_no_msh18_is_not_used() -> None:
    # In 8859/1 the two bytes 93 7C are a character and a field separator: by its own
    # reading, this MSH has an empty MSH-18 and "8859/1" in MSH-19. The default is used.
    fields = msh_fields("", MSH3="RIS\x93")
    raw = "|".join(fields + ["8859/1"]).encode("latin-1")
    decoded = decode_message(raw, default_charset="cp1252")
    assert (decoded.charset, decoded.declared, decoded.text) == ("cp1252", None, raw.decode("cp1252"))


def test_a_single_byte_charset_reads_bytes_above_ascii_as_before() -> None:
    # 93 7C is a character in Shift_JIS, the default here; in the 8859/1 declared it is a
    # character and the field separator that ends MSH-4.
    message = "|".join(msh_fields("8859/1", MSH4="Hôpital \x93", MSH17="FRA")) + "\rPID|||1||Müller"
    decoded = decode_message(message.encode("latin-1"), default_charset="shift_jis")
    assert decoded == DecodedMessage(message, "iso8859-1", "8859/1", 0)


@pytest.mark.parametrize("default", ["utf-8", "8859/1", "cp1252"])
def test_a_bad_byte_in_such_a_message_is_replaced_instead_of_moving_msh10(default: str) -> None:
    # A single-byte default decodes every byte, but reads 93 7C as a character and a field
    # separator: MSH-10 would be "ORU^R01".
    message = "|".join(msh_fields("SHIFT_JIS", MSH3="RIS倒")) + "\rPID|||1||倒"
    assert decode_message(message.encode("shift_jis") + b"\xff", default) == \
        DecodedMessage(message + "\ufffd", "shift_jis", "SHIFT_JIS", 1)


def test_utf8_naming_shift_jis_is_read_as_utf8_where_shift_jis_would_move_msh10() -> None:
    # Shift_JIS decodes these bytes too, but takes the 92 of UTF-8 "倒" and the "|" after
    # it for one character.
    message = "|".join(msh_fields("SHIFT_JIS", MSH3="RIS倒")) + "\rPID|||1||Müller"
    assert message.encode("utf-8").decode("shift_jis").split("|")[9] != "C1"
    assert decode_message(message.encode("utf-8")) == DecodedMessage(message, "utf-8", "SHIFT_JIS", 0)


# --- padding around a message -----------------------------------------------------------------

@pytest.mark.parametrize(("before", "after"), [
    ("\x00", ""), ("", "\x00"), ("\x00\x00\r\n", "\r\n\x00\x00"), ("\r\n\x00 ", " \x00\t\x00"),
])
@pytest.mark.parametrize("normalise", [True, False])
def test_nul_padding_around_a_message_is_not_part_of_it(before: str, after: str, normalise: bool) -> None:
    from mappings.header import read_header

    message = msh("8859/1")  # MSH is the last segment: the padding after it ends MSH-18
    decoded = decode_message((before + message + after).encode("latin-1"), normalise=normalise)
    assert (decoded.charset, decoded.declared) == ("iso8859-1", "8859/1")
    assert normalise_segments(decoded.text) == message
    assert read_header(decoded.text) == read_header(message)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("before", ["\x00", "\r", "\r\n", "\x00 \r\n"])
def test_utf16_without_bom_is_recognised_after_padding(codec: str, before: str) -> None:
    message = msh() + "\rPID|||1||Zoë"
    decoded = decode_message((before + message + "\x00").encode(codec))
    assert (decoded.text, decoded.charset) == (message, codec)


def test_a_report_of_many_continuation_lines_is_rejoined_whole():
    # Thousands of short lines after OBX-5 (a text report broken by LF, blank lines among
    # them) stay one OBX segment, each line and each blank line in place.
    lines = ["" if n % 7 == 3 else f"line {n}" for n in range(20_000)]
    raw = (b"MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|LINES1|P|2.5\rOBX|1|TX|x||"
           + "\n".join(lines).encode() + b"\rNTE|1||end")
    segments = decode_message(raw, "utf-8", normalise=True).text.split("\r")
    assert [s[:3] for s in segments] == ["MSH", "OBX", "NTE"]
    assert segments[1] == "OBX|1|TX|x||" + "\n".join(lines)


@pytest.mark.parametrize("lead, charset, codec", [
    (b"\x93", b"SHIFT_JIS", "shift_jis"), (b"\xda", b"GB18030", "gb18030"),
    (b"\xdb", b"BIG5-HKSCS", "big5hkscs"),
])
@pytest.mark.parametrize("normalise", [True, False])
def test_a_stray_lead_byte_before_a_separator_does_not_move_the_msh_fields(
        lead, charset, codec, normalise):
    # Read in the declared charset, the stray byte and the "|" after it make one character,
    # and every MSH field after it moves (MSH-10 read from MSH-11): MSH keeps its byte
    # reading, with one replacement, and the rest is still read in the charset.
    body = "倒 report".encode(codec)
    raw = (b"MSH|^~\\&|A|F|R|RF" + lead + b"|20240101||ORU^R01|CTRL1|P|2.5||||||" + charset
           + b"\rPID|||M1\rOBX|1|TX|x||" + body)
    decoded = decode_message(raw, normalise=normalise)
    header = read_header(decoded.text)
    assert (header.control_id, header.message_code, header.version) == ("CTRL1", "ORU^R01", "2.5")
    assert (decoded.charset, decoded.replaced) == (codec, 1)
    assert decoded.text.endswith("OBX|1|TX|x||倒 report")


def _one_replacement_per_byte(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error("test-one-replacement-per-byte", _one_replacement_per_byte)

_BAD_UTF8 = [b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf"]


@pytest.mark.parametrize("bad_every", [1, 2, 7, 1000])
@pytest.mark.parametrize("tail", ["", "? who?", "".join(map(chr, range(0xE000, 0xE010))) + "?"])
def test_many_undecodable_bytes_are_replaced_one_per_byte_as_few_are(bad_every: int,
                                                                      tail: str) -> None:
    # Beyond a few bad bytes the text is marked in bulk, in pieces of a megabyte: the
    # result must be the documented one (one U+FFFD per undecodable byte, counted), with
    # the sender's own "?" and U+FFFD kept, and characters split across pieces read whole.
    good = "é€😀?\ufffd a".encode()
    body = bytearray()
    n = 0
    while len(body) < (1 << 20) + 5000:
        body += good
        if n % bad_every == 0:
            body += _BAD_UTF8[n % len(_BAD_UTF8)]
        n += 1
    raw = (msh("UNICODE UTF-8") + "\rOBX|1|TX|||").encode() + bytes(body) + tail.encode()
    expected = raw.decode("utf-8", "test-one-replacement-per-byte")
    bad = len(raw) - len(raw.decode("utf-8", "ignore").encode())
    decoded = decode_message(raw)
    assert (decoded.text, decoded.charset, decoded.replaced) == (expected, "utf-8", bad)
    assert bad > 64


@pytest.mark.parametrize(("codec", "declared", "bad"), [
    ("ascii", "ASCII", b"\x80\xff"), ("shift_jis", "SHIFT_JIS", b"\xff\x85\x40\x81"),
    ("cp1252", "WINDOWS-1252", b"\x81\x8d"), ("utf-16-le", None, b"\x00\xdc\x41"),
])
def test_many_undecodable_bytes_in_other_codecs(codec: str, declared: str | None,
                                                bad: bytes) -> None:
    text = msh(declared or "") + "\rOBX|1|TX|||"
    if declared is None:  # UTF-16 from its BOM
        raw = codecs.BOM_UTF16_LE + text.encode(codec) + bad * 200 + "end".encode(codec)
        body = raw[2:]
    else:
        raw = body = text.encode(codec) + bad * 200 + b"end"
    decoded = decode_message(raw)
    expected = body.decode(codec, "test-one-replacement-per-byte")
    assert (decoded.text, decoded.charset) == (expected, codecs.lookup(codec).name)
    assert decoded.replaced == expected.count("\ufffd") > 64
