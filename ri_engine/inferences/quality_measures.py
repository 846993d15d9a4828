"""``qualityMeasure``: MIPS / ACR QCDR compliance of one report (ri_contract §5.13).

Which measures: exactly the ``qualityMeasureOptions.measureTypes`` of the request, in that
order (RI's output order). Without the option nothing is evaluated: RI only searches the
measures a client configures, and guessing a set would report measures nobody asked for.
Every type of the contract's QualityMeasureType enum has a definition; an unknown type
gives nothing.

Per measure (definitions in ``ri_engine/knowledge/quality_measures.json``):
1. trigger absent (wrong exam, patient too young, no qualifying finding) -> ``notEligible``;
2. performance criteria present -> ``performanceMet`` (criteria: what was found);
3. a documented medical/system reason -> ``denominatorException`` (criteria: the reasons);
4. otherwise ``performanceNotMet`` (criteria: whatever partial documentation was found).
Inverse measures (MIPS 405/406) count a follow-up recommendation for a finding that needs
none as the failure, so steps 2-4 are mirrored.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context import AnalysisContext
from ..knowledge import pattern as _rx
from ..models import Inference, QualityMeasureInference
from .age_mismatch import stated_age_years

# The whitespace after ".", "!" or "?", or a line break: ``(?<=[.!?])\s+|\n`` written to
# start with the one whitespace character every match starts with, so that ``re`` skips
# straight to whitespace instead of trying the look-behind at every character.
_SENTENCE_END = re.compile(r"\s(?:(?<=[.!?]\s)\s*|(?<=\n))")
_HEADER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&-]{1,40}):", re.MULTILINE)
_SIZE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*(?:x|×|by)\s*(\d+(?:\.\d+)?))?(?:\s*(?:x|×|by)\s*(\d+(?:\.\d+)?))?"
    r"\s*-?\s*(mm|cm|millimet(?:er|re)s?|centimet(?:er|re)s?)\b", re.IGNORECASE)
_SUBCENTIMETER = re.compile(r"\bsub-?centimet(?:er|re)\b|\btiny\b", re.IGNORECASE)


@functools.cache
def _table() -> dict[str, Any]:
    path = Path(__file__).resolve().parent.parent / "knowledge" / "quality_measures.json"
    return json.loads(path.read_text(encoding="utf-8"))


def supported_measure_types() -> list[str]:
    return list(_table()["measures"])


def measure_types_for(denominator: str) -> list[str]:
    """The measure types (``mips364``, ...) whose inferences carry this denominator."""
    return [name for name, measure in _table()["measures"].items()
            if measure.get("denominator") == denominator]


def measure_definition(measure_type: str) -> dict[str, Any]:
    """One measure of knowledge/quality_measures.json (its trigger, criteria, exceptions)."""
    return _table()["measures"][measure_type]  # type: ignore[no-any-return]


@dataclass(slots=True)  # not frozen: dozens per report, and nothing changes them
class _Sentence:
    start: int
    end: int
    text: str
    history: bool  # inside INDICATION / HISTORY / COMPARISON


class ReportText:
    """The report split into sentences, with section-aware negation checks."""

    def __init__(self, text: str) -> None:
        self.text = text
        table = _table()
        history_rx = _rx(rf"^(?:{table['historySections']})")
        headers = [(m.start(), bool(history_rx.search(m.group(1).strip()))) for m in _HEADER.finditer(text)]
        self.sentences: list[_Sentence] = []
        pos, header, history = 0, 0, False
        spans = [match.span() for match in _SENTENCE_END.finditer(text)]
        for end, after in [*spans, (len(text), len(text))]:
            while header < len(headers) and headers[header][0] <= pos:  # the last header at or before
                history = headers[header][1]
                header += 1
            segment = text[pos:end]
            if segment and not segment.isspace():
                self.sentences.append(_Sentence(pos, end, segment, history))
            pos = after
        neg = table["negation"]
        self._before = _rx(neg["before"])
        self._not_negation = _rx(neg["notNegation"])
        self._after = _rx(neg["after"])
        self._other_person = _rx(neg["otherPerson"])

    def negated(self, sentence: _Sentence, start: int, end: int) -> bool:
        """The sentence denies the span, or gives it to someone else ("mother with history of")."""
        before = sentence.text[: start - sentence.start]
        after = sentence.text[end - sentence.start:]
        if self._before.search(before) and not self._not_negation.search(before):
            return True
        if self._other_person.search(before):
            return True
        return bool(self._after.search(after))

    def find(self, patterns: list[str], *, negatable: bool = False, skip_history: bool = False) -> bool:
        for sentence in self.sentences:
            if skip_history and sentence.history:
                continue
            for pattern in patterns:
                for match in _rx(pattern).finditer(sentence.text):
                    if negatable and self.negated(sentence, sentence.start + match.start(),
                                                  sentence.start + match.end()):
                        continue
                    return True
        return False

    def size_trigger(self, rule: dict[str, Any]) -> bool:
        """Organ, lesion and a size within the limit in one (non-history) sentence."""
        limit = float(rule["maxMm"])
        also = rule.get("alsoRequire")
        if also and rule.get("alsoRequireScope") == "document" and not _rx(also).search(self.text):
            return False
        for sentence in self.sentences:
            if sentence.history:
                continue
            organ = _rx(rule["organ"]).search(sentence.text)
            lesion = _rx(rule["lesion"]).search(sentence.text)
            if not organ or not lesion:
                continue
            if self.negated(sentence, sentence.start + lesion.start(), sentence.start + lesion.end()):
                continue
            if also and rule.get("alsoRequireScope") != "document" and not _rx(also).search(sentence.text):
                continue
            sizes = [_largest_mm(m) for m in _SIZE.finditer(sentence.text)]
            if not sizes and _SUBCENTIMETER.search(sentence.text) and limit >= 10:
                sizes = [9.0]
            if not sizes:
                continue
            size = max(sizes)
            if size < limit or (rule.get("inclusive") and size <= limit):
                return True
        return False


@functools.lru_cache(maxsize=4)
def report_text(text: str) -> ReportText:
    """The sentences of ``text``, shared by the builders that read them (guidance, measures)."""
    return ReportText(text)


def _largest_mm(match: re.Match[str]) -> float:
    values = [float(v) for v in match.groups()[:3] if v]
    scale = 10.0 if match.group(4).lower().startswith("c") else 1.0
    return max(values) * scale


_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")


def parse_date(value: str | None) -> dt.date | None:
    """A date from RI's lenient forms ("2014-2-20T00:00:00", "1939-05-25")."""
    match = _DATE.match(value or "")
    if match is None:
        return None
    try:
        return dt.date(*(int(g) for g in match.groups()))
    except ValueError:
        return None


def patient_age(ctx: AnalysisContext) -> int | None:
    """Age in whole years at the reference date, or None when it cannot be known.

    ``birthDate`` decides when there is one (a text that disagrees is an ageMismatch);
    without it, the age the report states for the patient ("72-year-old", "a
    sixty-five-year-old", "3-week-old", "newborn"), read as ageMismatch reads it."""
    details = ctx.patient.details
    born = parse_date(details.birth_date) if details else None
    ref = ctx.reference_date
    if born is None or ref is None:
        return stated_age_years(ctx)
    return ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))


def _exam_strings(ctx: AnalysisContext) -> list[str]:
    out = []
    for proc in ctx.ordered_procedures:
        if proc.description:
            out.append(proc.description)
        for cd in (proc.code.coding or []) if proc.code else []:
            if cd.display:
                out.append(cd.display)
    return out


def _exam_matches(ctx: AnalysisContext, measure: dict[str, Any]) -> bool:
    exam = measure.get("exam")
    if not exam:
        return True
    # The order says what was performed; a report without an order is read whole.
    strings = _exam_strings(ctx) or [ctx.text]
    if not any(all(_rx(p).search(s) for p in exam) for s in strings):
        return False
    exclude = measure.get("examExclude") or []
    return not any(_rx(p).search(s) for s in strings for p in exclude)


def _triggered(ctx: AnalysisContext, report: ReportText, measure: dict[str, Any]) -> bool:
    if not _exam_matches(ctx, measure):
        return False
    min_age = measure.get("minAge")
    age = patient_age(ctx)
    if min_age is not None and age is not None and age < min_age:
        return False
    triggers = measure.get("trigger") or []
    size_rules = measure.get("sizeTriggers") or []
    if not triggers and not size_rules:
        return True
    if triggers and report.find(triggers, negatable=True,
                                skip_history=not measure.get("triggerInHistory")):
        return True
    return any(report.size_trigger(rule) for rule in size_rules)


def _found_criteria(ctx: AnalysisContext, report: ReportText, measure: dict[str, Any]) -> list[str]:
    found = []
    for criterion in measure.get("criteria", []):
        if criterion.get("scope") == "exam":
            strings = _exam_strings(ctx) or [ctx.text]
            hit = any(_rx(p).search(s) for p in criterion["patterns"] for s in strings)
        else:
            hit = report.find(criterion["patterns"], negatable=bool(criterion.get("negatable")))
        if hit:
            found.append(criterion["name"])
    return found


def _condition_holds(report: ReportText, condition: str | dict[str, Any]) -> bool:
    if isinstance(condition, str):
        return bool(_rx(condition).search(report.text))
    return report.find(condition["patterns"], negatable=bool(condition.get("negatable")))


def _required(report: ReportText, measure: dict[str, Any], names: list[str]) -> list[str]:
    conditions = measure.get("requireWhen") or {}
    return [n for n in names if n not in conditions or _condition_holds(report, conditions[n])]


def evaluate(ctx: AnalysisContext, measure_type: str, report: ReportText | None = None
             ) -> QualityMeasureInference | None:
    """One measure for one report; None when the type has no definition here."""
    measure = _table()["measures"].get(measure_type.lower())
    if measure is None:
        return None
    report = report or ReportText(ctx.text)
    denominator = measure["denominator"]
    if not _triggered(ctx, report, measure):
        return QualityMeasureInference(quality_measure_denominator=denominator, compliance_type="notEligible")
    found = _found_criteria(ctx, report, measure)
    satisfied = any(all(n in found for n in _required(report, measure, group)) for group in measure["met"])
    exceptions = [e["name"] for e in measure.get("exceptions", [])
                  if report.find(e["patterns"], negatable=bool(e.get("negatable")))]
    if measure.get("inverse"):
        if not satisfied:
            return QualityMeasureInference(quality_measure_denominator=denominator,
                                           compliance_type="performanceMet",
                                           quality_criteria=[measure["metCriterion"]])
        compliance, criteria = ("denominatorException", exceptions) if exceptions else ("performanceNotMet", found)
    elif satisfied:
        partial = {c["name"] for c in measure.get("criteria", []) if c.get("partial")}
        compliance, criteria = "performanceMet", [n for n in found if n not in partial]
    elif exceptions:
        compliance, criteria = "denominatorException", exceptions
    else:
        compliance, criteria = "performanceNotMet", found
    return QualityMeasureInference(quality_measure_denominator=denominator, compliance_type=compliance,
                                   quality_criteria=criteria or None)


def _options_measure_types(ctx: AnalysisContext) -> list[str]:
    options = ctx.configuration.inference_options
    if options is None or options.quality_measure_options is None:
        return []
    return list(options.quality_measure_options.measure_types)


def infer(ctx: AnalysisContext) -> list[Inference]:
    types = _options_measure_types(ctx)
    if not types:
        return []
    report = report_text(ctx.text)
    out: list[Inference] = []
    for measure_type in types:
        result = evaluate(ctx, measure_type, report)
        if result is not None:
            out.append(result)
    return out
