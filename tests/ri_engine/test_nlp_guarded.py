"""Guard-last search: the same matches as the pattern, wherever the search starts and ends."""

from __future__ import annotations

import re

import pytest

from ri_engine.inferences.scoring import _patterns
from ri_engine.nlp.guarded import GuardedPattern, guarded

TEXTS = [
    "BI-RADS 4. TR4 nodule; TR-5 and str3. K-L grade 2, kl 3 (bkl 4). RMI 200, termi 3.",
    "Cysts: a cyst, precysts, cyst-like, CYST. Cystic. cysts\ncyst",
    "leftward left lt. right-sided bright rt; both bilateral bilaterally.",
    "Hematoma\u0130 lacerations laceration-ish; injury injuries. \u212aL 2",
    "",
    "c",
]

PATTERNS = [
    r"\bcysts?\b",
    r"(?<![\w-])(?P<name>k-?l)(?![\w])\s*(?P<v>\d)",
    r"\btr-?(?P<v>[1-5])\b(?![\w%])(?!\.\d)",
    r"(?<![a-z0-9])(?:l(?:eft|t))(?![a-z0-9])",
    r"(?<![a-z0-9])(?:(?:b(?:ilat(?:eral(?:ly)?)?|oth)|l(?:eft|t)|r(?:ight|t)))(?![a-z0-9])",
    r"\b(?=c)cyst",          # several leading assertions
    r"(?<!s)\bcyst(?:s|ic)?",
]


def _spans(matches) -> list[tuple[tuple[int, int], tuple[str | None, ...]]]:  # type: ignore[no-untyped-def]
    return [(m.span(), m.groups()) for m in matches]


@pytest.mark.parametrize("source", PATTERNS)
def test_guarded_patterns_find_what_the_pattern_finds(source: str) -> None:
    pattern = re.compile(source)
    fast = guarded(pattern)
    assert isinstance(fast, GuardedPattern)
    for text in TEXTS:
        for pos in range(0, len(text) + 2, 3):
            for endpos in (len(text), max(0, len(text) - 7), pos + 5):
                assert _spans(pattern.finditer(text, pos, endpos)) == _spans(fast.finditer(text, pos, endpos))
                expected = pattern.search(text, pos, endpos)
                found = fast.search(text, pos, endpos)
                assert _spans([expected] if expected else []) == _spans([found] if found else [])


def test_every_scoring_pattern_finds_the_same_matches() -> None:
    for scoring in _patterns():
        twin = scoring.folded.lower
        plain = twin.whole if isinstance(twin, GuardedPattern) else twin
        for text in TEXTS:
            folded = text.lower()
            assert _spans(plain.finditer(folded)) == _spans(twin.finditer(folded)), plain.pattern


@pytest.mark.parametrize("source", [
    r"cysts?\b",             # no look-around first: already fast
    r"\b\w+ous\b",           # nothing to skip ahead to
    r"\b(?:a|b|c|d|e|f)x",   # too many first characters
    r"(?<=(a))b",            # the guard captures
    r"\b(?:cyst)?",          # may match the empty string
    r"\b|cyst",              # alternatives at the top
])
def test_other_patterns_are_left_as_they_are(source: str) -> None:
    pattern = re.compile(source)
    assert guarded(pattern) is pattern


def test_everything_else_is_the_whole_pattern() -> None:
    pattern = re.compile(r"\b(?P<word>cyst)s?\b")
    fast = guarded(pattern)
    assert (pattern.pattern, pattern.groupindex) == (fast.pattern, fast.groupindex)
    assert pattern.match("cysts").span() == fast.match("cysts").span()
