"""Guidelines written wholly as data: where the finding is, what is read, what follows.

ri_contract §5.12. Every ``ri_engine/knowledge/guideline_*.json`` names its sources and
holds guidelines of one shape (Fleischner, TI-RADS, Bosniak and the ACR incidental
thyroid/adrenal/liver/pancreas papers keep their own code in guidance.py):

- ``finder`` - the clause a finding sits in: ``keywords`` (literal lower-case words one of
  which any match needs, or lists of them each contributing one: a cheap first test), ``anchor`` (the finding's words, its
  evidence), ``context`` (must also be in the clause), ``exclude`` (with ``excludeIgnoresDenied``,
  read without what the clause denies), ``exam`` /
  ``examExclude`` (the ordered procedure, or without one the report's first lines),
  ``requireAny`` (clause- or document-scope patterns, one of which must match),
  ``documentExclude`` (no finding of this guideline in a report with these words),
  ``maxAgeYears``, ``group`` (one finding per group and document). A negated anchor
  ("no adnexal mass"), or one after a history or other-experiencer cue of the clause
  ("mother with history of lung cancer"; cues from knowledge/context.json), is no finding.
- ``items`` - the information the guideline reads. ``options``: the first pattern found
  gives the value (``$0``: the words found) and a flag; ``numbers``: patterns with groups
  ``v`` (and ``u``, a unit of ``units``) give ``key`` a value in millimetres or days.
  ``scope``: clause, sentence, document or exam; ``negatable`` skips negated mentions;
  ``required`` items not found are missing when no rule applies; ``default`` is a flag set
  when nothing was found.
- ``size`` - the lesion's current size as a present item (``measure`` max or mean of the
  two largest dimensions; value key "size"); ``age`` - a YES/NO item and flags from the
  patient's age when no item gave them; the patient's sex gives ``sex_female``/``sex_male``.
- ``rules`` - in order; the first whose ``when`` flags ("!flag": must be absent),
  ``whenAny`` flags and ``ranges`` (``min``/``gt``/``max``/``lt`` per value key) hold
  gives the ranking, extra present items, proposals (guidance.py's proposal specs) and
  missing items. Without a rule: the required items not found are missing, and the
  ranking is "high" only for ``rankComplete`` guidelines with nothing missing (staging,
  ranked by how much of the required information the report holds).
- ``proposals: false`` - identifiers RI gives no proposals for (not marked * in
  ri_contract §5.12): the rules' proposals stay as reference and are not emitted.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from pathlib import Path
from typing import Any

from ..context import AnalysisContext
from ..knowledge import pattern as _rx
from ..models import PresentGuidanceInformation
from ..nlp.prefilter import Screen
from .guidance_findings import Lesion, clause_spans, guidance_item, lesion_at, size_info
from .quality_measures import ReportText, patient_age

_KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"

Guideline = dict[str, Any]
GuidelineResult = tuple[dict[str, str], list[PresentGuidanceInformation], list[dict[str, Any]], list[str], str]


@functools.cache
def guidelines() -> tuple[Guideline, ...]:
    out: list[Guideline] = []
    for path in sorted(_KNOWLEDGE.glob("guideline_*.json")):
        out.extend(json.loads(path.read_text(encoding="utf-8"))["guidelines"])
    return tuple(out)


@functools.cache
def rule_guideline(guideline_id: str) -> Guideline:
    return next(g for g in guidelines() if g["id"] == guideline_id)


@functools.cache
def _not_current_cue() -> re.Pattern[str]:
    """Forward cues of another experiencer or of history (knowledge/context.json, the NLP layer's)."""
    cues = json.loads((_KNOWLEDGE / "context.json").read_text(encoding="utf-8"))["cues"]
    terms = sorted({t for c in cues if c["category"] in ("other_experiencer", "historical")
                    and c["direction"] == "forward" for t in c["terms"]}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(t) for t in terms) + r")(?!\w)", re.IGNORECASE)


def exam_text(ctx: AnalysisContext) -> str:
    """The ordered procedure's words; without an order, the report's first lines."""
    words = [p.description or "" for p in ctx.ordered_procedures]
    words += [cd.display or "" for p in ctx.ordered_procedures if p.code for cd in (p.code.coding or [])]
    return " ".join(w for w in words if w) or ctx.text[:300]


def _any_keyword(words: list[Any] | None, text: Screen) -> bool:
    """Cheap necessary condition: one of the literal ``words`` occurs in the text (a list of
    lists: one word of every list)."""
    if not words:
        return True
    groups = words if isinstance(words[0], list) else [words]
    return all(any(text.holds(word) for word in group) for group in groups)


def _report_words(ctx: AnalysisContext) -> Screen:
    """The report lower-cased, asked for keywords; guidelines share many, each is sought once."""
    words: Screen | None = ctx.layers.get("guidance_rules.words")
    if words is None:
        words = ctx.layers["guidance_rules.words"] = Screen(ctx.text, str.lower)
    return words


def applies(guideline: Guideline, ctx: AnalysisContext) -> bool:
    """The guideline's exam or report condition (``applyWhen``, prefiltered by ``applyKeywords``)."""
    when = guideline.get("applyWhen")
    if when is None:
        return True
    exam = exam_text(ctx)
    if not _any_keyword(guideline.get("applyKeywords"), Screen(f"{exam}\n{ctx.text}", str.lower)):
        return False
    return bool(_rx(when).search(exam) or _rx(when).search(ctx.text))


# --- finding the findings --------------------------------------------------------------------

def _finder_applies(finder: dict[str, Any], ctx: AnalysisContext, words: Screen, exam: str,
                    age: int | None) -> bool:
    limit = finder.get("maxAgeYears")
    if limit is not None and age is not None and age > limit:
        return False
    if not _any_keyword(finder.get("keywords"), words):
        return False
    if finder.get("exam") and not _rx(finder["exam"]).search(exam):
        return False
    if finder.get("examExclude") and _rx(finder["examExclude"]).search(exam):
        return False
    if not finder.get("documentExclude"):
        return True
    return not ctx.spans(_rx(finder["documentExclude"]))  # a whole-report scan, shared


# A denial and what it covers, up to the end of the clause or a word that ends its scope
# ("without septations or solid components and with no internal vascularity").
_DENIED = re.compile(
    r"\b(?:no|not|without|absence\s+of|free\s+of|negative\s+for|lacks?|lacking)\b"
    r"[^.;:]*?(?=\bbut\b|\bhowever\b|\band\s+(?:an?|with|the)\b|[.;:]|$)",
    re.IGNORECASE)


def _required_context(finder: dict[str, Any], ctx: AnalysisContext, clause: str) -> bool:
    if finder.get("context") and not _rx(finder["context"]).search(clause):
        return False
    if finder.get("exclude"):
        # "simple cyst without septations or solid components": with
        # ``excludeIgnoresDenied`` the features a clause denies do not count.
        read = _DENIED.sub(" ", clause) if finder.get("excludeIgnoresDenied") else clause
        if _rx(finder["exclude"]).search(read):
            return False
    needs = finder.get("requireAny")
    return not needs or any(_rx(n["pattern"]).search(clause if n["scope"] == "clause" else ctx.text) for n in needs)


def find_rule_lesions(ctx: AnalysisContext, report: ReportText, *, include_history: bool,
                      taken: set[tuple[int, int]]) -> list[tuple[Lesion, Guideline]]:
    """Findings of the data-defined guidelines, in text order, outside the ``taken`` clauses.

    Each active guideline's anchor is searched once over the whole report; a clause then
    weighs, guideline by guideline, the first anchor match inside it.
    """
    exam, age, words = exam_text(ctx), patient_age(ctx), _report_words(ctx)
    active = [g for g in guidelines() if "finder" in g and _finder_applies(g["finder"], ctx, words, exam, age)]
    found: list[tuple[Lesion, Guideline]] = []
    if not active:
        return found
    anchors: list[tuple[int, int, int]] = []
    for rank, guideline in enumerate(active):
        # A whole-report scan; the organ-injury guidelines share one anchor.
        anchors += [(start, end, rank) for start, end in ctx.spans(_rx(guideline["finder"]["anchor"]))]
    anchors.sort()
    starts = [a[0] for a in anchors]
    groups_done: set[str] = set()
    for sentence in report.sentences:
        if sentence.history and not include_history:
            continue
        first = bisect.bisect_left(starts, sentence.start)
        if first == len(starts) or starts[first] >= sentence.end:
            continue  # no anchor in the sentence, so none in its clauses
        for span in clause_spans(sentence.start, sentence.text):
            first = bisect.bisect_left(starts, span[0])
            inside = [a for a in anchors[first:bisect.bisect_left(starts, span[1])] if a[1] <= span[1]]
            if not inside or any(lo < span[1] and span[0] < hi for lo, hi in taken):
                continue
            hit = _first_finding(ctx, report, sentence, span, inside, active, groups_done)
            if hit is not None:
                found.append(hit)
    return found


def _first_finding(ctx: AnalysisContext, report: ReportText, sentence: Any, span: tuple[int, int],
                   inside: list[tuple[int, int, int]], active: list[Guideline],
                   groups_done: set[str]) -> tuple[Lesion, Guideline] | None:
    clause = ctx.text[span[0]:span[1]]
    for start, end, rank in sorted(inside, key=lambda a: (a[2], a[0])):
        guideline = active[rank]
        finder = guideline["finder"]
        if finder.get("group") in groups_done or not _required_context(finder, ctx, clause):
            continue
        if report.negated(sentence, start, end) or _not_current_cue().search(ctx.text, span[0], start):
            continue
        if finder.get("group"):
            groups_done.add(finder["group"])
        return lesion_at(ctx, guideline["id"], (start, end), span, (sentence.start, sentence.end)), guideline
    return None


# --- reading the information -----------------------------------------------------------------

def _span(ctx: AnalysisContext, lesion: Lesion, scope: str) -> tuple[int, int]:
    if scope == "clause":
        return lesion.clause
    if scope == "sentence":
        return lesion.sentence
    return 0, len(ctx.text)


def _search(ctx: AnalysisContext, report: ReportText, lesion: Lesion, item: dict[str, Any],
            pattern: str) -> re.Match[str] | None:
    rx = _rx(pattern)
    scope = item.get("scope", "clause")
    if scope == "exam":
        return rx.search(exam_text(ctx))
    start, end = _span(ctx, lesion, scope)
    if scope == "document" and not ctx.may_match(rx):
        return None  # most whole-report items name words the report lacks: no scan
    if not item.get("negatable"):
        return rx.search(ctx.text, start, end)
    for sentence in report.sentences:
        if sentence.end <= start or sentence.start >= end:
            continue
        for match in rx.finditer(ctx.text, max(start, sentence.start), min(end, sentence.end)):
            if not report.negated(sentence, match.start(), match.end()):
                return match
    return None


def _words(match: re.Match[str]) -> str:
    return " ".join(match.group(0).split()).upper()


def _read_item(ctx: AnalysisContext, report: ReportText, lesion: Lesion, item: dict[str, Any],
               flags: set[str], values: dict[str, float]) -> str | None:
    for option in item.get("options", []):
        match = _search(ctx, report, lesion, item, option["pattern"])
        if match is not None:
            value = _words(match) if option["value"] == "$0" else option["value"]
            flags.add(option.get("flag", value.lower()))
            return value
    for pattern in item.get("numbers", []):
        match = _search(ctx, report, lesion, item, pattern)
        if match is not None:
            groups = match.groupdict()
            unit = (groups.get("u") or item.get("unit", "")).lower()
            scale = item.get("units", {}).get(unit, 1)
            values[item["key"]] = float(groups["v"].replace(",", "")) * scale
            return " ".join(x for x in (groups["v"], unit.upper()) if x)
    return None


def _size(lesion: Lesion, measure: str) -> float | None:
    if not lesion.sizes:
        return None
    dims = sorted(lesion.sizes[0].values_mm, reverse=True)
    return round((dims[0] + dims[1]) / 2, 1) if measure == "mean" and len(dims) > 1 else dims[0]


def _holds(rule: dict[str, Any], flags: set[str], values: dict[str, float]) -> bool:
    for flag in rule.get("when", []):
        if (flag[1:] in flags) if flag.startswith("!") else (flag not in flags):
            return False
    if rule.get("whenAny") and not flags.intersection(rule["whenAny"]):
        return False
    for key, bounds in rule.get("ranges", {}).items():
        value = values.get(key)
        if value is None:
            return False
        if value < bounds.get("min", value) or value > bounds.get("max", value):
            return False
        if ("gt" in bounds and value <= bounds["gt"]) or ("lt" in bounds and value >= bounds["lt"]):
            return False
    return True


def evaluate_rules(ctx: AnalysisContext, guideline: Guideline, lesion: Lesion, report: ReportText) -> GuidelineResult:
    """Identifier, present information, proposal specs, missing information and ranking."""
    flags: set[str] = set()
    values: dict[str, float] = {}
    present: list[PresentGuidanceInformation] = []
    not_found: list[str] = []
    size_spec = guideline.get("size")
    if size_spec:
        size = _size(lesion, size_spec.get("measure", "max"))
        if size is None:
            if size_spec.get("required"):
                not_found.append(size_spec["item"])
        else:
            values["size"] = size
            present.append(size_info(lesion, size_spec["item"]))
    for item in guideline.get("items", []):
        value = _read_item(ctx, report, lesion, item, flags, values)
        if value is None:
            if item.get("required"):
                not_found.append(item["item"])
            if item.get("default"):
                flags.add(item["default"])
        elif not item.get("silent"):
            present.append(guidance_item(item["item"], value))
    _age_and_sex(ctx, guideline.get("age"), flags, present)
    identifier = guideline["identifier"]
    for rule in guideline.get("rules", []):
        if _holds(rule, flags, values):
            present += [guidance_item(name, value) for name, value in rule.get("present", [])]
            proposals = rule.get("proposals", []) if guideline.get("proposals", True) else []
            return identifier, present, proposals, rule.get("missing", []), rule.get("rank", "low")
    rank = "high" if guideline.get("rankComplete") and not not_found else "low"
    return identifier, present, [], not_found, rank


def _age_and_sex(ctx: AnalysisContext, spec: dict[str, Any] | None, flags: set[str],
                 present: list[PresentGuidanceInformation]) -> None:
    details = ctx.patient.details
    if details is not None and details.sex:
        flags.add(f"sex_{details.sex}")
    if spec is None or flags.intersection(spec.get("unless", [])):
        return
    age = patient_age(ctx)
    if age is not None:
        older = age >= spec["years"]
        present.append(guidance_item(spec["item"], "YES" if older else "NO"))
        flags.add(spec["over"] if older else spec["under"])
