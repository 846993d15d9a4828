"""The leading-word scan finds exactly what finditer finds."""

from __future__ import annotations

import re

import pytest

from ri_engine.nlp.leading import LeadingScan, leading_scan

PATTERNS = [
    r"\b(?:lacerations?|hematomas?|injur(?:y|ies)|transect\w+)\b",
    r"\bpregnan(?:t|cy)\b(?!\s+test)|\bgestational\s+sac\b|\bhcg\b",
    r"\b(?:low[- ]risk|non-?smoker|never\s+smoked)\b",
    r"\b(?:cirrho\w+|(?:known|history\s+of)\s+[^.]{0,30}cancer|metasta\w+)\b",
    r"(?:ab)+c|abd",       # repeats, overlapping words
    r"(?<!x)aa",           # a word found inside an earlier candidate ("aaa")
]
TEXTS = ["", "laceration", "Liver lacerations and a hematoma; injuries, transected.",
         "xaaa aaa aa", "ababc abd abababc", "pregnancy test negative; pregnant, hcg", "non-smoker, nonsmoker",
         "known lung cancer; history of  colon cancer. metastases", "low-risk lowrisk never  smoked"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_leading_scan_finds_what_finditer_finds(pattern: str) -> None:
    regex = re.compile(pattern)
    scan = leading_scan(regex)
    expected = [[m.span() for m in regex.finditer(text)] for text in TEXTS]
    assert (True, expected) == (isinstance(scan, LeadingScan),
                                [[m.span() for m in scan.finditer(text)] for text in TEXTS])


@pytest.mark.parametrize("pattern", [
    r"\b(?:(?:primary\s+)?lung\s+cancer)\b",  # an optional start: no leading word
    r"\d+\s*mm",
    r"(?i:abc)|def",                           # case-insensitive words
    r"ABC|def",                                # upper case (a twin is lower case)
    r"\bx?",
])
def test_patterns_without_sure_leading_words_are_left_alone(pattern: str) -> None:
    regex = re.compile(pattern)
    assert leading_scan(regex) is regex


def test_case_insensitive_patterns_are_left_alone() -> None:
    regex = re.compile("abc", re.IGNORECASE)
    assert leading_scan(regex) is regex
