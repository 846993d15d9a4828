"""lateralityDiscrepancy: the side in the report disagrees with the order or with itself.

Three discrepancy types (ri_contract 5.3), vocabulary in ``knowledge/quality_laterality.json``:

- ``orderLateralityMismatch``: the order names one side, read from its code (the
  procedure table in ``quality_order_exams.json``; a CPT "-LT"/"-RT" modifier) or its
  display/description ("LEFT", "LT", "Left", a trailing "L"), and the text puts the other
  side on the ordered body part ("right breast" for a LEFT breast order). Abbreviated
  sides count in the text too ("LT"). Mentions in history, indication and comparison
  sections, and sentences about priors, the contralateral side or surgery ("status post
  right mastectomy"), are not the exam being reported and are skipped. Bilateral orders
  have no side and never mismatch. One inference per opposite side, indicating that side,
  with every such mention as evidence.
- The exam title written in the text (the EXAM / PROCEDURE section: "EXAM: XR KNEE LEFT 2
  VIEWS") names the exam as the order does, the body part often before the side: it is
  read like an order text and compared with the body of the report. A title on the other
  side from the order is a mismatch; a request without a sided order takes the title's
  side as the order's; and the title is never the body's side, so a title alone leaves the
  text without a side (qa-lat-14: "US LT BREAST TARGETED" over findings with no side).
- ``textLateralityContradiction``: the impression puts a finding on one side of a paired
  structure and the findings section puts the same finding of the same structure only
  on the other side. The indication is the impression's side.
- ``textLateralityMissing``: a lateralised order (or title) whose report body states no
  side and whose title does not contradict it. No indication and no evidence, as RI does.
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
_TITLE_SECTIONS = frozenset({"EXAM"})
# The title is the header's line, or the line after a header standing alone ("EXAM:\nXR
# KNEE LEFT"); text after it in the same section, without a header of its own, is body.
_TITLE_LINE = re.compile(r"[^:\r\n]*:[ \t]*(?:\r\n|\r|\n)?[ \t]*[^\r\n]*")
_FOUR_WORDS = re.compile(r"(?:\s*[-A-Za-z]+){0,4}")
# "left-sided sixth and seventh ribs": "-sided" belongs to the side word, not to the words
# between it and the part.
_SIDED = re.compile(r"\s*-?\s*sided\b", re.IGNORECASE)
# A part said to be left out of the exam ("the right hip is not included", "left knee not
# imaged"): its side is not the exam's.
_NOT_IMAGED = re.compile(
    r"\s+(?:(?:was|were|is|are|has|have)\s+(?:been\s+)?)?not\s+(?:been\s+)?"
    r"(?:imaged|included|examined|evaluated|scanned|studied)\b", re.IGNORECASE)
_CPT_MODIFIER = re.compile(r"-\s*(LT|RT)\b", re.IGNORECASE)
# A lone L/R is a side only at the end of an order text or in parentheses ("KNEE L",
# "HIP (R)"), or right after the paired part it qualifies ("WRIST L PA/LAT", "FOOT L 3V");
# elsewhere it is usually part of a name ("L SPINE").
_LONE_LETTER = re.compile(r"(?:\(\s*([LR])\s*\)|\b([LR])\s*$)")
# After a view ("PA/L", "AP & L", "PA and L") a lone L is the lateral view, not the left side:
# "XR CHEST PA/L" is a two-view chest radiograph.
_VIEW_BEFORE = re.compile(r"\b(?:PA|AP|OBL|OBLIQUE|FRONTAL)\s*(?:/|&|\+|,|\band\b)?\s*$", re.IGNORECASE)


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
    order_side, order_part, sided = _order_laterality(ctx.ordered_procedures, vocab)
    titles = _titles(ctx)
    compared = titles
    if not sided and titles:
        # The request's order names no side (or there is none): the title names the exam.
        title_side, title_part, _ = _side_of_texts([ctx.text[lo:hi] for lo, hi in titles], vocab)
        # Only a title naming a paired part is a sided exam ("XR CHEST PA/L" is a view).
        if title_side is not None and title_part is not None:
            order_side, order_part, compared = title_side, order_part or title_part, []
    if order_side in _OPPOSITE:
        # The body's sides are read only when it states one (most reports state none).
        stated = _side_stated(ctx, vocab, titles)
        mismatch = _order_mismatch(ctx, vocab, order_side, order_part, compared, titles, stated)
        if mismatch:
            inferences.extend(mismatch)
        elif not stated:
            inferences.append(LateralityDiscrepancyInference(discrepancy_type="textLateralityMissing"))
    inferences.extend(_contradictions(ctx, vocab))
    return inferences


def _side_stated(ctx: AnalysisContext, vocab: _Vocab, titles: list[tuple[int, int]]) -> bool:
    """A side word in the body of the report: a side named only for an earlier study
    ("COMPARISON: Left wrist radiographs") is not this exam's, while the side of the
    complaint ("INDICATION: Right wrist pain") usually is; the exam title restates the
    order and says nothing of what the report describes."""
    any_side, folded = ctx.folded(vocab.any_side)
    return any(section_name_at(ctx, m.start()) != "COMPARISON" and not _inside(m.start(), titles)
               for m in any_side.finditer(folded))


def _titles(ctx: AnalysisContext) -> list[tuple[int, int]]:
    """The spans of the exam titles ("EXAM: CT RT WRIST WO"), header included."""
    out = []
    for block in section_blocks(ctx):
        if block.name in _TITLE_SECTIONS:
            line = _TITLE_LINE.match(ctx.text, block.start, block.end)
            if line is not None:
                out.append((block.start, line.end()))
    return out


def _inside(offset: int, spans: list[tuple[int, int]]) -> bool:
    return any(lo <= offset < hi for lo, hi in spans)


# --- the order's side -----------------------------------------------------------------------

def _order_laterality(procedures: list[OrderedProcedure], vocab: _Vocab) -> tuple[
        str | None, str | None, bool]:
    sides: set[str] = set()
    texts: list[str] = []
    for procedure in procedures:
        texts.append(procedure.description or "")
        for coding in (procedure.code.coding if procedure.code and procedure.code.coding else []):
            texts.append(coding.display or "")
            if coding.code in vocab.order_table:
                sides.add(vocab.order_table[coding.code])
            m = _CPT_MODIFIER.search(coding.code or "")
            if m:
                sides.add("left" if m.group(1).upper() == "LT" else "right")
    return _side_of_texts(texts, vocab, sides)


def _side_of_texts(texts: list[str], vocab: _Vocab, sides: set[str] | None = None) -> tuple[
        str | None, str | None, bool]:
    """The one side and the first paired part that order texts (or exam titles) name (no
    side when they name none, both or bilateral), and whether they name any side at all."""
    sides = set() if sides is None else sides
    part: str | None = None
    for text in texts:
        sides.update(_text_sides(text, vocab))
        for group, pattern in vocab.parts:
            if part is None and pattern.search(text):
                part = group
    if "bilateral" in sides or sides >= {"left", "right"} or len(sides) != 1:
        return None, part, bool(sides)
    return sides.pop(), part, True


def _text_sides(text: str, vocab: _Vocab) -> set[str]:
    """The sides an order text or exam title names ("XR KNEE LT", "HIP (R)")."""
    sides = {side for side, pattern in vocab.order_words.items() if pattern.search(text)}
    text = text.strip()
    letters = [m for m in (_LONE_LETTER.search(text), _part_letter().search(text)) if m]
    for m in letters:
        letter = next(g for g in m.groups() if g)
        at = next(m.start(i) for i in range(len(m.groups()), 0, -1) if m.group(i))
        if letter == "L" and _VIEW_BEFORE.search(text, 0, at):
            continue
        sides.add("left" if letter == "L" else "right")
    return sides


@functools.cache
def _part_letter() -> re.Pattern[str]:
    """A lone L/R right after a paired part ("WRIST L PA/LAT"): the part's side."""
    words = [w for ws in knowledge("quality_laterality.json")["pairedParts"].values() for w in ws]
    parts = "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))
    return re.compile(rf"\b(?:{parts})\s+((?-i:[LR]))(?=\s|$|[,;)/])", re.IGNORECASE)


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


def _counts_for_exam(ctx: AnalysisContext, vocab: _Vocab, side: _Side,
                     titles: list[tuple[int, int]]) -> bool:
    if section_name_at(ctx, side.start) in vocab.excluded_sections or _inside(side.start, titles):
        return False
    if side.part_span and _NOT_IMAGED.match(ctx.text, side.part_span[1]):
        return False  # "The left knee was not imaged": no part of this exam
    s_start, s_end = sentence_bounds(ctx, side.start)
    cues, folded = ctx.folded(vocab.excluded_cues)
    return not cues.search(folded, s_start, s_end)


def _order_mismatch(ctx: AnalysisContext, vocab: _Vocab, order_side: str, order_part: str | None,
                    compared: list[tuple[int, int]], titles: list[tuple[int, int]],
                    body: bool) -> list[Inference]:
    """Sides opposite to the order's on its part: in the titles ``compared`` with it, and,
    when ``body`` (the body states a side), in the body (outside every title)."""
    if order_part is None:
        return []
    opposite = _OPPOSITE[order_side]
    wrong = _title_sides(ctx, vocab, compared, opposite, order_part)
    if body:
        wrong += [s for s in _sides(ctx, vocab) if s.side == opposite and order_part in s.parts
                  and _counts_for_exam(ctx, vocab, s, titles)]
    if not wrong:
        return []
    spans = tuple((s.start, s.end) for s in wrong)
    evidence_spans = spans + tuple(s.part_span for s in wrong if s.part_span)
    return [LateralityDiscrepancyInference(
        discrepancy_type="orderLateralityMismatch",
        laterality_indication=coded(vocab.codes[opposite], ctx, spans),
        extension=token_evidence(ctx, *evidence_spans) or None,
    )]


def _title_sides(ctx: AnalysisContext, vocab: _Vocab, titles: list[tuple[int, int]],
                 side: str, order_part: str) -> list[_Side]:
    """Side words for ``side`` in exam titles that name the ordered part anywhere in the
    title ("XR KNEE LEFT 2 VIEWS": the part before the side)."""
    out: list[_Side] = []
    for lo, hi in titles:
        title = ctx.text[lo:hi]
        if side not in _text_sides(title, vocab):
            continue
        parts = {group for group, pattern in vocab.parts if pattern.search(title)}
        if order_part not in parts:
            continue
        words, folded = ctx.folded(vocab.text_words[side])
        found = [_Side(side, m.start(), m.end(), order_part, None, frozenset(parts))
                 for m in words.finditer(folded, lo, hi)]
        # A lone letter ("XR KNEE L") is no text side word: the title is the evidence.
        out.extend(found or [_Side(side, lo, hi, order_part, None, frozenset(parts))])
    return out


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
