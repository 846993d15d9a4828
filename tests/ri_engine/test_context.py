"""AnalysisContext lookups: the indexed versions give what a plain scan of the layers gives."""

from __future__ import annotations

import re
from functools import lru_cache

import pytest

from ri_engine import Engine
from ri_engine.context import AnalysisContext
from ri_engine.models import RadiologyInsightsData
from ri_engine.validation import validate

TEXTS = [
    "FINDINGS: 2.5x1.2cm nodule in the RUL.  No effusion.\r\n\r\n  IMPRESSION:\n1. Nodule, "
    "see Dr. Smith's note.\t\tStable.  \n",
    "  Leading space.   Runs   of spaces\n\n\nand lines. ",
    "x",
]


@lru_cache(maxsize=1)
def engine() -> Engine:
    return Engine()


def context(text: str) -> AnalysisContext:
    data = RadiologyInsightsData.from_json({
        "patients": [{"id": "p", "patientDocuments": [{
            "id": "d", "type": "note", "createdAt": "2024-01-15T00:00:00", "content": {"sourceType": "inline", "value": text}}]}],
        "configuration": {"includeEvidence": True}})
    return engine().context(validate(data))


@pytest.mark.parametrize("text", TEXTS)
def test_tokens_match_spacy_char_span(text: str) -> None:
    ctx = context(text)
    spans = [(s, e) for s in range(-1, len(text) + 2) for e in range(s, len(text) + 2)]
    expected = [ctx._tokens_from_doc(s, e) for s, e in spans]
    assert expected == [ctx.tokens(s, e) for s, e in spans]


@pytest.mark.parametrize("text", TEXTS)
def test_section_and_sentence_lookups_match_a_scan(text: str) -> None:
    ctx = context(text)
    offsets = range(-1, len(text) + 1)
    sections = [min((s for s in ctx.sections if s.start <= o < s.end),
                    key=lambda s: s.end - s.start, default=None) for o in offsets]
    sentences = [next((s for s in ctx.sentences if s.start <= o < s.end), None) for o in offsets]
    assert sections == [ctx.section_at(o) for o in offsets]
    assert sentences == [ctx.sentence_at(o) for o in offsets]


@pytest.mark.parametrize(("pattern", "text"), [
    (r"\b(?:lacerations?|hematomas?)\b", "Liver laceration. Splenic HEMATOMA and a laceration."),
    (r"\bpregnan(?:t|cy)\b", "No pregnancy. Pregnant\u0130 patient."),  # non-ASCII: scanned as written
    (r"x", "nothing here"),                          # ruled out by its literal text
    (r"\bkelvin\b|\bpacks?\b", "\u212aELVIN scale, 20 PACK-years"),  # Kelvin sign: a case twin of K
])
def test_spans_are_the_whole_report_matches_and_made_once(pattern: str, text: str) -> None:
    ctx = context(text)
    rx = re.compile(pattern, re.IGNORECASE)
    expected = [m.span() for m in rx.finditer(text)]
    assert expected == ctx.spans(rx)
    assert ctx.spans(rx) is ctx.spans(re.compile(pattern, re.IGNORECASE))  # one scan per request


@pytest.mark.parametrize(("pattern", "text", "may_match"), [
    (r"\bactive\s+(?:bleeding|extravasation)\b", "Active hemorrhage.", False),
    (r"\bactive\s+(?:bleeding|extravasation)\b", "No ACTIVE extravasation.", True),
    (r"\bpost-?menopaus\w+\b", "Premenopausal woman.", False),
    (r"\bpost-?menopaus\w+\b", "Post-menopausal woman.", True),
    (r"\b(?:high\s+risk|smoking\s+history)\b", "High attenuation; history of asthma.", False),
    (r"\d+\s*mm", "5 cm", False),
    (r"\d+\s*mm", "5 MM", True),
])
def test_may_match_is_false_only_for_patterns_the_report_cannot_match(
        pattern: str, text: str, may_match: bool) -> None:
    rx = re.compile(pattern, re.IGNORECASE)
    assert may_match == context(text).may_match(rx) == bool(rx.search(text))
