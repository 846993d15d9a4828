"""Header search tried only at line and sentence starts finds what a full scan finds."""

from __future__ import annotations

import itertools

import pytest

from ri_engine.nlp.sections import SectionScheme, _matches, _starts

PIECES = ["FINDINGS:", "Impression", "history", "addendum 1:", "Findings #2:", "\n", "\r", "\r\n",
          ". ", ".  ", "!\t", "?", "  ", "x", "\u00e9", "\udc80"]


@pytest.mark.parametrize("scheme", [SectionScheme.load()])
def test_candidate_matching_equals_finditer(scheme: SectionScheme) -> None:
    texts = ["".join(p) for p in itertools.product(PIECES, repeat=3)]
    texts.append("EXAM: CT CHEST\n\nFINDINGS: Nodule.  IMPRESSION: Stable.\r\nRecommendation\nNone")
    for text in texts:
        sentence_starts, line_starts = _starts(text)
        for pattern, starts in ((scheme.pattern, sentence_starts), (scheme.alone_pattern, line_starts)):
            expected = [(m.span(), m.group("name")) for m in pattern.finditer(text)]
            assert expected == [(m.span(), m.group("name")) for m in _matches(pattern, text, starts)]
