"""Header search tried only at line and sentence starts finds what a full scan finds."""

from __future__ import annotations

import itertools

import pytest

from ri_engine.nlp.sections import _LINE_START, _SENTENCE_START, SectionScheme, _matches

PIECES = ["FINDINGS:", "Impression", "history", "addendum 1:", "Findings #2:", "\n", "\r", "\r\n",
          ". ", ".  ", "!\t", "?", "  ", "x"]


@pytest.mark.parametrize("scheme", [SectionScheme.load()])
def test_candidate_matching_equals_finditer(scheme: SectionScheme) -> None:
    texts = ["".join(p) for p in itertools.product(PIECES, repeat=3)]
    texts.append("EXAM: CT CHEST\n\nFINDINGS: Nodule.  IMPRESSION: Stable.\r\nRecommendation\nNone")
    for text in texts:
        for pattern, starts in ((scheme.pattern, _SENTENCE_START), (scheme.alone_pattern, _LINE_START)):
            expected = [(m.span(), m.group("name")) for m in pattern.finditer(text)]
            assert expected == [(m.span(), m.group("name")) for m in _matches(pattern, text, starts)]
