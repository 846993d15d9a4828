"""Text reading shared by the quality-check builders (age, sex, laterality, order checks).

These checks compare what the report *says* with the request metadata, so they need a
few plain facts about a character span: which section and sentence hold it, whether the
sentence denies it or puts it on someone else, and RI's token evidence for it.

Sections and sentences come from the engine's NLP layers (``ctx.sections``,
``ctx.sentences``); on a context the engine has not filled they are computed here with
the same NLP functions, so the builders also work on a bare context.
Knowledge files are read once from ``ri_engine/knowledge/quality_*.json``.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from typing import Any

from ..context import AnalysisContext, Section, Span
from ..knowledge import load_json
from ..models import CodeableConcept, Extension, concept
from ..nlp.alternation import phrase_alternation
from ..nlp.sections import SectionScheme, find_sections
from ..nlp.sentences import split_sentences

# RI splits hyphens, slashes and other punctuation into their own tokens
# ("20-year-old" -> 20 - year - old); numbers keep their decimal point.
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[A-Za-z]+|[^\sA-Za-z\d]")


def knowledge(name: str) -> dict[str, Any]:
    """One ``ri_engine/knowledge/<name>`` JSON file (read once per process)."""
    data: dict[str, Any] = load_json(name)
    return data


def token_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of every RI token inside text[start:end]."""
    return [(start + m.start(), start + m.end()) for m in _TOKEN.finditer(text[start:end])]


def token_evidence(ctx: AnalysisContext, *spans: tuple[int, int]) -> list[Extension]:
    """Token evidence for character spans, each split into RI tokens ([] unless asked)."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        out.extend(token_spans(ctx.text, start, end))
    return ctx.evidence(*sorted(set(out)))


def coded(entry: dict[str, str], ctx: AnalysisContext | None = None,
          spans: tuple[tuple[int, int], ...] = ()) -> CodeableConcept:
    extension = token_evidence(ctx, *spans) if ctx is not None and spans else None
    return concept(entry["system"], entry["code"], entry["display"], extension=extension or None)


def phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    """Whole-word, case-insensitive alternation, longest phrase first; spaces match any gap."""
    body = phrase_alternation(" ".join(p.split()) for p in phrases)
    return re.compile(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])", re.IGNORECASE)


# --- sections and sentences -----------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    name: str
    start: int
    end: int


# The engine's section names folded to the few the quality checks tell apart
# (INDICATION and HISTORY both describe why the exam was done).
_FOLD = {"INDICATION": "HISTORY"}


@functools.lru_cache(maxsize=64)
def _layout(text: str) -> tuple[tuple[Section, ...], tuple[Span, ...]]:
    """Sections and sentences for a context the NLP layer has not filled."""
    sections = find_sections(text, _scheme())
    return tuple(sections), tuple(split_sentences(text, sections))


@functools.cache
def _scheme() -> SectionScheme:
    return SectionScheme.load()


def _sections(ctx: AnalysisContext) -> tuple[Section, ...]:
    return tuple(ctx.sections) if ctx.sections else _layout(ctx.text)[0]


def section_blocks(ctx: AnalysisContext) -> list[Block]:
    return [Block(_FOLD.get(s.name, s.name), s.start, s.end) for s in _sections(ctx)]


def section_name_at(ctx: AnalysisContext, offset: int) -> str | None:
    """Section name (FINDINGS, IMPRESSION, HISTORY, EXAM, ...) holding ``offset``."""
    if ctx.sections:
        best = ctx.section_at(offset)  # indexed: builders ask once per mention
    else:
        best = None
        for section in _sections(ctx):
            if section.start <= offset < section.end:
                if best is None or section.end - section.start < best.end - best.start:
                    best = section
    return _FOLD.get(best.name, best.name) if best else None


def sentence_bounds(ctx: AnalysisContext, offset: int) -> tuple[int, int]:
    """The sentence holding ``offset``; outside every sentence (a header), its line."""
    if ctx.sentences:
        sentence = ctx.sentence_at(offset)  # indexed: builders ask once per mention
    else:
        sentence = next((s for s in _layout(ctx.text)[1] if s.start <= offset < s.end), None)
    if sentence is not None:
        return sentence.start, sentence.end
    text = ctx.text
    start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    ends = [i for i in (text.find("\n", offset), text.find("\r", offset)) if i >= 0]
    return start, min(ends) if ends else len(text)


# --- assertion ------------------------------------------------------------------------------

_PRE_NEGATION = phrase_pattern([
    "no", "not", "without", "negative for", "no evidence of", "no sonographic evidence of",
    "free of", "absence of", "absent", "never", "rather than", "ruled out", "nor",
])
_POST_NEGATION = phrase_pattern([
    "absent", "is absent", "are absent", "surgically absent", "not seen", "not visualized",
    "not identified", "is not", "are not", "has been removed", "have been removed",
    "removed", "resected", "was excluded", "is excluded", "not present",
])
# A clause boundary stops a cue from reaching across it ("no fluid, but the uterus ...").
_CLAUSE_BREAK = re.compile(r"[;,]|\bbut\b|\bhowever\b|\bwhich\b|\bwith\b", re.IGNORECASE)


def _clause(ctx: AnalysisContext, start: int, end: int) -> tuple[int, int]:
    s_start, s_end = sentence_bounds(ctx, start)
    starts, ends = _matches(_CLAUSE_BREAK, ctx.text)
    # The last break before the span (in its sentence), the first one after it.
    before = bisect.bisect_right(ends, start) - 1
    left = ends[before] if before >= 0 and starts[before] >= s_start else s_start
    after = bisect.bisect_left(starts, end)
    right = starts[after] if after < len(starts) and ends[after] <= s_end else s_end
    return left, right


def is_negated(ctx: AnalysisContext, start: int, end: int) -> bool:
    """The clause around the span denies it ("no uterus", "uterus is absent")."""
    left, right = _clause(ctx, start, end)
    return (occurs(_PRE_NEGATION, ctx.text, left, start)
            or occurs(_POST_NEGATION, ctx.text, end, right))


@functools.lru_cache(maxsize=16)
def _matches(pattern: re.Pattern[str], text: str) -> tuple[list[int], list[int]]:
    """Where ``pattern`` matches in ``text``: starts and ends, both ascending.

    Found once per report, so that a question about one mention's clause costs a
    binary search: scanning the clause for each mention took time quadratic in the
    length of a sentence that names many (a 50,000-character one: about a minute).
    The patterns here start and end with letters or punctuation, and mentions with
    letters, so a match inside a clause is the same whether the clause is scanned
    alone or found in the whole text.
    """
    found = [(m.start(), m.end()) for m in pattern.finditer(text)]
    return [a for a, _ in found], [b for _, b in found]


def occurs(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> bool:
    """``pattern`` has a match inside ``text[lo:hi]`` (``lo`` and ``hi`` at word edges)."""
    starts, ends = _matches(pattern, text)
    first = bisect.bisect_left(starts, lo)
    return first < len(starts) and ends[first] <= hi


def words_near(ctx: AnalysisContext, start: int, end: int, pattern: re.Pattern[str],
               *, before: int = 60, after: int = 40) -> bool:
    """``pattern`` occurs within the sentence, close before or after the span."""
    s_start, s_end = sentence_bounds(ctx, start)
    lo = max(s_start, start - before)
    hi = min(s_end, end + after)
    return bool(pattern.search(ctx.text, lo, start) or pattern.search(ctx.text, end, hi))
