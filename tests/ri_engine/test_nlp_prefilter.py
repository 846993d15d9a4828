"""The literal prefilter: what every match must contain, and that it never hides a match."""

from __future__ import annotations

import re

import pytest

from ri_engine.inferences.scoring import _patterns
from ri_engine.nlp.prefilter import (
    Screen, alternatives_of, fold_case, literal_finder, required_literals, screen_of,
)


@pytest.mark.parametrize(("pattern", "flags", "expected"), [
    (r"(?<![\w-])(?:ACR\s+)?BI-?\s?RADS\b", re.IGNORECASE, [{"bi"}, {"rads"}]),
    (r"\bLR-(?P<v>[1-5]|M)\b", re.IGNORECASE, [{"lr-1", "lr-2", "lr-3", "lr-4", "lr-5", "lr-m"}]),
    # Small sets and optional characters continue a literal stretch, spelt every way.
    (r"\bTR-?(?P<v>[1-5])\b", re.IGNORECASE,
     [{"tr1", "tr2", "tr3", "tr4", "tr5", "tr-1", "tr-2", "tr-3", "tr-4", "tr-5"}]),
    (r"(?<![\w-])(?P<name>K-?L)(?![\w])", re.IGNORECASE, [{"kl", "k-l"}]),
    (r"C-?RADS\s+C[0-4x]", re.IGNORECASE, [{"c-rads", "crads"}, {"c0", "c1", "c2", "c3", "c4", "cx"}]),
    (r"ab(?:-?)c", 0, [{"abc", "ab-c"}]),
    (r"ab[^0-9]", 0, [{"ab"}]),
    (r"ab\d", 0, [{"ab"}]),
    (r"ab[a-z]", 0, [{"ab"}]),  # 26 spellings: too many to try one by one
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
    "TR-4", "tr3", "K-L grade 2", "kl 3", "C-RADS C2", "LR-5", "lr-m",
])
def test_scoring_patterns_never_ruled_out_when_they_match(text: str) -> None:
    screen = Screen(text)
    for pattern in _patterns():
        if pattern.regex.search(text):
            assert screen.may_match(pattern.literals), pattern.regex.pattern


def test_screen_holds_literals_of_the_text_folded_as_asked() -> None:
    assert (True, False) == (Screen("Liver LACERATION").holds("lacerat"), Screen("Liver").holds("spleen"))
    # str.lower keeps the dotted capital I as two characters; fold_case makes it "i".
    assert (False, True) == (Screen("\u0130NJURY", str.lower).holds("injur"), Screen("\u0130NJURY").holds("injur"))


@pytest.mark.parametrize(("pattern", "expected"), [
    (r"\b(?:high[- ]risk|smoking\s+history|\d+\s*pack)\b", [[{"high-risk", "high risk"}], [{"smoking"}, {"history"}],
                                                          [{"pack"}]]),
    (r"\bpregnancy\s+of\s+unknown\b|\bPUL\b", [[{"pregnancy"}, {"unknown"}, {"of"}], [{"pul"}]]),
    (r"(?<!\w)(?:(?:a|b)c|d)(?!x)", [[{"c"}], [{"d"}]]),
    (r"\b(?:abc|[a-z]+)", [[{"abc"}], []]),
    (r"abc|def\s+ghi", [[{"abc"}], [{"def"}, {"ghi"}]]),
    (r"x(?:abc|def)", []),  # not one alternation: required_literals alone
])
def test_alternatives_of_an_alternation(pattern: str, expected: list[list[set[str]]]) -> None:
    found = alternatives_of(re.compile(pattern, re.IGNORECASE))
    assert [sorted(map(sorted, needs)) for needs in expected] == \
        [sorted(sorted(options) for options in needs) for needs in found]


@pytest.mark.parametrize(("text", "may_match"), [
    ("History: high blood pressure. Non-smoker.", False),  # each alternative lacks a word
    ("History of smoking, 30 pack-years.", True),
    ("Former smoker with a HIGH-RISK history.", True),
    ("Smoking history unknown.", True),
])
def test_screen_rules_out_an_alternation_by_each_alternative(text: str, may_match: bool) -> None:
    regex = re.compile(r"\b(?:high[- ]risk|smoking\s+history|history\s+of\s+smoking|\d+\s*pack)\b",
                       re.IGNORECASE)
    assert (may_match, may_match) == (Screen(text).may_match_pattern(screen_of(regex)),
                                      bool(regex.search(text)))


def test_screen_gives_the_substring_answer_before_and_after_its_table() -> None:
    text = "Right lower lobe nodule, Lung-RADS 4A. ACR TI-RADS TR3. History of smoking."
    words = ["rads", "cuzick", "tr-4", "tr3", "lung", "zz", "frax", "gail", "smok", "ldct",
             "nodule", "tirads", "ti-rads", "pack", "of", "r", "history"]
    screen = Screen(text)
    assert [w in fold_case(text) for w in words] == [screen.holds(w) for w in words]


@pytest.mark.parametrize("pattern", [
    r"\b(?:nodules?|lesions?|cysts?)\b|\bIPMNs?\b|\bnodul(?:e|ar\s+opacity)\b",
    r"(?<![\w-])(?:criteria|guidelines?|recommended\s+imaging\s+intervals)(?![\w-])",
    r"\b(?:physician's assistant|T\u00f6nnis)\b",
    r"\d+\s*mm",  # no literal text: the finder finds everywhere
])
@pytest.mark.parametrize("text", [
    "", "Nodular opacity.", "NO CYSTS", "ipmn", "Fleischner CRITERIA apply", "Recommended imaging\nintervals",
    "Physician's Assistant Lee", "T\u00d6NNIS 2", "5 mm", "no match here", "\u0130PMN",
])
def test_literal_finder_finds_something_wherever_the_pattern_matches(pattern: str, text: str) -> None:
    regex = re.compile(pattern, re.IGNORECASE)
    finder = literal_finder(regex)
    assert finder.search(fold_case(text)) or not regex.search(text)
    assert (finder.pattern == "") == (not required_literals(regex))
