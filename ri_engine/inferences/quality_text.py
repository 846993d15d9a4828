"""Text reading shared by the quality-check builders (age, sex, laterality, order checks).

These checks compare what the report *says* with the request metadata, so they need a
few plain facts about a character span: which section and sentence hold it, whether the
sentence denies it or puts it on someone else, and RI's token evidence for it.

Sections and sentences come from the engine's NLP layers (``ctx.sections``,
``ctx.sentences``) when it has filled them; otherwise a small header/sentence reader
here provides the same information, so the builders also work on a bare context.
Knowledge files are read once from ``ri_engine/knowledge/quality_*.json``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context import AnalysisContext
from ..models import CodeableConcept, Extension, concept

# RI splits hyphens, slashes and other punctuation into their own tokens
# ("20-year-old" -> 20 - year - old); numbers keep their decimal point.
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[A-Za-z]+|[^\sA-Za-z\d]")


@functools.cache
def knowledge(name: str) -> dict[str, Any]:
    """One ``ri_engine/knowledge/<name>`` JSON file (read once per process)."""
    path = Path(__file__).resolve().parent.parent / "knowledge" / name
    return json.loads(path.read_text(encoding="utf-8"))


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
    parts = sorted({p.lower() for p in phrases}, key=len, reverse=True)
    body = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in parts)
    return re.compile(rf"(?<![A-Za-z0-9])(?:{body})(?![A-Za-z0-9])", re.IGNORECASE)


# --- sections -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    name: str
    start: int
    end: int


# A header is a line that starts with a few words and a colon ("FINDINGS:", "Provided
# history:"); the canonical names match the ones the engine's section layer uses.
_HEADER = re.compile(r"(?m)^[ \t]*([A-Za-z][A-Za-z /&]{1,40}?)[ \t]*:")
_SECTION_NAMES = (
    ("IMPRESSION", ("impression", "conclusion", "summary", "opinion", "assessment")),
    ("FINDINGS", ("finding", "result", "report", "observation")),
    ("COMPARISON", ("comparison", "prior")),
    ("TECHNIQUE", ("technique", "procedure", "protocol", "method")),
    ("HISTORY", ("history", "indication", "reason", "clinical", "complaint")),
    ("EXAM", ("exam", "study", "examination")),
)


def _canonical(header: str) -> str | None:
    low = header.lower()
    for name, stems in _SECTION_NAMES:
        if any(stem in low for stem in stems):
            return name
    return None


@functools.lru_cache(maxsize=64)
def _blocks_of(text: str) -> tuple[Block, ...]:
    heads = [(m.start(), _canonical(m.group(1))) for m in _HEADER.finditer(text)]
    heads = [(pos, name) for pos, name in heads if name]
    blocks = []
    for i, (pos, name) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        blocks.append(Block(name, pos, end))
    return tuple(blocks)


def _normalise_engine_name(name: str) -> str:
    return _canonical(name) or name.upper()


def section_name_at(ctx: AnalysisContext, offset: int) -> str | None:
    """Canonical section name (FINDINGS, IMPRESSION, HISTORY, ...) holding ``offset``."""
    if ctx.sections:
        section = ctx.section_at(offset)
        return _normalise_engine_name(section.name) if section else None
    for block in _blocks_of(ctx.text):
        if block.start <= offset < block.end:
            return block.name
    return None


def section_blocks(ctx: AnalysisContext) -> list[Block]:
    if ctx.sections:
        return [Block(_normalise_engine_name(s.name), s.start, s.end) for s in ctx.sections]
    return list(_blocks_of(ctx.text))


# --- sentences ------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bMrs)(?<!\d)[.!?](?=\s)|\n\s*\n|\r\n\s*\r\n|:\s*(?:\r?\n)")


def sentence_bounds(ctx: AnalysisContext, offset: int) -> tuple[int, int]:
    """The sentence holding ``offset``; a line break also ends a heading line."""
    if ctx.sentences:
        sentence = ctx.sentence_at(offset)
        if sentence is not None:
            return sentence.start, sentence.end
    text = ctx.text
    start = 0
    for m in _SENTENCE_END.finditer(text, 0, offset):
        start = m.end()
    m = _SENTENCE_END.search(text, offset)
    end = m.end() if m else len(text)
    return start, end


# --- assertion ------------------------------------------------------------------------------

_PRE_NEGATION = phrase_pattern([
    "no", "not", "without", "negative for", "no evidence of", "no sonographic evidence of",
    "free of", "absence of", "absent", "never", "rather than", "ruled out", "nor",
])
_POST_NEGATION = phrase_pattern([
    "is absent", "are absent", "surgically absent", "not seen", "not visualized",
    "not identified", "is not", "are not", "has been removed", "have been removed",
    "removed", "resected", "was excluded", "is excluded", "not present",
])
# A clause boundary stops a cue from reaching across it ("no fluid, but the uterus ...").
_CLAUSE_BREAK = re.compile(r"[;,]|\bbut\b|\bhowever\b|\bwhich\b|\bwith\b", re.IGNORECASE)


def _clause(ctx: AnalysisContext, start: int, end: int) -> tuple[int, int]:
    s_start, s_end = sentence_bounds(ctx, start)
    left = s_start
    for m in _CLAUSE_BREAK.finditer(ctx.text, s_start, start):
        left = m.end()
    m = _CLAUSE_BREAK.search(ctx.text, end, s_end)
    right = m.start() if m else s_end
    return left, right


def is_negated(ctx: AnalysisContext, start: int, end: int) -> bool:
    """The clause around the span denies it ("no uterus", "uterus is absent")."""
    left, right = _clause(ctx, start, end)
    before = ctx.text[left:start]
    after = ctx.text[end:right]
    return bool(_PRE_NEGATION.search(before) or _POST_NEGATION.search(after))


def words_near(ctx: AnalysisContext, start: int, end: int, pattern: re.Pattern[str],
               *, before: int = 60, after: int = 40) -> bool:
    """``pattern`` occurs within the sentence, close before or after the span."""
    s_start, s_end = sentence_bounds(ctx, start)
    lo = max(s_start, start - before)
    hi = min(s_end, end + after)
    return bool(pattern.search(ctx.text, lo, start) or pattern.search(ctx.text, end, hi))
