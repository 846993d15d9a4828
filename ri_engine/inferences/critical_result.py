"""``criticalResult`` inferences (ri_contract §5.7, §7.1).

One inference per asserted mention of a critical finding (RI reports the same fracture twice
when Findings and Impression both describe it). A mention counts when it is stated for this
patient now: not negated, not hypothetical, not someone else's, not only history ("history
of"), not resolved, not "unlikely"/"cannot be excluded", and not in a section that only
restates the request or the prior (HISTORY, INDICATION, COMPARISON, TECHNIQUE, EXAM,
RECOMMENDATION). The description comes from the first matching rule of
``knowledge/critical_results.json``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from operator import attrgetter

from ..context import AnalysisContext
from ..knowledge import load_json
from ..models import CriticalResult, CriticalResultInference, Inference
from ..nlp.assertion import denied_between
from ..nlp.mentions import outside_pseudo
from ..nlp.types import FindingMention, Term
from . import finding
from .evidence import section_extension, token_spans_for

EXCLUDED_SECTIONS = frozenset({"HISTORY", "INDICATION", "COMPARISON", "TECHNIQUE", "EXAM",
                               "RECOMMENDATION"})
EXCLUDED_UNCERTAINTY = frozenset({"improbable", "cannotBeExcluded"})


@dataclass(frozen=True)
class Rule:
    description: str
    findings: frozenset[str]
    anatomy_any: frozenset[str]
    modifiers_any: frozenset[str]
    modifiers_none: frozenset[str]
    text_any: re.Pattern[str] | None  # one of these words in the sentence
    text_none: re.Pattern[str] | None  # none of these words in the sentence ("postoperative")
    text_none_unless: re.Pattern[str] | None  # ... unless one of these is ("than expected")
    uncertainty_any: tuple[str | None, ...] | None
    size_mm_over: float | None
    not_known: bool
    text_any_words: tuple[str, ...] = ()
    text_any_after_words: int | None = None  # how far after the finding a text_any word may be

    def matches(self, ctx: AnalysisContext, m: FindingMention) -> bool:
        if m.key not in self.findings:
            return False
        anatomy = {a.key for a in m.anatomy} | {p for a in m.anatomy for p in a.parents}
        if not anatomy:
            # A finding that names no body part lies in the body part of the exam.
            anatomy = {a.key for p in ctx.order_procedures for a in p.anatomy}
        if self.anatomy_any and not anatomy & self.anatomy_any:
            return False
        modifiers = {f"{x.kind}:{x.key}" for x in m.modifiers}
        if self.modifiers_any and not modifiers & self.modifiers_any:
            return False
        if modifiers & self.modifiers_none:
            return False
        if self.text_any and not _stated(ctx, self.text_any, m, self.text_any_after_words):
            return False
        if self.text_none and self.text_none.search(ctx.text, *m.sentence) and not (
                self.text_none_unless and self.text_none_unless.search(ctx.text, *m.sentence)):
            return False
        if self.uncertainty_any is not None and m.assertion.uncertainty not in self.uncertainty_any:
            return False
        if self.size_mm_over is not None:
            sizes = [s.largest_mm for s in m.measurements if not s.prior]
            if not sizes or max(sizes) <= self.size_mm_over:
                return False
        return not (self.not_known and m.assertion.known)


def _rules() -> tuple[list[Rule], frozenset[str]]:
    data = load_json("critical_results.json")
    descriptions = frozenset(data["descriptions"])
    rules = []
    for raw in data["rules"]:
        if raw["description"] not in descriptions:
            raise ValueError(f"critical_results.json: unknown description {raw['description']!r}")
        rules.append(Rule(
            description=raw["description"], findings=frozenset(raw["findings"]),
            anatomy_any=frozenset(raw.get("anatomy_any", ())),
            modifiers_any=frozenset(raw.get("modifiers_any", ())),
            modifiers_none=frozenset(raw.get("modifiers_none", ())),
            text_any=_any_word(raw.get("text_any", ())),
            text_none=_any_word(raw.get("text_none", ())),
            text_none_unless=_any_word(raw.get("text_none_unless", ())),
            uncertainty_any=tuple(raw["uncertainty_any"]) if "uncertainty_any" in raw else None,
            size_mm_over=raw.get("size_mm_over"), not_known=bool(raw.get("not_known")),
            text_any_words=tuple(raw.get("text_any", ())),
            text_any_after_words=raw.get("text_any_after_words")))
    return rules, descriptions


def _stated(ctx: AnalysisContext, pattern: re.Pattern[str], m: FindingMention,
            after_words: int | None = None) -> bool:
    """One of ``pattern``'s words is in the finding's clause and not denied after the finding
    ("aneurysm without evidence of rupture", "pneumatosis without portal venous gas");
    with ``after_words``, one after the finding is at most that many words after it."""
    lo, hi = m.clause or m.sentence
    cues = terminators = None
    for hit in pattern.finditer(ctx.text, lo, hi):
        if hit.start() < m.end:
            return True
        if after_words is not None and len(ctx.text[m.end:hit.start()].split()) > after_words:
            break
        if cues is None:
            cues = outside_pseudo(_within(ctx.terms.get("cue", []), m.end, hi),
                                  _within(ctx.terms.get("pseudo", []), m.end, hi))
            terminators = [t.start for t in _within(ctx.terms.get("terminator", []), m.end, hi)]
        if not denied_between(m.end, hit.start(), cues, terminators):  # type: ignore[arg-type]
            return True
    return False


def _within(terms: list[Term], lo: int, hi: int) -> list[Term]:
    """The sorted ``terms`` lying inside [lo, hi)."""
    index = bisect_left(terms, lo, key=_START)
    out = []
    for term in terms[index:]:
        if term.start >= hi:
            break
        if term.end <= hi:
            out.append(term)
    return out


def _any_word(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


_START = attrgetter("start")
RULES, DESCRIPTIONS = _rules()
_RULES_BY_FINDING: dict[str, list[Rule]] = {}
for _rule in RULES:
    for _key in _rule.findings:
        _RULES_BY_FINDING.setdefault(_key, []).append(_rule)


def is_current(mention: FindingMention) -> bool:
    """Stated as present for this patient now (the precondition for a critical result)."""
    a = mention.assertion
    if not a.asserted or a.historical or a.uncertainty in EXCLUDED_UNCERTAINTY:
        return False
    if mention.resolved:
        return False
    return mention.section_name not in EXCLUDED_SECTIONS


def description_for(ctx: AnalysisContext, mention: FindingMention) -> str | None:
    if not is_current(mention):
        return None
    for rule in _RULES_BY_FINDING.get(mention.key, ()):
        if rule.matches(ctx, mention):
            return rule.description
    return None


def _denials() -> dict[str, frozenset[str]]:
    """For each description that states an absence ("PNEUMOTHORAX, NO EVIDENCE OF TENSION"),
    the descriptions of what it denies: those of the rules before it for the same findings
    (the rules list what a finding can be, most severe first)."""
    denied: dict[str, set[str]] = {}
    for index, rule in enumerate(RULES):
        if ", NO " in rule.description:
            denied.setdefault(rule.description, set()).update(
                earlier.description for earlier in RULES[:index]
                if earlier.findings & rule.findings and ", NO " not in earlier.description)
    return {description: frozenset(found) for description, found in denied.items()}


def _signs() -> dict[str, re.Pattern[str]]:
    """For each description that states an absence, the words of the signs it denies: the
    ``text_any`` words and the modifier terms of the rules before it for the same findings
    ("rupture", "leak"; "tension", "mediastinal shift")."""
    modifiers = load_json("modifiers.json")
    words: dict[str, set[str]] = {}
    for index, rule in enumerate(RULES):
        if ", NO " not in rule.description:
            continue
        found = words.setdefault(rule.description, set())
        for earlier in RULES[:index]:
            if not earlier.findings & rule.findings or ", NO " in earlier.description:
                continue
            found.update(earlier.text_any_words)
            for name in earlier.modifiers_any:
                kind, key = name.split(":", 1)
                found.update(modifiers.get(kind, {}).get(key, {}).get("terms", ()))
    return {description: re.compile(
        r"\b(?:" + "|".join(r"\s+".join(map(re.escape, w.split()))
                            for w in sorted(found, key=len, reverse=True)) + r")\b",
        re.IGNORECASE) for description, found in words.items() if found}


_DENIALS = _denials()
_SIGNS = _signs()
_SAME_SIZE = 0.2  # two current sizes more than 20 % apart are two findings


def _same_finding(first: FindingMention, second: FindingMention, sides: set[str]) -> bool:
    """Whether two mentions of a finding may describe the same one.

    Not when they are stated on different sides, nor when one names no side while the
    report names this finding on both (``sides``: "a small apical pneumothorax" after a
    right and a left one); not when both name body parts and none is shared ("abdominal
    aortic aneurysm", "iliac artery aneurysm"), nor when both give a current size and the
    sizes differ ("5.8 cm aneurysm", "3.4 cm aneurysm")."""
    a, b = first.laterality, second.laterality
    if a is not None and b is not None:
        if a.value != b.value:
            return False
    elif len(sides) > 1:
        return False
    parts_a = {x.key for x in first.anatomy} | {p for x in first.anatomy for p in x.parents}
    parts_b = {x.key for x in second.anatomy} | {p for x in second.anatomy for p in x.parents}
    if parts_a and parts_b and not ({x.key for x in first.anatomy} & parts_b
                                    or {x.key for x in second.anatomy} & parts_a):
        return False
    size_a, size_b = _current_size(first), _current_size(second)
    if size_a and size_b and abs(size_a - size_b) > _SAME_SIZE * max(size_a, size_b):
        return False
    return True


def _current_size(mention: FindingMention) -> float | None:
    sizes = [s.largest_mm for s in mention.measurements if not s.prior]
    return max(sizes) if sizes else None


def _states_absence(ctx: AnalysisContext, mention: FindingMention, description: str) -> bool:
    """The mention's own sentence names a sign its description denies, so it denies it
    ("right pneumothorax without evidence of tension physiology", "aneurysm without
    evidence of rupture"): what the sentence says stands."""
    signs = _SIGNS.get(description)
    return signs is not None and signs.search(ctx.text, *mention.sentence) is not None


def _in_report_terms(ctx: AnalysisContext, described: list[tuple[FindingMention, str]]) -> list[str]:
    """Each mention's description, where the report as a whole contradicts an absence.

    A finding is often described twice: "Large right pneumothorax with mediastinal shift"
    in the findings and "Large right pneumothorax" in the impression.  Read alone, the
    impression's mention shows no sign of tension; but the report shows one for the same
    pneumothorax, so that mention is a tension pneumothorax too, not one "with no evidence
    of tension".  A mention that may be another finding (``_same_finding``: the other side,
    another vessel, another size) keeps its own description, and so does one whose sentence
    itself denies the sign.
    """
    sides: dict[str, set[str]] = {}
    for mention, _ in described:
        if mention.laterality is not None:
            sides.setdefault(mention.key, set()).add(mention.laterality.value)
    out = []
    for mention, description in described:
        denied = _DENIALS.get(description)
        if denied and not _states_absence(ctx, mention, description):
            stronger = next((other_description for other, other_description in described
                             if other_description in denied and _same_finding(
                                 mention, other, sides.get(mention.key, set()) | sides.get(other.key, set()))),
                            None)
            description = stronger or description
        out.append(description)
    return out


def infer(ctx: AnalysisContext) -> list[Inference]:
    described = [(mention, description) for mention in finding.reported(ctx)
                 for description in [description_for(ctx, mention)] if description is not None]
    out: list[Inference] = []
    for (mention, _), description in zip(described, _in_report_terms(ctx, described)):
        extensions = ctx.evidence(*token_spans_for(ctx, mention.spans))
        section = section_extension(ctx, mention.start)
        if section is not None:
            extensions.append(section)
        out.append(CriticalResultInference(
            result=CriticalResult(description=description, finding=finding.observation(ctx, mention)),
            extension=extensions or None))
    return out
