"""``scoringAndAssessment``: structured scores written in the report (ri_contract §5.11).

One inference per mention, in text order, duplicates kept (RI does not merge them).
The category table (names, value grammars, descriptions) is data:
``ri_engine/knowledge/scoring_categories.json``. A mention is a system name, optional
filler words ("category", "score of", ":", "v2.1"), then a value or a range ("PI-RADS 3-4");
a few systems are also recognised by their value alone ("TR4", "LR-5"). Overlapping
matches keep the longest one (then the higher priority), so "O-RADS MRI 4" is not also
read as "O-RADS 4". Evidence is the tokens of the name and of the value(s) only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..context import AnalysisContext
from .. import knowledge
from ..models import AssessmentValueRange, Inference, ScoringAndAssessmentInference
from ..nlp.casefold import CaseFolded, fold
from ..nlp.prefilter import Literals, Screen, required_literals

# Same token facts as RI's offsets: numbers whole, words whole, any other character alone.
_SPACES = re.compile(r"\s+")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[^\s\w]")
_ROMAN = {"0": "0", "I": "1", "II": "2", "III": "3", "IV": "4"}
_TO_ROMAN = {"1": "I", "2": "II", "2F": "IIF", "3": "III", "4": "IV"}


@dataclass(frozen=True)
class ScoreMention:
    """One score written in the text: category, value or range, and where."""

    category: str
    description: str
    start: int
    end: int
    value: str
    maximum: str | None
    spans: tuple[tuple[int, int], ...]   # name and value spans (for evidence)
    priority: int = 0


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    entry: dict[str, Any]
    literals: tuple[Literals, ...]  # every match has one string of each (nlp/prefilter.py)
    folded: CaseFolded              # the scan itself runs over the case-folded report

    @classmethod
    def compile(cls, pattern: str, entry: dict[str, Any]) -> _Pattern:
        regex = re.compile(pattern, re.IGNORECASE)
        return cls(regex, entry, required_literals(regex), CaseFolded(regex))


@cache
def _table() -> dict[str, Any]:
    path = Path(__file__).resolve().parent.parent / "knowledge" / "scoring_categories.json"
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _patterns() -> tuple[_Pattern, ...]:
    table = _table()
    filler = table["filler"]
    separator = table["rangeSeparator"]
    out: list[_Pattern] = []
    for entry in table["categories"]:
        value = f"(?:{entry['value']})"
        end = r"(?![\w%])(?!\.\d)"
        for name in entry["names"]:
            body = rf"(?<![\w-])(?P<name>{name})(?![\w]){filler}(?P<v>{value})"
            if entry.get("range"):
                body += rf"(?:(?:{separator})(?P<v2>{value}))?"
            out.append(_Pattern.compile(body + end, entry))
        for direct in entry.get("direct", ()):
            out.append(_Pattern.compile(direct + end, entry))
    return tuple(out)


def category_names() -> list[str]:
    """Every category this builder can produce, in table order."""
    return [entry["category"] for entry in _table()["categories"]]


def _normalise(raw: str, entry: dict[str, Any]) -> str:
    value = _SPACES.sub("", raw)
    strip = entry.get("strip")
    if strip:
        value = knowledge.pattern(strip).sub("", value)
    value = value.upper()
    mode = entry.get("normalise", "upper")
    if mode == "number":
        value = value.replace(",", "").rstrip("%")
    elif mode == "signed":
        value = value.replace("−", "-").replace("–", "-").lstrip("+")
    elif mode == "roman_to_arabic":
        value = _ROMAN.get(value, value)
    elif mode == "arabic_to_roman":
        value = _TO_ROMAN.get(value, value)
    return value


def find_scores(text: str) -> list[ScoreMention]:
    """Every score mention in ``text``, in text order, overlaps resolved."""
    candidates: list[ScoreMention] = []
    # Most reports name none of the ~50 systems: rule patterns out on their literal text
    # instead of letting each one scan the whole report.
    screen = Screen(text)
    folded = fold(text)  # values are upper-cased by _normalise, offsets are the text's
    for pattern in _patterns():
        if not screen.may_match(pattern.literals):
            continue
        entry = pattern.entry
        for match in pattern.folded.pattern_for(text).finditer(folded):
            groups = match.groupdict()
            spans = []
            if groups.get("name") is not None:
                spans.append(match.span("name"))
            spans.append(match.span("v"))
            maximum = None
            if groups.get("v2") is not None:
                spans.append(match.span("v2"))
                maximum = _normalise(groups["v2"], entry)
            # A pattern that needs context before its value ("C-RADS C1, E2" for E2) marks
            # where its own mention starts with the group "at", so the context stays free
            # for the mention it belongs to.
            start = match.start("at") if groups.get("at") is not None else match.start()
            candidates.append(ScoreMention(
                category=entry["category"], description=entry["description"],
                start=start, end=match.end(), value=_normalise(groups["v"], entry),
                maximum=maximum, spans=tuple(spans), priority=entry.get("priority", 0)))
    # Longest first, then higher priority; a kept mention blocks everything it overlaps.
    candidates.sort(key=lambda m: (-(m.end - m.start), -m.priority, m.start))
    kept: list[ScoreMention] = []
    for mention in candidates:
        if all(mention.end <= k.start or mention.start >= k.end for k in kept):
            kept.append(mention)
    kept.sort(key=lambda m: m.start)
    return kept


def _token_spans(text: str, spans: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    out = []
    for start, end in spans:
        for token in _TOKEN.finditer(text, start, end):
            out.append((token.start(), token.end()))
    return out


def infer(ctx: AnalysisContext) -> list[Inference]:
    inferences: list[Inference] = []
    for mention in find_scores(ctx.text):
        if mention.maximum is not None and mention.maximum != mention.value:
            single, ranged = None, AssessmentValueRange(minimum=mention.value, maximum=mention.maximum)
        else:
            single, ranged = mention.value, None
        evidence = ctx.evidence(*_token_spans(ctx.text, mention.spans))
        inferences.append(ScoringAndAssessmentInference(
            category=mention.category, category_description=mention.description,
            single_value=single, range_value=ranged, extension=evidence or None))
    return inferences
