"""``finding`` inferences (ri_contract §5.6): one FHIR Observation per finding mention.

``observation(ctx, mention)`` builds (once per mention) the Observation other builders embed:
critical results, recommendation findings and guidance reuse it.

Interpretations: negated -> NONE (and nothing else); otherwise NEW ("new"), KNOWN ("known",
"dating back to"), CONTINUAL ("history of"), RESOLVED ("has resolved", "resolution of", "no
longer seen": RI reports a resolved finding with RESOLVED, not NONE, ri_contract 5.6), and the
uncertainty level (POSSIBLE, PROBABLE, IMPROBABLE, CANNOT BE EXCLUDED). Components follow RI's order: SUBJECT OF
INFORMATION, ANATOMY, LATERALITY, CHANGE, SEVERITY, CHRONICITY, QUALIFIER (features),
MULTIPLE (always exactly one), DATE, SIZE (one per dimension, CURRENT or PREVIOUS).
Findings inside a RECOMMENDATION section are advice, not observations, and are skipped.

Values that are the same in every observation (component codes, interpretations, the
MULTIPLE component, size states) are built once and shared: inference values are never
changed once built, and a report has dozens of findings of about forty objects each.
"""

from __future__ import annotations

from ..context import AnalysisContext
from ..knowledge import load_json
from ..models import (
    CodeableConcept, Coding, FindingInference, Inference, Observation, ObservationComponent,
    Quantity, Range,
)
from ..nlp.lexicon import make_code
from ..nlp.types import Code, FindingMention, Measurement, Modifier
from .evidence import coded, section_extension, sentences_extension

# Sections whose sentences describe what to do rather than what was seen.
NON_OBSERVATION_SECTIONS = frozenset({"RECOMMENDATION"})

_DATA = load_json("interpretations.json")
INTERPRETATION = {k: make_code(v) for k, v in _DATA["interpretation"].items()}
COMPONENT = {k: make_code(v) for k, v in _DATA["component"].items()}
FINDING_CODE = {k: make_code(v) for k, v in _DATA["finding_code"].items()}
UNITS = _DATA["units"]
SIZE_STATE = _DATA["size_interpretation"]


def _concept(code: Code) -> CodeableConcept:
    return CodeableConcept(coding=[_coding(code)])


def _coding(code: Code) -> Coding:
    return Coding(system=code.system, code=code.code, display=code.display)


_COMPONENT_CODE = {name: _concept(code) for name, code in COMPONENT.items()}
_INTERPRETATION = {key: _concept(code) for key, code in INTERPRETATION.items()}
_CLINICAL_FINDING = _concept(FINDING_CODE["clinical"])
_MULTIPLE = {value: ObservationComponent(code=_COMPONENT_CODE["multiple"], value_boolean=value)
             for value in (False, True)}
_SIZE_INTERPRETATION = {
    prior: [CodeableConcept(coding=[Coding(code=state[0], display=state[1])])]
    for prior, state in ((False, SIZE_STATE["current"]), (True, SIZE_STATE["previous"]))}


def reported(ctx: AnalysisContext) -> list[FindingMention]:
    """The finding mentions RI reports (everything outside recommendation sections)."""
    return [m for m in ctx.findings if m.section_name not in NON_OBSERVATION_SECTIONS]


def infer(ctx: AnalysisContext) -> list[Inference]:
    out: list[Inference] = []
    options = ctx.configuration.inference_options
    focused = bool(options and options.finding_options
                   and options.finding_options.provide_focused_sentence_evidence)
    for mention in reported(ctx):
        extensions = ctx.evidence(*ctx.tokens(mention.start, mention.end))  # one span: no repeats
        section = section_extension(ctx, mention.start)
        if section is not None:
            extensions.append(section)
        if focused:
            extensions.append(sentences_extension("ci_sentence", [mention.sentence]))
        out.append(FindingInference(finding=observation(ctx, mention), extension=extensions or None))
    return out


def observation(ctx: AnalysisContext, mention: FindingMention) -> Observation:
    cache: dict[tuple[int, int, str], Observation] = ctx.layers.setdefault("finding.observations", {})
    key = (mention.start, mention.end, mention.key)
    if key not in cache:
        cache[key] = _build(ctx, mention, str(1000 + len(cache)))
    return cache[key]


def interpretation_keys(mention: FindingMention) -> list[str]:
    a = mention.assertion
    if a.negated:
        return ["none"]
    keys: list[str] = []
    if mention.modifier("temporal") and mention.modifier("temporal").key == "new":  # type: ignore[union-attr]
        keys.append("new")
    if mention.resolved:
        keys.append("resolved")
    if a.known and "new" not in keys:
        keys.append("known")
    if a.historical:
        keys.append("historical")
    if a.uncertainty:
        keys.append(a.uncertainty)
    return keys


def _build(ctx: AnalysisContext, mention: FindingMention, ident: str) -> Observation:
    comps: list[ObservationComponent] = []
    for code in mention.codes:
        comps.append(_component(ctx, "subject", coded(ctx, code, [(mention.start, mention.end)])))
    seen: set[str] = set()
    for anatomy in mention.anatomy:
        for code in anatomy.codes:
            if code.code in seen:
                continue
            seen.add(code.code)
            comps.append(_component(ctx, "anatomy", coded(ctx, code, [(anatomy.start, anatomy.end)])))
    if mention.laterality:
        side = mention.laterality
        comps.append(_component(ctx, "laterality", coded(ctx, side.code, [(side.start, side.end)])))
    features = mention.modifiers_of("feature")
    if mention.modifiers:
        for kind in ("change", "severity", "chronicity"):
            modifier = _first_coded(mention, kind, features)
            if modifier is not None and modifier.code is not None:
                comps.append(_component(ctx, kind, coded(ctx, modifier.code, [(modifier.start, modifier.end)])))
    for feature in features:
        if feature.code is not None:
            comps.append(_component(ctx, "feature", coded(ctx, feature.code, [(feature.start, feature.end)])))
        else:
            comps.append(ObservationComponent(code=_COMPONENT_CODE["feature"], value_string=feature.text.lower(),
                                              extension=ctx.evidence((feature.start, feature.end)) or None))
    comps.append(_MULTIPLE[mention.multiple])
    if mention.date:
        comps.append(ObservationComponent(code=_COMPONENT_CODE["date"], value_date_time=mention.date,
                                          extension=ctx.evidence(mention.date_span) or None
                                          if mention.date_span else None))
    for measurement in mention.measurements:
        comps.extend(_sizes(ctx, measurement))
    interpretations = [_INTERPRETATION[k] for k in interpretation_keys(mention)]
    return Observation(
        resource_type="Observation", id=ident, status="unknown", code=_CLINICAL_FINDING,
        interpretation=interpretations or None, component=comps)


def _first_coded(mention: FindingMention, kind: str, features: tuple[Modifier, ...]) -> Modifier | None:
    for modifier in mention.modifiers_of(kind):
        # "minimally displaced": the adverb grades the feature, not the finding.
        if kind == "severity" and any(0 <= f.start - modifier.end <= 1 for f in features):
            continue
        return modifier
    return None


def _sizes(ctx: AnalysisContext, m: Measurement) -> list[ObservationComponent]:
    unit = UNITS[m.unit]
    interpretation = _SIZE_INTERPRETATION[m.prior]
    if m.is_range:
        return [ObservationComponent(
            code=_COMPONENT_CODE["size"], interpretation=interpretation,
            value_range=Range(low=Quantity(value=m.low, unit=unit), high=Quantity(value=m.high, unit=unit)),
            extension=ctx.evidence(*m.value_spans) or None)]
    out = []
    for value, span in zip(m.values, m.value_spans):
        out.append(ObservationComponent(
            code=_COMPONENT_CODE["size"], interpretation=interpretation,
            value_quantity=Quantity(value=value, unit=unit, comparator=m.comparator),
            extension=ctx.evidence(span) or None))
    return out


def _component(ctx: AnalysisContext, name: str, value: CodeableConcept) -> ObservationComponent:
    # Positional (code, valueQuantity, valueCodeableConcept): about half the cost of keywords,
    # and most of a report's components are built here.
    return ObservationComponent(_COMPONENT_CODE[name], None, value)
