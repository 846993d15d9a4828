"""Phrase tries: the same matches as the longest-first alternation they replace."""

from __future__ import annotations

import random
import re

import pytest

from ri_engine.nlp.alternation import phrase_alternation


def _longest_first(phrases: list[str]) -> str:
    parts = sorted({p.lower() for p in phrases}, key=len, reverse=True)
    return "(?:%s)" % "|".join(r"\s+".join(re.escape(w) for w in p.split(" ")) for p in parts)


def _spans(source: str, text: str) -> list[tuple[int, int]]:
    rx = re.compile(rf"(?<![A-Za-z0-9-]){source}(?![A-Za-z0-9-])", re.IGNORECASE)
    return [m.span() for m in rx.finditer(text)]


@pytest.mark.parametrize(("phrases", "text", "expected"), [
    (["nodule", "nodules", "mass"], "Nodules and a MASS; nodule.", [(0, 7), (14, 18), (20, 26)]),
    (["follow up", "follow-up", "follow"], "follow  up, follow-up, follow", [(0, 10), (12, 21), (23, 29)]),
    # The longer phrase fails the boundary after it, the shorter one is taken.
    (["left lower", "left"], "left lowerx", [(0, 4)]),
    (["ab", "abc"], "abcd ab", [(5, 7)]),
    ([], "anything", []),
])
def test_matches(phrases: list[str], text: str, expected: list[tuple[int, int]]) -> None:
    assert expected == _spans(phrase_alternation(phrases), text)


def test_same_matches_as_the_longest_first_alternation() -> None:
    rng = random.Random(7)
    alphabet = "ab -"
    for _ in range(300):
        phrases = ["".join(rng.choice("ab") for _ in range(rng.randint(1, 3)))
                   + rng.choice(["", " ", "-"]) * rng.randint(0, 1)
                   + "".join(rng.choice("ab") for _ in range(rng.randint(0, 2)))
                   for _ in range(rng.randint(1, 6))]
        phrases = [" ".join(p.split()) for p in phrases if p.strip() and not p.endswith("-")]
        if not phrases:
            continue
        text = "".join(rng.choice(alphabet) for _ in range(40)) + "A B"
        assert _spans(_longest_first(phrases), text) == _spans(phrase_alternation(phrases), text), phrases
