"""completeOrderDiscrepancy and limitedOrderDiscrepancy for ultrasound orders.

The exam tables live in ``knowledge/quality_order_exams.json``: which body parts (and,
for the female pelvis, which measurements) a *complete* ultrasound must document, per
exam (abdomen, pelvis female/male, retroperitoneum with two accepted options, breast),
and how orders map to exams: CPT codes 76700/76705, 76856/76857, 76770/76775,
76641/76642, the LOINC codes RI was seen using, and order descriptions ("US PELVIS
COMPLETE", "US ABDOMEN LIMITED"; a scope word in the description wins over the code).
The pelvic exam is chosen by ``details.sex``; without it, by which sex-specific organs
the text names.

- complete order: one inference listing the required parts the text never names
  (``missingBodyParts``) and the required measurements it never gives
  (``missingBodyPartMeasurements``, a part counts as measured when a size follows it in
  its sentence before another required part is named). Nothing when all is there. For
  an exam with two options the option missing least is reported.
- limited order: one inference when the text nevertheless documents every part of the
  corresponding complete exam (``presentBodyParts``), with the required measurements it
  gives (``presentBodyPartMeasurements``).

Parts count wherever the report describes the exam (history, comparison, technique and
title sections do not). ``orderType`` is normalised to the LOINC code RI returns
(24558-9 US Abdomen, 24869-0 US Pelvis); exams without an observed LOINC code keep the
CPT code. Evidence: every mention of the required parts. Parts without a checked RadLex
code are reported by display text only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from ..context import AnalysisContext
from ..models import (
    RADLEX, CodeableConcept, Coding, CompleteOrderDiscrepancyInference, Extension, Inference,
    LimitedOrderDiscrepancyInference, concept,
)
from .quality_text import knowledge, phrase_pattern, section_name_at, sentence_bounds, token_evidence

_NOT_EXAM = frozenset({"HISTORY", "COMPARISON", "TECHNIQUE", "EXAM"})
# A side word that closes a label of a paired organ: "Renal: right 10.2 cm, left 10.6 cm",
# "kidney stone on the left" (a side followed by a size, punctuation or the end), not a
# side of another structure ("renal cysts; left adrenal nodule").
_LABEL_SIDE = re.compile(r"\b(right|left)\b(?=\s*(?:[:=,;.)]|\d|$|side\b))", re.IGNORECASE)
# "a 2 cm fibroid", "an 8 mm cyst": a size written before another noun measures that thing,
# not the organ the sentence is about.
_OTHER_THING = re.compile(r"\b(?:a|an)\s+(?:(?:approximately|small|large|tiny|new)\s+)?$", re.IGNORECASE)
# "The uterus is anteverted. It measures 8 x 4 x 5 cm.": the next sentence's size, when it
# opens with a pronoun and names no part, measures the part before it.
_PRONOUN_OPENING = re.compile(r"\s*(?:it|this)\b", re.IGNORECASE)
_SIZE = re.compile(
    r"\d+(?:\.\d+)?(?:\s*(?:x|by|×)\s*\d+(?:\.\d+)?)*\s*-?\s*(?:cm|mm|centimeters?|millimeters?)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class _Order:
    exam: str        # key in "exams"
    scope: str       # complete / limited
    cpt: dict[str, str] | None


@dataclass(frozen=True)
class _Mention:
    part: str
    start: int
    end: int


def infer(ctx: AnalysisContext) -> list[Inference]:
    order = _order(ctx)
    if order is None:
        return []
    data = knowledge("quality_order_exams.json")
    exam = data["exams"][order.exam]
    mentions = _mentions(ctx)
    present = {m.part for m in mentions}
    measured = _measured(ctx, mentions)
    pathology = _has_urinary_pathology(ctx)
    order_type = _order_type(exam, order, data)

    def satisfied(option: dict[str, Any]) -> bool:
        return set(option["parts"]) <= present and (
            not option.get("requiresUrinaryPathology") or pathology)

    options = exam["options"]
    if order.scope == "limited":
        for option in options:
            if satisfied(option):
                parts = option["parts"]
                return [LimitedOrderDiscrepancyInference(
                    order_type=order_type,
                    present_body_parts=[_part_concept(p, data) for p in parts],
                    present_body_part_measurements=[
                        _part_concept(p, data) for p in option.get("measured", []) if p in measured],
                    extension=_evidence(ctx, mentions, parts),
                )]
        return []
    if any(satisfied(o) and set(o.get("measured", [])) <= measured for o in options):
        return []
    # The option with the fewest gaps; on a tie the later (simpler) option.
    best = min(reversed(options), key=lambda o: len(set(o["parts"]) - present)
               + len(set(o.get("measured", [])) - measured))
    missing = [p for p in best["parts"] if p not in present]
    unmeasured = [p for p in best.get("measured", []) if p not in measured]
    if not missing and not unmeasured:
        return []
    return [CompleteOrderDiscrepancyInference(
        order_type=order_type,
        missing_body_parts=[_part_concept(p, data) for p in missing],
        missing_body_part_measurements=[_part_concept(p, data) for p in unmeasured],
        extension=_evidence(ctx, mentions, best["parts"]),
    )]


# --- the order ------------------------------------------------------------------------------

@functools.cache
def _order_patterns() -> dict[str, Any]:
    data = knowledge("quality_order_exams.json")
    return {
        "us": phrase_pattern(data["ultrasoundWords"]),
        "scope": {k: phrase_pattern(v) for k, v in data["descriptionScope"].items()},
        "exams": {k: phrase_pattern(v["descriptionWords"]) for k, v in data["exams"].items()},
        "codes": {c["code"]: c for c in data["codes"]},
        "cpt": {(c["exam"], c["scope"]): c for c in data["codes"] if c["system"] == "cpt"},
    }


def _order(ctx: AnalysisContext) -> _Order | None:
    pats = _order_patterns()
    for procedure in ctx.ordered_procedures:
        codings = procedure.code.coding if procedure.code and procedure.code.coding else []
        texts = " ; ".join([procedure.description or ""] + [c.display or "" for c in codings])
        exam = scope = None
        for coding in codings:
            known = pats["codes"].get((coding.code or "").strip())
            if known:
                exam, scope = known["exam"], known["scope"]
                break
        if exam is None and pats["us"].search(texts):
            named = {k.split("_")[0] for k, p in pats["exams"].items() if p.search(texts)}
            if len(named) == 1:
                exam = named.pop()
        if exam is None:
            continue
        for name in ("limited", "complete"):
            if pats["scope"][name].search(texts):
                scope = name
                break
        if scope is None:
            continue
        if exam == "pelvis":
            sex = _pelvic_sex(ctx)
            if sex is None:
                continue
            exam = f"pelvis_{sex}"
        base = exam.split("_")[0]
        return _Order(exam, scope, pats["cpt"].get((base, scope)))
    return None


def _pelvic_sex(ctx: AnalysisContext) -> str | None:
    details = ctx.patient.details
    if details and details.sex in ("male", "female"):
        return details.sex
    parts = {m.part for m in _mentions(ctx)}
    female = parts & {"uterus", "left_ovary", "right_ovary", "endometrium"}
    male = parts & {"prostate", "seminal_vesicle"}
    if female and not male:
        return "female"
    if male and not female:
        return "male"
    return None


def _order_type(exam: dict[str, Any], order: _Order, data: dict[str, Any]) -> CodeableConcept:
    if exam.get("orderType"):
        entry = exam["orderType"]
        return concept(entry["system"], entry["code"], entry["display"])
    cpt = order.cpt or {}
    return concept(data["cptSystem"], cpt.get("code", ""), cpt.get("display"))


# --- parts in the text ----------------------------------------------------------------------

@functools.cache
def _part_patterns() -> tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]:
    data = knowledge("quality_order_exams.json")
    pats = [((key,), phrase_pattern(p["patterns"])) for key, p in data["parts"].items()]
    pats += [(tuple(parts), phrase_pattern([phrase]))
             for phrase, parts in data["pairedPlurals"].items()]
    # A paired organ without a side ("Renal:", "kidney"): its parts come from the sides
    # that follow it in the sentence (``_label_sides``); the key is the label's name.
    pats += [(("label:" + key,), phrase_pattern(entry["words"]))
             for key, entry in data["sidedLabels"].items()]
    return tuple(pats)


def _label_sides(ctx: AnalysisContext, label: str, end: int) -> tuple[str, ...]:
    entry = knowledge("quality_order_exams.json")["sidedLabels"][label]
    _, s_end = sentence_bounds(ctx, end)
    sides = {m.group(1).lower() for m in _LABEL_SIDE.finditer(ctx.text, end, s_end)}
    return tuple(entry[side] for side in ("left", "right") if side in sides)


def _mentions(ctx: AnalysisContext) -> list[_Mention]:
    found: list[_Mention] = []
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    for parts, pattern in _part_patterns():
        for m in pattern.finditer(ctx.text):
            spans.append((m.start(), m.end(), parts))
    # A longer phrase wins over a shorter one inside it ("left kidney" over "kidney").
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    last_end = -1
    for start, end, parts in spans:
        if start < last_end:
            continue
        last_end = end
        if section_name_at(ctx, start) in _NOT_EXAM:
            continue
        if parts[0].startswith("label:"):
            parts = _label_sides(ctx, parts[0][len("label:"):], end)
        found.extend(_Mention(p, start, end) for p in parts)
    return found


def _measured(ctx: AnalysisContext, mentions: list[_Mention]) -> set[str]:
    """Parts followed by a size in their sentence before the next part is named."""
    measured: set[str] = set()
    starts = sorted({m.start for m in mentions})
    for mention in mentions:
        _, s_end = sentence_bounds(ctx, mention.start)
        later = [s for s in starts if s > mention.start]
        stop = min([s_end] + later[:1])
        if _organ_size(ctx.text, mention.end, stop):
            measured.add(mention.part)
        elif stop == s_end and _pronoun_size(ctx, s_end, later):
            measured.add(mention.part)
    return measured


def _organ_size(text: str, start: int, stop: int) -> bool:
    return any(not _OTHER_THING.search(text, max(start, m.start() - 30), m.start())
               for m in _SIZE.finditer(text, start, stop))


def _pronoun_size(ctx: AnalysisContext, end: int, later: list[int]) -> bool:
    next_start = end
    while next_start < len(ctx.text) and ctx.text[next_start] in " \t.;":
        next_start += 1
    if not _PRONOUN_OPENING.match(ctx.text, next_start) or next_start >= len(ctx.text):
        return False
    _, next_end = sentence_bounds(ctx, next_start)
    if any(next_start <= s < next_end for s in later):
        return False
    return _organ_size(ctx.text, next_start, next_end)


def _has_urinary_pathology(ctx: AnalysisContext) -> bool:
    words = knowledge("quality_order_exams.json")["urinaryPathologyWords"]
    pattern = phrase_pattern(words)
    return any(section_name_at(ctx, m.start()) not in _NOT_EXAM for m in pattern.finditer(ctx.text))


def _part_concept(part: str, data: dict[str, Any]) -> CodeableConcept:
    entry = data["parts"][part]
    if entry["radlex"]:
        return concept(RADLEX, entry["radlex"], entry["display"])
    return CodeableConcept(coding=[Coding(system=RADLEX, display=entry["display"])],
                           text=entry["display"])


def _evidence(ctx: AnalysisContext, mentions: list[_Mention], parts: list[str]) -> list[Extension] | None:
    spans = sorted({(m.start, m.end) for m in mentions if m.part in parts})
    return token_evidence(ctx, *spans) or None
