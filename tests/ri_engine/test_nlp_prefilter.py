"""The literal prefilter: what every match must contain, and that it never hides a match."""

from __future__ import annotations

import re

import pytest

from ri_engine.inferences.scoring import _patterns
from ri_engine.nlp.prefilter import Screen, fold_case, required_literals


@pytest.mark.parametrize(("pattern", "flags", "expected"), [
    (r"(?<![\w-])(?:ACR\s+)?BI-?\s?RADS\b", re.IGNORECASE, [{"bi"}, {"rads"}]),
    (r"\bLR-(?P<v>[1-5]|M)\b", re.IGNORECASE, [{"lr-"}]),
    (r"(?:viable|non-?viable|equivocal)", 0, [{"viable", "equivocal"}]),
    (r"(?:nodule)+ seen", 0, [{"nodule"}, {" seen"}]),
    (r"T(?:o|\u00f6|oe)nnis", re.IGNORECASE, [{"t"}, {"nnis"}]),
    (r"(?:abc)?\d+", 0, []),
    (r"[a-z]+|x", 0, []),
])
def test_required_literals(pattern: str, flags: int, expected: list[set[str]]) -> None:
    found = required_literals(re.compile(pattern, flags))
    assert sorted(map(sorted, expected)) == sorted(sorted(options) for options in found)


def test_fold_case_covers_every_non_ascii_case_variant_re_knows() -> None:
    # Every character re.IGNORECASE equates with an ASCII letter must fold onto it.
    letters = re.compile("[a-z]", re.IGNORECASE)
    twins = [chr(c) for c in range(128, 0x30000)
             if not 0xD800 <= c < 0xE000 and letters.fullmatch(chr(c))]
    assert twins
    for char in twins:
        assert re.fullmatch(re.escape(fold_case(char)), char, re.IGNORECASE)
        assert fold_case(char).isascii()


@pytest.mark.parametrize("text", [
    "BI-RADS 4A", "bi-rads 2", "ACR TI-RADS category TR5", "LR-M", "Kellgren-Lawrence grade 3",
    "T\u00f6nnis 2", "\u212aL grade 2", "BI-RAD\u017f 3", "Agatston score of 120",
])
def test_scoring_patterns_never_ruled_out_when_they_match(text: str) -> None:
    screen = Screen(text)
    for pattern in _patterns():
        if pattern.regex.search(text):
            assert screen.may_match(pattern.literals), pattern.regex.pattern
