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
