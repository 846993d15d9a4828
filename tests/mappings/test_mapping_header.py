"""read_header: MSH read with the sender's delimiters; unreadable headers raise."""

from __future__ import annotations

import pytest

from mappings.decoding import normalise_segments
from mappings.errors import UnreadableHeader
from mappings.header import Delimiters, MessageHeader, read_header

MSH = ("MSH|^~\\&|RIS^1.2.3^ISO|HOSP|RI|GW|20240101120000+0100||ORU^R01^ORU_R01|C1|P^T|2.5.1^DEU|||AL|NE||"
       "8859/1~UNICODE UTF-8")


def test_reads_every_field() -> None:
    header = read_header(MSH + "\rPID|1")
    assert header == MessageHeader(
        field_separator="|", encoding_characters="^~\\&",
        sending_application="RIS^1.2.3^ISO", sending_facility="HOSP",
        receiving_application="RI", receiving_facility="GW",
        message_datetime="20240101120000+0100", message_type="ORU", trigger_event="R01",
        message_structure="ORU_R01", control_id="C1", processing_id="P", version="2.5.1",
        accept_ack_type="AL", application_ack_type="NE",
        character_sets=("8859/1", "UNICODE UTF-8"), raw_msh=MSH, envelope=None,
    )
    assert (header.field(1), header.field(11), header.field(12), header.field(40)) == ("|", "P^T", "2.5.1^DEU", "")
    assert header.message_code == "ORU^R01"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8"])
def test_versions(version: str) -> None:
    header = read_header(f"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|{version}")
    assert header.version == version


def test_trailing_field_separator_and_lf_terminator() -> None:
    header = read_header("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.4|\nPID|1")
    assert (header.version, header.raw_msh) == ("2.4", "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.4|")


@pytest.mark.parametrize(("encoding", "expected"), [
    ("^~\\&", Delimiters("|", "^", "~", "\\", "&", "")),
    ("^~\\}", Delimiters("|", "^", "~", "\\", "}", "")),
    ("^~}", Delimiters("|", "^", "~", "}", "&", "")),
    ("^~\\&#", Delimiters("|", "^", "~", "\\", "&", "#")),
    ("^~&", Delimiters("|", "^", "~", "&", "", "")),
    ("^", Delimiters("|", "^", "~", "\\", "&", "")),
])
def test_custom_encoding_characters(encoding: str, expected: Delimiters) -> None:
    header = read_header(f"MSH|{encoding}|A|B|C|D|20240101||ORU{encoding[0]}R01|X|P|2.4")
    assert (header.encoding_characters, header.delimiters, header.trigger_event) == (encoding, expected, "R01")


def test_custom_field_separator() -> None:
    header = read_header("MSH#^~\\&#A#B#C#D#20240101##ORU^R01#X#P#2.5")
    assert (header.field_separator, header.sending_application, header.control_id) == ("#", "A", "X")


@pytest.mark.parametrize("prefix", ["\ufeff", "  \r\n", "\n"])
def test_leading_bom_and_whitespace_tolerated(prefix: str) -> None:
    assert read_header(prefix + MSH).control_id == "C1"


@pytest.mark.parametrize("envelope", ["FHS", "BHS"])
def test_batch_envelope_reads_first_msh(envelope: str) -> None:
    text = f"{envelope}|^~\\&|X|Y\rBHS|^~\\&|X|Y\r{MSH}\rPID|1\rBTS|1"
    header = read_header(text)
    assert (header.control_id, header.envelope) == ("C1", envelope)


@pytest.mark.parametrize("first_break, later_break", [("\n", "\r"), ("\r\n", "\r"), ("\r", "\n")])
def test_batch_envelope_reads_the_first_msh_whatever_line_breaks_come_before_it(
        first_break: str, later_break: str) -> None:
    # The text as sent ([mllp] map_before_ack = "none") and the normalised text must find
    # the same message: the first MSH, not one further on behind another kind of break.
    second = MSH.replace("|C1|", "|C2|")
    text = f"BHS|^~\\&|X|Y{first_break}{MSH}{first_break}PID|1{later_break}{second}"
    assert read_header(text).control_id == "C1"
    assert read_header(normalise_segments(text)).control_id == "C1"


@pytest.mark.parametrize(("text", "code", "location"), [
    ("", "100", "MSH"),
    ("   ", "100", "MSH"),
    ("PID|1|2", "100", "MSH"),
    ("junk\rMSH|^~\\&|A|B|C|D|1||ORU^R01|X|P|2.5", "100", "MSH"),
    ("BHS|^~\\&|A\rPID|1", "100", "MSH"),
    ("MSH", "102", "MSH-1"),
    ("MSHA^~\\&A", "102", "MSH-1"),
    ("MSH ^~\\& ", "102", "MSH-1"),
    ("MSH|^\ufffd\\&|A|B|C|D|1||ORU^R01|X|P|2.5", "102", "MSH-2"),
    ("MSH|^^\\&|A|B|C|D|1||ORU^R01|X|P|2.5", "102", "MSH-2"),
    ("MSH||A|B", "102", "MSH-2"),
    ("MSH|^~\\&ab|A|B|C|D|1||ORU^R01|X|P|2.5", "102", "MSH-2"),
    ("MSH|^~\\&|A|B|C|D|1||ORU^R01||P|2.5", "101", "MSH-10"),
    ("MSH|^~\\&|A|B|C|D", "101", "MSH-10"),
])
def test_unreadable(text: str, code: str, location: str) -> None:
    with pytest.raises(UnreadableHeader) as info:
        read_header(text)
    assert (info.value.err_code, info.value.location) == (code, location)


@pytest.mark.parametrize("prefix", ["\x00", "\x00\x00\r\n", "\r\n\x00 \ufeff"])
def test_leading_nul_padding_tolerated(prefix: str) -> None:
    assert read_header(prefix + MSH + "\rPID|1").raw_msh == MSH


@pytest.mark.parametrize("suffix", ["\x00", " \x00\t", "\x00\r\n\x00", "\r\x00\x00"])
def test_padding_after_an_msh_that_ends_the_message_is_not_read(suffix: str) -> None:
    # As normalise_segments strips it: the version is not "2.5\x00" (AR 203).
    header = read_header("MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|C5|P|2.5" + suffix)
    assert (header.version, header.raw_msh) == ("2.5", "MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|C5|P|2.5")


def test_a_nul_inside_the_message_is_kept() -> None:
    # Not padding: a segment follows. Both readings of the message see it.
    header = read_header("MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|C5|P|2.5 \x00\rPID|1\x00")
    assert header.raw_msh.endswith("|2.5 \x00")


@pytest.mark.parametrize(("text", "code"), [("\x00", "100"), ("\x00 \r\n\x00", "100"), ("\x00MSH\x00", "102")])
def test_padding_alone_is_no_header(text: str, code: str) -> None:
    with pytest.raises(UnreadableHeader) as info:
        read_header(text)
    assert info.value.err_code == code
