"""lateralityDiscrepancy: the side in the report disagrees with the order or with itself.

Three discrepancy types (ri_contract 5.3), vocabulary in ``knowledge/quality_laterality.json``:

- ``orderLateralityMismatch``: the order names one side, read from its code (the
  procedure table in ``quality_order_exams.json``; a CPT "-LT"/"-RT" modifier) or its
  display/description ("LEFT", "LT", "Left", a trailing "L"), and the text puts the other
  side on the ordered body part ("right breast" for a LEFT breast order). Abbreviated
  sides count in the text too, so an exam title "US LT BREAST" agrees with a LEFT order.
  Mentions in history, indication and comparison sections, and sentences about priors,
  the contralateral side or surgery ("status post right mastectomy"), are not the exam
  being reported and are skipped. Bilateral orders have no side and never mismatch.
  One inference per opposite side, indicating that side, with every such mention as
  evidence.
- ``textLateralityContradiction``: the impression puts a finding on one side of a paired
  structure and the findings section puts the same finding of the same structure only
  on the other side. The indication is the impression's side.
- ``textLateralityMissing``: a lateralised order whose text states no side anywhere (an
  exam title with a side counts as stated). No indication and no evidence, as RI does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass

from ..context import AnalysisContext
from ..models import Inference, LateralityDiscrepancyInference, OrderedProcedure
from .quality_text import (
    coded, is_negated, knowledge, phrase_pattern, section_blocks, section_name_at,
    sentence_bounds, token_evidence,
)

_OPPOSITE = {"left": "right", "right": "left"}
_FOUR_WORDS = re.compile(r"(?:\s*[-A-Za-z]+){0,4}")
# "left-sided sixth and seventh ribs": "-sided" belongs to the side word, not to the words
# between it and the part.
_SIDED = re.compile(r"\s*-?\s*sided\b", re.IGNORECASE)
_CPT_MODIFIER = re.compile(r"-\s*(LT|RT)\b", re.IGNORECASE)
# A lone L/R is a side only at the end of an order text or in parentheses ("KNEE L",
# "HIP (R)"); elsewhere it is usually part of a name ("L SPINE").
_LONE_LETTER = re.compile(r"(?:\(\s*([LR])\s*\)|\b([LR])\s*$)")


@dataclass(frozen=True)
class _Side:
    side: str        # left / right / bilateral
    start: int
    end: int
    part: str | None  # paired-part group the side word qualifies, if any
    part_span: tuple[int, int] | None = None
    # Every group the part belongs to: a bone or joint shared by two exams ("talus": ankle
    # and foot) is part of each.
    parts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Vocab:
    codes: dict[str, dict[str, str]]
    order_words: dict[str, re.Pattern[str]]
    text_words: dict[str, re.Pattern[str]]
    any_side: re.Pattern[str]
    parts: tuple[tuple[str, re.Pattern[str]], ...]
    # Every part at once: group ``p<i>`` is ``parts[i]``. A search finds the leftmost part
    # and, among parts starting there, the first, as searching each in turn would.
    any_part: re.Pattern[str]
    findings: re.Pattern[str]
    excluded_sections: frozenset[str]
    excluded_cues: re.Pattern[str]
    order_table: dict[str, str]
    # Part word (lower case, single spaces) -> its groups, for words listed in several.
    shared_parts: dict[str, frozenset[str]]


@functools.cache
def _vocab() -> _Vocab:
    data = knowledge("quality_laterality.json")
    exams = knowledge("quality_order_exams.json")
    order_words = {side: phrase_pattern([w for w in ws if len(w) > 1])
                   for side, ws in data["sideWords"].items()}
    text_words = {side: phrase_pattern(ws) for side, ws in data["textOnlySideWords"].items()}
    all_text = [w for ws in data["textOnlySideWords"].values() for w in ws]
    parts = tuple((group, phrase_pattern(words)) for group, words in data["pairedParts"].items())
    any_part = re.compile("|".join(f"(?P<p{i}>{pattern.pattern})" for i, (_, pattern) in enumerate(parts)),
                          re.IGNORECASE)
    table = {c["code"]: c["laterality"] for c in exams["codes"] if c.get("laterality")}
    groups_of: dict[str, set[str]] = {}
    for group, words in data["pairedParts"].items():
        for word in words:
            groups_of.setdefault(" ".join(word.lower().split()), set()).add(group)
    shared = {word: frozenset(groups) for word, groups in groups_of.items() if len(groups) > 1}
    return _Vocab(data["codes"], order_words, text_words, phrase_pattern(all_text), parts, any_part,
                  phrase_pattern(data["findingWords"]), frozenset(data["excludedSections"]),
                  phrase_pattern(data["excludedCues"]), table, shared)


def infer(ctx: AnalysisContext) -> list[Inference]:
    vocab = _vocab()
    inferences: list[Inference] = []
    order_side, order_part = _order_laterality(ctx.ordered_procedures, vocab)
    if order_side in _OPPOSITE:
        if not _side_stated(ctx, vocab):
            inferences.append(LateralityDiscrepancyInference(discrepancy_type="textLateralityMissing"))
        else:
            inferences.extend(_order_mismatch(ctx, vocab, order_side, order_part))
    inferences.extend(_contradictions(ctx, vocab))
    return inferences


def _side_stated(ctx: AnalysisContext, vocab: _Vocab) -> bool:
    """A side word outside the comparison: a side named only for an earlier study
    ("COMPARISON: Left wrist radiographs") is not this exam's, while the side of the
    complaint ("INDICATION: Right wrist pain") usually is."""
    any_side, folded = ctx.folded(vocab.any_side)
    return any(section_name_at(ctx, m.start()) != "COMPARISON" for m in any_side.finditer(folded))


# --- the order's side -----------------------------------------------------------------------

def _order_laterality(procedures: list[OrderedProcedure], vocab: _Vocab) -> tuple[str | None, str | None]:
    sides: set[str] = set()
    part: str | None = None
    for procedure in procedures:
        texts = [procedure.description or ""]
        for coding in (procedure.code.coding if procedure.code and procedure.code.coding else []):
            texts.append(coding.display or "")
            if coding.code in vocab.order_table:
                sides.add(vocab.order_table[coding.code])
            m = _CPT_MODIFIER.search(coding.code or "")
            if m:
                sides.add("left" if m.group(1).upper() == "LT" else "right")
        for text in texts:
            for side, pattern in vocab.order_words.items():
                if pattern.search(text):
                    sides.add(side)
            m = _LONE_LETTER.search(text.strip())
            if m:
                sides.add("left" if (m.group(1) or m.group(2)) == "L" else "right")
            for group, pattern in vocab.parts:
                if part is None and pattern.search(text):
                    part = group
    if "bilateral" in sides or sides >= {"left", "right"} or len(sides) != 1:
        return None, part
    return sides.pop(), part


# --- sides in the text ----------------------------------------------------------------------

def _sides(ctx: AnalysisContext, vocab: _Vocab, lo: int = 0, hi: int | None = None,
           only: Collection[str] | None = None) -> list[_Side]:
    """Side words in text[lo:hi] (of the ``only`` sides, if given), each with the paired
    part it qualifies."""
    text = ctx.text
    hi = len(text) if hi is None else hi
    found: list[_Side] = []
    for side, pattern in vocab.text_words.items():
        if only is not None and side not in only:
            continue
        words, folded = ctx.folded(pattern)
        for m in words.finditer(folded, lo, hi):
            part, span, parts = _part_after(ctx, vocab, m.end())
            found.append(_Side(side, m.start(), m.end(), part, span, parts))
    return sorted(found, key=lambda s: s.start)


def _part_after(ctx: AnalysisContext, vocab: _Vocab, offset: int) -> tuple[
        str | None, tuple[int, int] | None, frozenset[str]]:
    """The paired part named within a few words after a side word ("left | lower lobe"):
    its first group, its span and every group that lists it."""
    _, s_end = sentence_bounds(ctx, offset)
    sided = _SIDED.match(ctx.text, offset, s_end)
    if sided:
        offset = sided.end()
    window = ctx.text[offset:min(s_end, offset + 40)]
    words = _FOUR_WORDS.match(window)
    limit = offset + (words.end() if words else 0)
    any_part, folded = ctx.folded(vocab.any_part)
    m = any_part.search(folded, offset, limit)
    if m is None or m.lastgroup is None:
        return None, None, frozenset()
    group = vocab.parts[int(m.lastgroup[1:])][0]
    shared = vocab.shared_parts.get(" ".join(m.group().lower().split()))
    return group, m.span(), shared or frozenset((group,))


def _counts_for_exam(ctx: AnalysisContext, vocab: _Vocab, side: _Side) -> bool:
    if section_name_at(ctx, side.start) in vocab.excluded_sections:
        return False
    s_start, s_end = sentence_bounds(ctx, side.start)
    cues, folded = ctx.folded(vocab.excluded_cues)
    return not cues.search(folded, s_start, s_end)


def _order_mismatch(ctx: AnalysisContext, vocab: _Vocab, order_side: str,
                    order_part: str | None) -> list[Inference]:
    if order_part is None:
        return []
    opposite = _OPPOSITE[order_side]
    wrong = [s for s in _sides(ctx, vocab)
             if s.side == opposite and order_part in s.parts and _counts_for_exam(ctx, vocab, s)]
    if not wrong:
        return []
    spans = tuple((s.start, s.end) for s in wrong)
    evidence_spans = spans + tuple(s.part_span for s in wrong if s.part_span)
    return [LateralityDiscrepancyInference(
        discrepancy_type="orderLateralityMismatch",
        laterality_indication=coded(vocab.codes[opposite], ctx, spans),
        extension=token_evidence(ctx, *evidence_spans) or None,
    )]


# --- findings versus impression -------------------------------------------------------------

def _finding_key(word: str, vocab: _Vocab) -> str:
    low = word.lower()
    if low == "calculi":
        return "calculus"
    for suffix in ("es", "s"):  # plural to singular: masses -> mass, nodules -> nodule
        if low.endswith(suffix) and vocab.findings.fullmatch(low[:-len(suffix)]):
            return low[:-len(suffix)]
    return low


def _sided_findings(ctx: AnalysisContext, vocab: _Vocab, lo: int, hi: int) -> list[tuple[tuple[str, str], _Side, tuple[int, int]]]:
    """((finding, part), side, finding span) for findings with a sided part in [lo, hi)."""
    out = []
    # Several findings often share a sentence: read its side words once.
    by_sentence: dict[tuple[int, int], list[_Side]] = {}
    findings, folded = ctx.folded(vocab.findings)
    for m in findings.finditer(folded, lo, hi):
        s_start, s_end = sentence_bounds(ctx, m.start())
        window = (max(lo, s_start), min(hi, s_end))
        if window not in by_sentence:
            by_sentence[window] = _paired_sides(ctx, vocab, *window)
        sides = by_sentence[window]
        if not sides or is_negated(ctx, m.start(), m.end()):
            continue
        nearest = min(sides, key=lambda s: abs(s.start - m.start()))
        out.append(((_finding_key(m.group(0), vocab), nearest.part or ""), nearest, (m.start(), m.end())))
    return out


def _paired_sides(ctx: AnalysisContext, vocab: _Vocab, lo: int, hi: int) -> list[_Side]:
    """Left/right words in text[lo:hi] that qualify a paired part."""
    any_side, folded = ctx.folded(vocab.any_side)
    if not any_side.search(folded, lo, hi):
        # The common case, settled by one scan instead of one per side (``any_side``
        # matches wherever one of the per-side patterns would).
        return []
    return [s for s in _sides(ctx, vocab, lo, hi, _OPPOSITE) if s.part]


def _contradictions(ctx: AnalysisContext, vocab: _Vocab) -> list[Inference]:
    blocks = section_blocks(ctx)
    findings = [b for b in blocks if b.name == "FINDINGS"]
    impressions = [b for b in blocks if b.name == "IMPRESSION"]
    if not findings or not impressions:
        return []
    body: dict[tuple[str, str], list[_Side]] = {}
    for block in findings:
        for key, side, _ in _sided_findings(ctx, vocab, block.start, block.end):
            body.setdefault(key, []).append(side)
    inferences: list[Inference] = []
    reported: set[tuple[tuple[str, str], str]] = set()
    for block in impressions:
        for key, side, span in _sided_findings(ctx, vocab, block.start, block.end):
            stated = body.get(key)
            if not stated or any(s.side == side.side for s in stated):
                continue
            if (key, side.side) in reported:
                continue
            reported.add((key, side.side))
            other = stated[0]
            inferences.append(LateralityDiscrepancyInference(
                discrepancy_type="textLateralityContradiction",
                laterality_indication=coded(vocab.codes[side.side], ctx, ((side.start, side.end),)),
                extension=token_evidence(ctx, (side.start, side.end), span,
                                         (other.start, other.end)) or None,
            ))
    return inferences
