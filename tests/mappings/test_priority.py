"""mappings.priority.urgency: the order priority wherever the HL7 version puts it."""

from __future__ import annotations

import pytest

from mappings.priority import ASAP, OTHER, STAT, urgency

MSH = "MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|C1|P|{version}"
OBR = "OBR|1|P1|F1|71045^XR CHEST^C4"


@pytest.mark.parametrize(("segments", "expected"), [
    # v2.5+: TQ1-9, a CWE.
    ([MSH.format(version="2.5.1"), "ORC|RE|P1|F1", "TQ1|1||||||||S^Stat^HL70078", OBR], STAT),
    ([MSH.format(version="2.5.1"), "TQ1|1||||||||A", OBR], ASAP),
    ([MSH.format(version="2.5.1"), "TQ1|1||||||||R^Routine", OBR], OTHER),
    # Before v2.5: OBR-27 and ORC-7 Quantity/Timing, component 6; and OBR-5.
    ([MSH.format(version="2.3"), OBR + "|||||||||||||||||||||||^^^^^STAT"], STAT),
    ([MSH.format(version="2.3"), "ORC|RE|P1|F1||||^^^20240115^^S", OBR], STAT),
    ([MSH.format(version="2.3"), "OBR|1|P1|F1|71045^XR CHEST^C4|A"], ASAP),
    ([MSH.format(version="2.4"), OBR + "|||||||||||||||||||||||1^^^^^R~1^^^^^A"], ASAP),
    # The most urgent order of the message decides.
    ([MSH.format(version="2.3"), "OBR|1|P1|F1|X|R", "OBR|2|P2|F2|Y|S"], STAT),
    # Nothing said, an unknown code, a code in the wrong place.
    ([MSH.format(version="2.5.1"), OBR], OTHER),
    ([MSH.format(version="2.5.1"), "TQ1|1||||||||PRN", OBR], OTHER),
    ([MSH.format(version="2.5.1"), "OBX|1|ST|X||S", OBR], OTHER),
])
def test_priority_wherever_the_version_puts_it(segments, expected):
    assert urgency("\r".join(segments) + "\r") == expected
    assert urgency("\n".join(segments)) == expected  # line ends as some engines write them


def test_other_delimiters_and_broken_text():
    text = "MSH#$~\\&#RIS#HOSP#####ORU$R01#C1#P#2.3\rOBR#1#P1#F1#X#S\r"
    assert urgency(text) == STAT
    assert urgency("") == OTHER
    assert urgency("PID|1||X") == OTHER
    assert urgency("MSH|^~") == OTHER


def test_tq1_9_repeats():
    text = MSH.format(version="2.5.1") + "\rTQ1|1||||||||R^Routine~S^Stat\r" + OBR + "\r"
    assert urgency(text) == STAT


@pytest.mark.parametrize("text", [
    # As sent, not normalised ([mllp] map_before_ack = "none"): padding before MSH (a
    # line end after the MLLP start byte, a byte order mark), an indented segment.
    "\r\n" + MSH.format(version="2.3") + "\r" + OBR + "|S\r",
    "\ufeff" + MSH.format(version="2.3") + "\n" + OBR + "|S\n",
    "\x00 " + MSH.format(version="2.3") + "\r\n" + OBR + "|S\r\n",
    MSH.format(version="2.3") + "\r  " + OBR + "|S\r",
])
def test_text_as_sent(text):
    assert urgency(text) == STAT
