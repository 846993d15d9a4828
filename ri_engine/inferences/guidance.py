"""``guidance``: which guideline applies to a finding, what it needs, what it proposes.

ri_contract §5.12. For every live lesion (guidance_findings.py) one guideline is chosen by
organ and exam: pulmonary nodule -> Fleischner 2017 (RID50149), or Lung-RADS v2022
(RID50134) on a lung cancer screening CT; thyroid nodule on ultrasound -> ACR TI-RADS
(RID50503), elsewhere -> ACR incidental thyroid nodule (237495005); adrenal (237783006),
liver (300331000), pancreatic cyst (31258000) -> the ACR incidental-findings white papers;
kidney lesion (79131000119100) -> Bosniak 2019. Tables:
``ri_engine/knowledge/{fleischner_2017,tirads,bosniak_2019,incidental_findings,
guidance_procedures}.json``. The other identifiers of the contract (aortic aneurysm,
gallbladder, germinal matrix, lung and rectal staging, early pregnancy, adnexa, pituitary,
AAST organ injuries) and Lung-RADS are guidelines written wholly as data
(guidance_rules.py, ``knowledge/guideline_*.json``).

Proposals are follow-up recommendations with ``isOption`` true and no findings; dates
count from the document date, months that are whole years as calendar years and others
as 30-day months (+90/+180/+540 days: RI's arithmetic, ri_contract §5.12). ``ranking`` is
"high" for the guideline's most suspicious category, else "low". Information a proposal
depends on but the text lacks goes to ``missingGuidanceInformation``; then no proposals.
History sections count only with ``guidanceOptions.showGuidanceInHistory``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any

from ..context import AnalysisContext
from ..knowledge import pattern
from ..models import (
    FindingInference, FollowupRecommendationInference, GenericProcedureRecommendation,
    GuidanceInference, ImagingProcedure, ImagingProcedureRecommendation, Inference, Observation,
    Period, PresentGuidanceInformation, concept,
)
from .guidance_findings import (
    Lesion, find_lesions, guidance_item, observation, section_extension, size_info,
)
from .guidance_rules import Guideline, applies, evaluate_rules, exam_text, find_rule_lesions, rule_guideline
from .quality_measures import ReportText, measure_definition, parse_date, patient_age, report_text
from .scoring import find_scores

_KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"
_ULTRASOUND = re.compile(r"\b(?:US|ultrasound|sonograph\w*|sonogram|doppler)\b", re.IGNORECASE)
# A TI-RADS feature the sentence denies ("no microcalcifications", "not taller-than-wide").
_DENIED_FEATURE = re.compile(r"\b(?:no|not|without)\s+(?:[a-z-]+\s+){0,2}$", re.IGNORECASE)


@functools.cache
def _data(name: str) -> dict[str, Any]:
    return json.loads((_KNOWLEDGE / name).read_text(encoding="utf-8"))


def _cc(entry: dict[str, str]):  # type: ignore[no-untyped-def]
    return concept(entry["system"], entry["code"], entry["display"])


# --- dates and proposals ---------------------------------------------------------------------

def add_months(base: dt.date, months: int) -> dt.date:
    """RI's interval arithmetic: whole years are calendar years, other months 30 days."""
    if months % 12 == 0:
        year = base.year + months // 12
        try:
            return base.replace(year=year)
        except ValueError:  # 29 February in a common year
            return base.replace(year=year, day=28)
    return base + dt.timedelta(days=30 * months)


def _when(base: dt.date | None, spec: dict[str, Any],
          born: dt.date | None = None) -> tuple[str | None, Period | None]:
    """``months`` or ``days`` after the document date (after the birth date with ``"from":
    "birth"``): a point, or a [from, to] period. A period counted from birth starts no
    earlier than the document date, and one already over by then has no date."""
    offset = spec.get("months", spec.get("days"))
    if spec.get("from") == "birth":
        base, today = born, base
    else:
        today = None
    if offset is None or base is None:
        return None, None
    shift = ((lambda n: add_months(base, n)) if "months" in spec
             else (lambda n: base + dt.timedelta(days=n)))
    try:
        if isinstance(offset, list):
            start, end = shift(offset[0]), shift(offset[1])
            if today is not None:
                if end < today:
                    return None, None
                start = max(start, today)
            return None, Period(start=start.isoformat(), end=end.isoformat())
        at = shift(offset)
        if today is not None and at < today:
            return None, None
        return at.isoformat(), None
    except (OverflowError, ValueError):
        # A document dated within a guideline's interval of year 9999: no date to propose.
        return None, None


def _proposal(ctx: AnalysisContext, spec: dict[str, Any], organ: str) -> list[FollowupRecommendationInference]:
    procs = _data("guidance_procedures.json")
    proc = procs["procedures"][spec["modality"]]
    details = ctx.patient.details
    born = parse_date(details.birth_date) if details and spec.get("from") == "birth" else None
    at, period = _when(ctx.document_date, spec, born)
    if "generic" in proc:
        modalities: list[str | None] = [None]
    else:
        modalities = [proc["modality"]] + ([proc["alternative"]] if proc.get("alternative") else [])
    out = []
    for modality in modalities:
        if modality is None:
            recommended: Any = GenericProcedureRecommendation(
                code=_cc(procs["modalities"][proc["generic"]]), description="CONSULTATION (PROCEDURE)")
        else:
            anatomy_key = organ if proc["anatomy"] == "organ" else proc["anatomy"]
            recommended = ImagingProcedureRecommendation(imaging_procedures=[ImagingProcedure(
                modality=_cc(procs["modalities"][modality]), anatomy=_cc(procs["anatomy"][anatomy_key]))])
        out.append(FollowupRecommendationInference(
            effective_at=at, effective_period=period, findings=[], is_conditional=False, is_option=True,
            is_guideline=False, is_hedging=bool(spec.get("hedged")), recommended_procedure=recommended))
    return out


# --- shared pieces of guidance information ---------------------------------------------------

def _largest(lesion: Lesion) -> float | None:
    return max(lesion.sizes[0].values_mm) if lesion.sizes else None


def _in_range(size: float | None, rule: dict[str, Any]) -> bool:
    if size is None:
        return "minMm" not in rule and "maxMm" not in rule
    return rule.get("minMm", 0) <= size <= rule.get("maxMm", 1e9)


# --- guidelines ------------------------------------------------------------------------------

Result = tuple[dict[str, str], list[PresentGuidanceInformation], list[dict[str, Any]], list[str], str]


def fleischner(ctx: AnalysisContext, lesion: Lesion, text: str) -> Result:
    table = _data("fleischner_2017.json")
    present: list[PresentGuidanceInformation] = []
    if lesion.lobes:
        present.append(guidance_item("LOBE", *lesion.lobes))
    missing: list[str] = []
    kind = "solid"
    clause = ctx.text[lesion.clause[0]:lesion.clause[1]]
    for key, entry in table["nodule_types"].items():
        if pattern(entry["pattern"]).search(clause):
            kind = key
            present.append(guidance_item("NODULE TYPE", entry["value"]))
            break
    if lesion.sizes:
        present.append(size_info(lesion))
    else:
        missing.append("SIZE")
    risk = _smoking_risk(ctx, table, text)
    if risk:
        present.append(guidance_item("RISK LEVEL", f"{risk.upper()} RISK"))
    age = patient_age(ctx)
    if age is not None and age < table["minAge"]:
        present.append(guidance_item("PATIENT 35 YEARS OR OLDER", "NO"))
        return table["identifier"], present, [], missing, "low"
    excluded = _fleischner_excluded(ctx, table)
    if excluded:
        # Known cancer or immunosuppression: the guideline does not apply, nothing to propose.
        present.extend(guidance_item(name, "YES") for name in excluded)
        return table["identifier"], present, [], missing, "low"
    if missing:
        return table["identifier"], present, [], missing, "low"
    values = sorted(lesion.sizes[0].values_mm, reverse=True)
    # Fleischner: average of long and short axis, rounded to the nearest millimetre.
    size = float(int((values[0] + values[1]) / 2 + 0.5)) if len(values) > 1 else values[0]
    band = next(b for b in table["bands"] if _in_range(size, b))
    specs = table["table"][kind]["multiple" if lesion.plural else "single"][band["id"]]
    specs = [s for s in specs if risk is None or s["risk"] in ("both", risk)]
    return table["identifier"], present, specs, missing, band.get("rank", "low")


def _fleischner_excluded(ctx: AnalysisContext, table: dict[str, Any]) -> list[str]:
    """The patient groups Fleischner 2017 leaves out that the report states, by the names of
    the MIPS 364 exceptions that describe them (one definition for both; read once per report)."""
    cache: dict[str, list[str]] = ctx.layers.setdefault("guidance.fleischner_excluded", {})
    if "names" not in cache:
        rule = table["excludedWhen"]
        exceptions = measure_definition(rule["measure"])["exceptions"]
        report = report_text(ctx.text)
        cache["names"] = [e["name"] for e in exceptions if e["name"] in rule["exceptions"]
                          and report.find(e["patterns"], negatable=True)]
    return cache["names"]


def _smoking_risk(ctx: AnalysisContext, table: dict[str, Any], text: str) -> str | None:
    """The one risk level the report states, if exactly one (read once per report: the
    patterns scan the whole text, and a report may hold several nodules)."""
    cache: dict[str, str | None] = ctx.layers.setdefault("guidance.fleischner_risk", {})
    if text not in cache:
        risks = [level for level, rx in table["risk"].items() if _search_report(ctx, pattern(rx), text)]
        cache[text] = risks[0] if len(risks) == 1 else None
    return cache[text]


def _search_report(ctx: AnalysisContext, rx: re.Pattern[str], text: str) -> bool:
    """``rx`` found in ``text``; a whole-report search is screened and made once (``ctx.spans``)."""
    if text is not ctx.text:
        return bool(rx.search(text))
    return bool(ctx.spans(rx))


def tirads(ctx: AnalysisContext, lesion: Lesion, text: str) -> Result:
    table = _data("tirads.json")
    sentence = ctx.text[lesion.sentence[0]:lesion.sentence[1]]
    present: list[PresentGuidanceInformation] = []
    points, missing = 0, []
    for feature, options in table["features"].items():
        hit = next((o for o in options if _stated(pattern(o["pattern"]), sentence)), None)
        if hit is None:
            missing.append(feature)
        else:
            points += hit["points"]
            present.append(guidance_item(feature, hit["value"]))
    stated = [s for s in find_scores(sentence) if s.category == "TI-RADS"]
    if stated:
        level = int(stated[-1].value)
        present.append(guidance_item("TI-RADS LEVEL", f"TR{level}"))
        missing = []
    else:
        # A cystic or spongiform nodule is TR1 whatever else is written (Tessler 2017).
        benign = any(p.present_guidance_values in (["SPONGIFORM"], ["CYSTIC OR ALMOST COMPLETELY CYSTIC"])
                     for p in present if p.present_guidance_item == "COMPOSITION")
        level = _tirads_level(table, points)
        # Unwritten features can only add points: when even their most would leave the
        # level where it is (7 points is TR5 whatever else), the level does not wait on them.
        if benign or _tirads_level(table, points + _tirads_headroom(table, missing)) == level:
            missing = []
    if lesion.sizes:
        present.append(size_info(lesion))
    else:
        missing.append("SIZE")
    if missing:
        return table["identifier"], present, [], missing, "low"
    rule = table["management"][str(level)]
    size = _largest(lesion) or 0.0
    specs: list[dict[str, Any]] = []
    if rule.get("fnaMm") is not None and size >= rule["fnaMm"]:
        specs = [{"modality": "fna_thyroid"}]
    elif rule.get("followUpMm") is not None and size >= rule["followUpMm"]:
        specs = [{"modality": "us_follow_up_thyroid", "months": m} for m in rule["followUpMonths"]]
    else:
        specs = [{"modality": "no_follow_up"}]
    rank = next(lv.get("rank", "low") for lv in table["levels"] if lv["level"] == level)
    return table["identifier"], present, specs, missing, rank


def _stated(rx: re.Pattern[str], sentence: str) -> bool:
    """``rx`` matches somewhere the sentence does not deny."""
    return any(not _DENIED_FEATURE.search(sentence, max(0, m.start() - 40), m.start())
               for m in rx.finditer(sentence))


def _tirads_level(table: dict[str, Any], points: int) -> int:
    return int(next(lv["level"] for lv in table["levels"] if points <= lv["maxPoints"]))


def _tirads_headroom(table: dict[str, Any], features: list[str]) -> int:
    """The most points ``features`` could add: the best option of each, or all of the
    options of a category that adds up ("choose all that apply", echogenic foci)."""
    additive = table["additiveFeatures"]
    return sum((sum if f in additive else max)(o["points"] for o in table["features"][f])
               for f in features if f in table["features"])


def bosniak(ctx: AnalysisContext, lesion: Lesion, text: str) -> Result:
    table = _data("bosniak_2019.json")
    sentence = ctx.text[lesion.sentence[0]:lesion.sentence[1]]
    present: list[PresentGuidanceInformation] = []
    if lesion.sizes:
        present.append(size_info(lesion))
    match = pattern(table["classPattern"]).search(sentence)
    if match:
        cls = {"1": "I", "2": "II", "2F": "IIF", "3": "III", "4": "IV"}.get(match.group(1).upper(), match.group(1).upper())
    elif pattern(table["simpleCyst"]).search(sentence):
        cls = "I"
    else:
        return table["identifier"], present, [], ["BOSNIAK CLASS"], "low"
    present.append(guidance_item("BOSNIAK CLASS", cls))
    entry = table["classes"][cls]
    return table["identifier"], present, entry["proposals"], [], entry.get("rank", "low")


def incidental(ctx: AnalysisContext, lesion: Lesion, text: str) -> Result:
    table = _data("incidental_findings.json")["guidelines"][lesion.organ]
    sentence = ctx.text[lesion.sentence[0]:lesion.sentence[1]]
    present: list[PresentGuidanceInformation] = []
    missing: list[str] = []
    flags: set[str] = set()
    if "ageItem" in table:
        age = patient_age(ctx)
        if age is None:
            missing.append("PATIENT AGE")
        else:
            older = age >= table["ageItem"]["years"]
            present.append(guidance_item(table["ageItem"]["item"], "YES" if older else "NO"))
            flags.add("age_over" if older else "age_under")
    for key in ("suspicious", "benign"):
        entry = table.get(key)
        if entry and pattern(entry["pattern"]).search(sentence):
            present.append(guidance_item(entry["item"], entry["value"]))
            flags.add(key)
    risk = table.get("risk")
    if risk and _search_report(ctx, pattern(risk["high"]), text):
        present.append(guidance_item(risk["item"], risk["value"]))
        flags.add("high_risk")
    size = _largest(lesion)
    if lesion.sizes:
        present.append(size_info(lesion))
    for rule in table["rules"]:
        when = rule.get("when")
        if when is not None and when not in flags:
            continue
        if (when is None or "minMm" in rule or "maxMm" in rule) and size is None:
            continue
        if _in_range(size, rule):
            return table["identifier"], present, rule["proposals"], [], rule.get("rank", "low")
    if size is None:
        missing.append("SIZE")
    return table["identifier"], present, [], missing, "low"


def _lung_rads(ctx: AnalysisContext, lesion: Lesion, report: ReportText) -> Result:
    return evaluate_rules(ctx, rule_guideline("lung_rads"), lesion, report)


def _guideline(ctx: AnalysisContext, lesion: Lesion, screening: bool):  # type: ignore[no-untyped-def]
    if lesion.organ == "lung":
        # Fleischner 2017 excludes lung cancer screening, which Lung-RADS governs.
        return _lung_rads if screening else fleischner
    if lesion.organ == "kidney":
        return bosniak
    if lesion.organ == "thyroid":
        return tirads if _ULTRASOUND.search(exam_text(ctx)) else incidental
    return incidental


# --- the builder -----------------------------------------------------------------------------

def _show_history(ctx: AnalysisContext) -> bool:
    options = ctx.configuration.inference_options
    return bool(options and options.guidance_options and options.guidance_options.show_guidance_in_history)


def _evaluated(ctx: AnalysisContext, report: ReportText) -> list[tuple[Lesion, Result, Guideline | None]]:
    """Organ lesions with their coded guidelines, then the data-defined ones, in text order."""
    history = _show_history(ctx)
    organ = find_lesions(ctx, report, include_history=history)
    out: list[tuple[Lesion, Result, Guideline | None]] = []
    screening = any(lesion.organ == "lung" for lesion in organ) and applies(rule_guideline("lung_rads"), ctx)
    for lesion in organ:
        rule = _guideline(ctx, lesion, screening)
        out.append((lesion, rule(ctx, lesion, report) if rule is _lung_rads else rule(ctx, lesion, ctx.text), None))
    taken = {lesion.clause for lesion in organ}
    for lesion, guideline in find_rule_lesions(ctx, report, include_history=history, taken=taken):
        out.append((lesion, evaluate_rules(ctx, guideline, lesion, report), guideline))
    return sorted(out, key=lambda item: item[0].start)


def infer(ctx: AnalysisContext) -> list[Inference]:
    report = report_text(ctx.text)
    out: list[Inference] = []
    for index, (lesion, result, guideline) in enumerate(_evaluated(ctx, report)):
        identifier, present, specs, missing, rank = result
        ident = _cc(identifier)
        proposals = [p for spec in specs for p in _proposal(ctx, spec, lesion.organ)]
        anatomy = [tuple(a) for a in guideline["anatomy"]] if guideline else None
        finding = FindingInference(
            finding=observation(lesion, ident, str(index + 1), anatomy=anatomy,  # type: ignore[arg-type]
                                subject=_cc(guideline["subject"]) if guideline and "subject" in guideline else
                                (ident if guideline else None)),
            extension=(section_extension(ctx, lesion.start) + ctx.evidence((lesion.start, lesion.end))) or None)
        out.append(GuidanceInference(
            finding=finding, identifier=ident, present_guidance_information=present or None,
            ranking=rank, recommendation_proposals=proposals or None,
            missing_guidance_information=missing or None,
            extension=ctx.evidence((lesion.start, lesion.end)) or None))
    return out
