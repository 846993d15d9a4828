"""ACKs built from the inbound MSH, per HL7 version; unreadable headers; downstream ACKs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mappings.ack import AckInfo, build_ack, build_unreadable_ack, encode_message, parse_ack
from mappings.errors import ContentError, UnreadableHeader, UnsupportedMessage
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
        "MSH|^~\\&|RCV|FAC|PAM|IHE|20240301123005+0100||ACK^^ACK|A1|P|2.5",
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
    assert parse_ack(ack.encode()) == AckInfo("AE", "MSG1", "no PID", "100")


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
