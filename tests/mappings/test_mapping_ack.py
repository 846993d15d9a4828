"""ACKs built from the inbound MSH, per HL7 version; unreadable headers; downstream ACKs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from mappings.ack import (
    AckError, AckInfo, build_ack, build_unreadable_ack, encode_message, frameable_ack, parse_ack,
)
from mappings.decoding import charset_codec, decode_message
from mappings.errors import ContentError, UnreadableHeader, UnsupportedMessage
from mappings.escapes import render_text
from mappings.header import read_header

NOW = datetime(2024, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=1)))


def inbound(version: str, encoding: str = "^~\\&", charset: str = "") -> str:
    c = encoding[0]
    msh = f"MSH|{encoding}|RIS|HOSP|RI|GW|20240301123000||ORU{c}R01{c}ORU_R01|MSG1|P|{version}"
    if charset:
        msh += "||||||" + charset
    return msh + "\rPID|||1"


# (version, MSH-9 of the ACK, MSA-3 present, ERR layout)
VERSIONS = [
    ("2.1", "ACK", True, "old"),
    ("2.2", "ACK", True, "old"),
    ("2.3", "ACK^R01", True, "old"),
    ("2.3.1", "ACK^R01^ACK", True, "old"),
    ("2.4", "ACK^R01^ACK", True, "old"),
    ("2.5", "ACK^R01^ACK", True, "new"),
    ("2.5.1", "ACK^R01^ACK", True, "new"),
    ("2.6", "ACK^R01^ACK", True, "new"),
    ("2.7", "ACK^R01^ACK", False, "new"),
    ("2.7.1", "ACK^R01^ACK", False, "new"),
    ("2.8", "ACK^R01^ACK", False, "new"),
]


@pytest.mark.parametrize(("version", "msh9", "has_msa3", "layout"), VERSIONS)
def test_aa_per_version(version: str, msh9: str, has_msa3: bool, layout: str) -> None:
    ack = build_ack(read_header(inbound(version)), "AA", control_id="ACK1", now=NOW)
    assert ack == f"MSH|^~\\&|RI|GW|RIS|HOSP|20240301123005+0100||{msh9}|ACK1|P|{version}\rMSA|AA|MSG1"


@pytest.mark.parametrize(("version", "msh9", "has_msa3", "layout"), VERSIONS)
def test_ae_with_err_per_version(version: str, msh9: str, has_msa3: bool, layout: str) -> None:
    error = ContentError("OBX-5 report text is missing", err_code="101", location="OBX-5")
    ack = build_ack(read_header(inbound(version)), "AE", control_id="ACK1", now=NOW, error=error)
    msa = "MSA|AE|MSG1|OBX-5 report text is missing" if has_msa3 else "MSA|AE|MSG1"
    if layout == "new":
        err = "ERR||OBX^1^5|101^Required field missing^HL70357|E||||OBX-5 report text is missing"
    else:
        err = "ERR|OBX^1^5^101&Required field missing&HL70357"
    assert ack.split("\r") == [f"MSH|^~\\&|RI|GW|RIS|HOSP|20240301123005+0100||{msh9}|ACK1|P|{version}", msa, err]


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.6", "2.7", "2.8"])
def test_ar_segment_missing_location(version: str) -> None:
    error = ContentError("PID segment is missing", err_code="100", location="PID")
    ack = build_ack(read_header(inbound(version)), "AE", control_id="A", now=NOW, error=error)
    err = ack.split("\r")[-1]
    expected = "ERR||PID^1|100^Segment sequence error^HL70357|E||||PID segment is missing" \
        if version >= "2.5" else "ERR|PID^1^^100&Segment sequence error&HL70357"
    assert err == expected


def test_keeps_sender_encoding_characters_and_escapes_text() -> None:
    header = read_header(inbound("2.4", encoding="#~\\}"))
    error = UnsupportedMessage("type A|B^C&D~E\\F } # x", err_code="200", location="MSH-9")
    ack = build_ack(header, "AR", control_id="A", now=NOW, error=error)
    assert ack.split("\r") == [
        "MSH|#~\\}|RI|GW|RIS|HOSP|20240301123005+0100||ACK#R01#ACK|A|P|2.4",
        "MSA|AR|MSG1|type A\\F\\B^C&D\\R\\E\\E\\F \\T\\ \\S\\ x",
        "ERR|MSH#1#9#200}Unsupported message type}HL70357",
    ]


def test_copies_msh18_configured_sender_and_naive_time() -> None:
    header = read_header(inbound("2.5.1", charset="8859/1"))
    ack = build_ack(header, "CA", control_id="A", now=datetime(2024, 3, 1, 12, 0, 0),
                    sending_application="RI-GATEWAY", sending_facility="", text="line1\nline2")
    assert ack.split("\r") == [
        "MSH|^~\\&|RI-GATEWAY||RIS|HOSP|20240301120000||ACK^R01^ACK|A|P|2.5.1||||||8859/1",
        "MSA|CA|MSG1|line1 line2",
    ]


@pytest.mark.parametrize("sent, echoed", [
    ("EUC-KR\x1f", "EUC-KR"), (" 8859/1 ~UNICODE UTF-8\x0c", "8859/1~UNICODE UTF-8"),
])
def test_msh18_is_echoed_as_decoding_reads_it(sent: str, echoed: str) -> None:
    # Decoding strips each name; echoed as sent, a trailing control character came back as
    # an escape ("EUC-KR\X1F\"), a name no reader knows, on an ACK encoded in EUC-KR.
    header = read_header(inbound("2.5.1", charset=sent))
    ack = build_ack(header, "AA", control_id="A", now=NOW)
    msh = ack.split("\r")[0].split("|")
    assert msh[17] == echoed
    assert read_header(ack).character_sets == header.character_sets


def test_oru_without_trigger_gets_default_event() -> None:
    header = read_header("MSH|^~\\&|A|B|C|D|1||ORU|X|T|2.3")
    assert build_ack(header, "AA", control_id="Y", now=NOW).split("\r")[0] == \
        "MSH|^~\\&|C|D|A|B|20240301123005+0100||ACK^R01|Y|T|2.3"


def test_unknown_version_uses_25_layout_and_echoes_msh12() -> None:
    header = read_header(inbound("3.0"))
    error = UnsupportedMessage("version 3.0 is not supported", err_code="203", location="MSH-12")
    assert build_ack(header, "AR", control_id="A", now=NOW, error=error).split("\r") == [
        "MSH|^~\\&|RI|GW|RIS|HOSP|20240301123005+0100||ACK^R01^ACK|A|P|3.0",
        "MSA|AR|MSG1|version 3.0 is not supported",
        "ERR||MSH^1^12|203^Unsupported version id^HL70357|E||||version 3.0 is not supported",
    ]


def test_rejects_unknown_ack_code() -> None:
    with pytest.raises(ValueError):
        build_ack(read_header(inbound("2.5")), "OK", control_id="A", now=NOW)


def _unreadable(text: str) -> UnreadableHeader:
    try:
        read_header(text)
    except UnreadableHeader as exc:
        return exc
    raise AssertionError("header was readable")


def test_unreadable_msh2_salvages_control_id() -> None:
    text = "MSH|^\ufffd\\&|PAM|IHE|RCV|FAC|20111219||ADT^A01^ADT_A01|CTRL9|P|2.5||||||UNICODE UTF-8\rEVN|"
    error = _unreadable(text)
    assert build_unreadable_ack(text, "AR", "A1", NOW, error).split("\r") == [
        "MSH|^~\\&|RCV|FAC|PAM|IHE|20240301123005+0100||ACK^^ACK|A1|P|2.5||||||UNICODE UTF-8",
        "MSA|AR|CTRL9|MSH-2 encoding characters are invalid",
        "ERR||MSH^1^2|102^Data type error^HL70357|E||||MSH-2 encoding characters are invalid",
    ]


@pytest.mark.parametrize("text", [
    None, "", "PID|1|2", "MSH", "MSHA", "MSH|^~\\&|A|B|C|D|1||ORU^R01||P|2.5", "MSH|^~\\&|A",
    "MSH^^~\\&^A^B^C^D^1^^ORU^R01^X^P^2.5",
])
def test_unreadable_without_address_gives_none(text: str | None) -> None:
    error = UnreadableHeader("unreadable")
    assert build_unreadable_ack(text, "AR", "A1", NOW, error) is None


def test_encode_message() -> None:
    assert encode_message("MSA|AA|Müller", "8859/1") == "MSA|AA|Müller".encode("latin-1")
    assert encode_message("MSA|AA|Müller", "ASCII") == b"MSA|AA|M?ller"
    assert encode_message("MSA|AA|✓", "UNICODE UTF-8") == "MSA|AA|✓".encode()
    assert encode_message("x", "utf-8") == b"x"


@pytest.mark.parametrize(("version", "layout"), [("2.4", "old"), ("2.5.1", "new"), ("2.8", "new")])
def test_parse_ack_round_trip(version: str, layout: str) -> None:
    error = ContentError("no PID", err_code="100", location="PID")
    ack = build_ack(read_header(inbound(version)), "AE", control_id="A", now=NOW, error=error)
    severity = "E" if layout == "new" else ""
    assert parse_ack(ack.encode()) == AckInfo("AE", "MSG1", "no PID", "100",
                                              (AckError("100", "PID", severity),))


def test_parse_ack_reads_every_error_with_its_location_and_severity() -> None:
    # v2.5+: one ERR segment per error, the code in ERR-3, the place in ERR-2, ERR-4 E/W.
    ack = ("MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.5.1\rMSA|AE|C1\r"
           "ERR||PID^1^5|101^Required field missing^HL70357|E||||Name DOE^JANE is missing\r"
           "ERR||OBX^2^3~OBX^3^3|103^Table value not found^HL70357|W\r"
           "ERR||ZZZ^^x5|207^^HL70357|F")
    assert parse_ack(ack.encode()) == AckInfo(
        "AE", "C1", "Name DOE^JANE is missing", "101",
        (AckError("101", "PID-5", "E"), AckError("103", "OBX[2]-3", "W"),
         AckError("207", "", "F")))


def test_parse_ack_reads_each_repetition_of_err_1_and_msa_6_before_v2_5() -> None:
    # v2.3/2.4: ERR-1 ELD repeats, the code in its 4th component (CE, subcomponents).
    ack = ("MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.3\rMSA|AR|C2||||207^Application internal error\r"
           "ERR|PID^1^3^101&Required field missing&HL70357~OBR^^4^103&Table value not found")
    assert parse_ack(ack.encode()) == AckInfo(
        "AR", "C2", "Required field missing", "101",
        (AckError("101", "PID-3"), AckError("103", "OBR-4"), AckError("207")))
    # MSA-6 alone, as a v2.2 receiver may answer; the same code in ERR is not counted twice.
    assert parse_ack(b"MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.2\rMSA|AR|C3|no|||200") == AckInfo(
        "AR", "C3", "no", "200", (AckError("200"),))
    assert parse_ack(b"MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.4\rMSA|AE|C4||||102\r"
                     b"ERR|PV1^1^2^102").errors == (AckError("102", "PV1-2"),)


def test_parse_ack_simple_and_errors() -> None:
    assert parse_ack(b"MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.3\rMSA|AA|CTRL1\r") == AckInfo("AA", "CTRL1", None, None)
    assert parse_ack(b"MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.3\rMSA|AR|C2|Bad \\F\\ thing") == \
        AckInfo("AR", "C2", "Bad | thing", None)
    with pytest.raises(ContentError) as info:
        parse_ack(b"MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.3\rPID|1")
    assert (info.value.err_code, info.value.location) == ("100", "MSA")
    with pytest.raises(ContentError):
        parse_ack(b"MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.3\rMSA|OK|C2")
    with pytest.raises(UnreadableHeader):
        parse_ack(b"garbage")


# --- ACKs MLLP can always frame (VT 0x0B and FS 0x1C start and end a frame) ---------------

FRAME_BYTES = (b"\x0b", b"\x1c")
# (MSH-n, where build_ack echoes it: (segment, field number) in the ACK)
ECHOED = [(3, ("MSH", 5)), (4, ("MSH", 6)), (5, ("MSH", 3)), (6, ("MSH", 4)), (10, ("MSA", 2)),
          (11, ("MSH", 11)), (12, ("MSH", 12)), (18, ("MSH", 18))]


def _msh(fields: dict[int, str], fs: str = "|", encoding: str = "^~\\&") -> str:
    values = {3: "RIS", 4: "HOSP", 5: "RI", 6: "GW", 7: "20240301123000", 9: f"ORU{encoding[0]}R01",
              10: "MSG1", 11: "P", 12: "2.5", **fields}
    return fs.join(["MSH", encoding, *(values.get(n, "") for n in range(3, max(values) + 1))])


def _ack_field(ack: str, segment: str, number: int) -> str:
    fields = next(s for s in ack.split("\r") if s.startswith(segment)).split("|")
    return fields[number - 1] if segment == "MSH" else fields[number]


@pytest.mark.parametrize("control", ["\x1c", "\x0b", "\x00", "\x07", "\x1f"])
@pytest.mark.parametrize(("msh_n", "where"), ECHOED)
def test_control_characters_in_echoed_fields_are_hex_escaped(msh_n: int, where: tuple[str, int],
                                                             control: str) -> None:
    value = {12: "2.5", 18: "UNICODE UTF-8"}.get(msh_n, "X1") + control + "Y"
    header = read_header(_msh({msh_n: value}))
    ack = build_ack(header, "AA", control_id="A1", now=NOW)
    encoded = encode_message(ack, "utf-8")
    assert not any(b in encoded for b in FRAME_BYTES)
    echoed = _ack_field(ack, *where)
    assert echoed == value.replace(control, f"\\X{ord(control):02X}\\")
    # Read as HL7, with its escapes resolved, the field is again exactly what was sent: a
    # receiving engine matches MSA-2 against its MSH-10.
    assert render_text(echoed, header.delimiters) == value
    assert len(ack.split("\r")[0].split("|")) == len(header.raw_msh.split("|"))


def test_fuzz_reproducers_give_frameable_acks() -> None:
    for raw, msa2 in [(b"MSH|^~\\&|A\x1cB|F|R|RF|20240101||ORU^R01|T7|P|2.5", "T7"),
                      (b"MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|T8\x1cX|P|2.5", "T8\\X1C\\X")]:
        decoded = decode_message(raw)
        ack = encode_message(build_ack(read_header(decoded.text), "AA", control_id="A1", now=NOW),
                             decoded.charset)
        assert not any(b in ack for b in FRAME_BYTES)
        assert ack.split(b"\r")[1] == f"MSA|AA|{msa2}".encode()


def test_tab_stays_and_control_characters_without_an_escape_character_become_question_marks() -> None:
    assert _ack_field(build_ack(read_header(_msh({3: "A\tB"})), "AA", control_id="A", now=NOW),
                      "MSH", 5) == "A\tB"
    # MSH-2 "\^": the backslash is the component separator, so there is no escape character.
    header = read_header(_msh({3: "A\x1cB", 10: "C\x0bD"}, encoding="\\^"))
    assert header.delimiters.escape == ""
    ack = build_ack(header, "AA", control_id="A", now=NOW)
    assert (_ack_field(ack, "MSH", 5), _ack_field(ack, "MSA", 2)) == ("A?B", "C?D")


def test_unreadable_msh_with_frame_characters_gets_a_frameable_ar() -> None:
    text = "MSH|^\ufffd\\&|PAM\x1c|IHE|RCV\x0b|FAC|20111219||ADT^A01|CT\x1cRL9|P|2.5\rEVN|"
    ack = build_unreadable_ack(text, "AR", "A1", NOW, _unreadable(text))
    assert ack.split("\r")[:2] == [
        "MSH|^~\\&|RCV\\X0B\\|FAC|PAM\\X1C\\|IHE|20240301123005+0100||ACK^^ACK|A1|P|2.5",
        "MSA|AR|CT\\X1C\\RL9|MSH-2 encoding characters are invalid",
    ]
    assert not any(b in encode_message(ack, "utf-8") for b in FRAME_BYTES)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "UNICODE UTF-16", "utf-32"])
def test_characters_encoded_with_frame_bytes_become_question_marks(codec: str) -> None:
    # U+011C is 1C 01 in UTF-16LE, U+010B is 0B 01: harmless characters, unframeable bytes.
    encoded = encode_message("MSA|AA|\u011cX\u010b\u00e9", codec)
    assert not any(b in encoded for b in FRAME_BYTES)
    assert encoded == encode_message("MSA|AA|?X?\u00e9", codec)
    assert encode_message("MSA|AA|\u00e9", codec) == "MSA|AA|\u00e9".encode(charset_codec(codec))


def test_frameable_ack_escapes_acks_stored_by_an_earlier_version() -> None:
    # The bytes the previous build_ack stored for the fuzz reproducer: FS copied from MSH-10.
    stored = b"MSH|^~\\&|R|RF|A|F|20240501120000+0000||ACK^R01^ACK|RIG1|P|2.5\rMSA|AA|T8\x1cX"
    assert frameable_ack(stored) == stored.replace(b"\x1c", b"\\X1C\\")
    latin = "MSH|^~\\&|R|RF|Müller\x0b|F|1||ACK|RIG1|P|2.5||||||8859/1\rMSA|AA|T1".encode("latin-1")
    assert frameable_ack(latin) == latin.replace(b"\x0b", b"\\X0B\\")
    good = encode_message(build_ack(read_header(inbound("2.5")), "AA", control_id="A", now=NOW), "utf-8")
    assert frameable_ack(good) is good
    assert frameable_ack(b"no header\x1c") == b"no header?"


# --- MSH-7 with delimiters that a UTC offset's sign would hit ------------------------------

@pytest.fixture(params=["UTC0", "IST-5:30"])  # POSIX TZ strings: UTC, and UTC+05:30
def local_zone(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_zone")
@pytest.mark.parametrize(("fs", "encoding", "offset"), [
    ("+", "^~\\&", 1), ("|", "+~\\&", 1), ("|", "^~\\&+", 2), ("-", "^~\\&", -5), ("|", "^-\\&", -5),
])
def test_fields_line_up_when_the_offset_sign_is_a_delimiter(fs: str, encoding: str, offset: int) -> None:
    now = datetime(2024, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=offset)))
    text = _msh({}, fs=fs, encoding=encoding) + "\rPID" + fs
    ack_text = build_ack(read_header(text), "AE", control_id="A1", now=now,
                         error=ContentError("no PID", err_code="100", location="PID"))
    ack = read_header(ack_text)
    d = ack.delimiters
    assert (ack.message_code, ack.trigger_event, ack.message_structure) == ("ACK^R01", "R01", "ACK")
    assert (ack.control_id, ack.processing_id, ack.version) == ("A1", "P", "2.5")
    # The gateway's local time without an offset (HL7 reads that as the sender's local time).
    assert ack.message_datetime == now.astimezone().strftime("%Y%m%d%H%M%S")
    msa = ack_text.split("\r")[1].split(fs)
    assert msa[:3] == ["MSA", "AE", "MSG1"] and render_text(msa[3], d) == "no PID"
    assert datetime.strptime(ack.message_datetime, "%Y%m%d%H%M%S").astimezone() == now


def test_the_offset_stays_when_its_sign_is_no_delimiter() -> None:
    now = datetime(2024, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=-5)))
    header = read_header(_msh({}, encoding="^~\\&+"))  # '+' used, '-' is not
    assert read_header(build_ack(header, "AA", control_id="A", now=now)).message_datetime == \
        "20240301123005-0500"


def test_configured_sender_is_escaped_with_the_senders_delimiters() -> None:
    header = read_header(_msh({}, encoding="-~\\&"))
    ack = read_header(build_ack(header, "AA", control_id="A", now=NOW,
                                sending_application="RI-GATEWAY", sending_facility="R&D"))
    assert (ack.sending_application, ack.sending_facility) == ("RI\\S\\GATEWAY", "R\\T\\D")
    assert render_text(ack.sending_application, ack.delimiters) == "RI-GATEWAY"
    assert ack.message_code == "ACK^R01"


def test_unreadable_msh18_with_a_control_character_is_escaped_like_any_echoed_field() -> None:
    text = "MSH|^~^&|RIS|HOSP|RIGW|RAD|20240115||ORU^R01|C7|P|2.5||||||8859/1\x01X\rPID|"
    ack = build_unreadable_ack(text, "AR", "A1", NOW, _unreadable(text), charset="latin-1")
    assert ack.split("\r")[0].split("|")[17] == "8859/1\\X01\\X"
