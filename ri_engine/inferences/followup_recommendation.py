"""``followupRecommendation`` inferences (ri_contract §5.8).

A recommendation sentence holds a recommendation cue ("recommend", "suggest", "follow-up",
"consider", ...), is not a refusal ("does not warrant follow-up", "no further imaging") and
lies outside HISTORY/INDICATION/COMPARISON/TECHNIQUE/EXAM. For each imaging procedure it
names (modality plus body parts, "US pelvis", "noncontrast chest CT") one recommendation;
several procedures joined by "or" are options. Without a named modality: "follow-up imaging",
"screening" (RADIOGRAPHIC IMAGING PROCEDURE) or a generic CONSULTATION / MANAGEMENT
procedure, kept only with ``includeRecommendationsWithNoSpecifiedModality``.

A guideline block -- a paragraph from a sentence that cites guidelines, a protocol or a
programme without itself recommending anything, to the paragraph end -- is a reference, not
advice for this patient: its sentences give no recommendations of their own, and with
``includeRecommendationsInReferences`` the block becomes ONE recommendation with
``isGuideline`` (RI docs example 2).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from ..context import AnalysisContext
from ..knowledge import load_json
from ..models import (
    CodeableConcept, Coding, CriticalResult, Extension, FollowupRecommendationInference,
    GenericProcedureRecommendation, ImagingProcedure, ImagingProcedureRecommendation, Inference,
    Period, RecommendationFinding,
)
from ..nlp.alternation import phrase_alternation
from ..nlp.casefold import CaseFolded, fold
from ..nlp.prefilter import fold_case, literal_finder
from ..nlp.lexicon import make_code
from ..nlp.types import Laterality, ProcedureMention, Span
from . import critical_result, finding
from .evidence import coded, sentences_extension, token_spans_for
from .intervals import Timing, names_time_ahead, timing
from .procedure_codes import imaging_procedures, loinc_for

_VOCAB = load_json("recommendations.json")
_SKIP_SECTIONS = frozenset({"HISTORY", "INDICATION", "COMPARISON", "TECHNIQUE", "EXAM"})


def _words(terms: list[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])%s(?![\w-])" % phrase_alternation(terms), re.IGNORECASE)


# Searched in every sentence, case-folded (nlp/casefold.py).
_CUE = CaseFolded(_words(_VOCAB["cues"]))
# A refusal, or advice an earlier report gave ("was previously recommended"): no advice now.
_REFUSAL = CaseFolded(_words(_VOCAB["negations"] + _VOCAB["past_advice"]))
_PAST_ADVICE = _words(_VOCAB["past_advice"])
_RESTATED = re.compile(r"\bas\s+$", re.IGNORECASE)
_HEDGE = _words(_VOCAB["hedges"])
_CONDITIONAL = re.compile(r"(?<![\w-])(?:%s)(?![\w-])(?!\s+clinically)" % "|".join(
    re.escape(t).replace(r"\ ", r"\s+") for t in _VOCAB["conditionals"]), re.IGNORECASE)
# "... or MRI" offers an alternative; "1.5 cm or greater" does not.
_OPTION = re.compile(_words(_VOCAB["options"]).pattern + r"(?!\s+(?:greater|larger|bigger|more|less|"
                     r"smaller|fewer|higher|lower|above|below|equal|longer|shorter)\b)", re.IGNORECASE)
_GUIDELINE = CaseFolded(_words(_VOCAB["guideline_words"]))  # searched in every sentence too
# Citations are rare: a sentence without one of the words every citation holds is not
# searched further (prefilter.literal_finder).
_GUIDELINE_WORDS = literal_finder(_GUIDELINE.pattern)
# "protocol" naming how an exam is done ("renal protocol MRI", "CT with pancreas protocol",
# "PE protocol CTA") cites no guideline: only the exam's name.
_EXAM_PROTOCOL = re.compile(
    r"\bprotocol\s+(?:CTA?|MRI|MRA|MRCP|MR|US|ultrasound|sonograph\w*|imaging|exam\w*|study|scan)\b"
    r"|\b(?:CTA?|MRI|MRA|MR|US|ultrasound|imaging|exam\w*|study|scan)\s+(?:with|using|per)\s+(?:an?\s+|the\s+)?"
    r"[a-z-]+\s+protocol\b", re.IGNORECASE)
_ADVICE_START = re.compile(
    r"^\s*(?:i\s+|we\s+)?(?:would\s+)?(?:recommend|suggest|advise|consider)"
    # "Per Fleischner Society 2017 guidelines, CT at 12 months is recommended": a citation
    # that opens the sentence as its authority, followed by advice for this patient.
    r"|^\s*(?:as\s+)?(?:per|according\s+to|based\s+(?:up)?on|in\s+accordance\s+with)\b[^,;:.]{0,80},", re.I)
_GENERIC = {key: (make_code(entry["code"]), _words(entry["terms"]))
            for key, entry in _VOCAB["generic"].items()}
# "correlation with the prior outside CT": a study already done, not one to do.
_EARLIER_STUDY = re.compile(r"\b(?:prior|previous|outside|earlier|old|comparison)\s+(?:[a-z-]+\s+){0,2}$",
                            re.IGNORECASE)
# Where a recommendation sentence turns to another procedure with its own timing
# ("FNA if 1.5 cm or larger; otherwise ultrasound in one year").
_CLAUSE_BREAK = re.compile(r";|\b(?:otherwise|thereafter|followed\s+by|and\s+then|then)\b", re.IGNORECASE)
# "No further imaging is necessary unless symptoms persist, in which case MRI may be
# obtained": the refusal covers what comes before the exception; a procedure named after
# it is a conditional recommendation.
# Likewise a clause of its own after a semicolon, "but" or "otherwise" ("No routine follow-up
# is needed if the patient is low risk; if high risk, CT at 12 months is recommended", "No CT
# follow-up is needed, but pelvic ultrasound in 6 weeks is recommended").
_EXCEPTION = re.compile(r"\b(?:unless|except\s+(?:if|when|in\s+case)|in\s+which\s+case|"
                        r"but|however|otherwise)\b|;", re.IGNORECASE)
# Where a refusal opens a clause of its own, after the advice of the clause before it.
_TURN_BEFORE = re.compile(r";|\b(?:otherwise|but|however|whereas)\b", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"(?:\r\n|\r|\n|\\n)[ \t]*(?:\r\n|\r|\n|\\n)")


@dataclass(frozen=True)
class Options:
    no_modality: bool
    references: bool
    focused: bool

    @classmethod
    def of(cls, ctx: AnalysisContext) -> Options:
        opts = ctx.configuration.inference_options
        rec = opts.followup_recommendation_options if opts else None
        return cls(no_modality=bool(rec and rec.include_recommendations_with_no_specified_modality),
                   references=bool(rec and rec.include_recommendations_in_references),
                   focused=bool(rec and rec.provide_focused_sentence_evidence))


def infer(ctx: AnalysisContext) -> list[Inference]:
    options = Options.of(ctx)
    blocks = guideline_blocks(ctx)
    out: list[Inference] = []
    for sentence in ctx.sentences:
        section = ctx.section_at(sentence.start)
        if section is not None and section.name in _SKIP_SECTIONS:
            continue
        if any(b[0].start <= sentence.start < b[-1].end for b in blocks):
            continue
        text = ctx.text[sentence.start:sentence.end]
        folded = fold(text)
        if not _CUE.pattern_for(text).search(folded) and not _timed_study(ctx, sentence, text):
            continue
        refusal = _refusal(text, folded)
        if refusal is None:
            out.extend(_from_sentence(ctx, sentence, text, options))
            continue
        # "If high risk, CT in 12 months is recommended; otherwise no follow-up is needed": the
        # refusal covers its own clause, not the advice of a clause before it.
        turn = _last(_TURN_BEFORE.finditer(text, 0, refusal.start()))
        if turn is not None and (_CUE.pattern_for(text).search(folded, 0, turn.start())
                                 or _timed_study(ctx, sentence, text[:turn.start()])):
            out.extend(_from_sentence(ctx, sentence, text, options, before=turn.start()))
        exception = _EXCEPTION.search(text, refusal.end())
        # The exception recommends only in words of its own ("in which case MRI may be
        # obtained"), not by naming a study ("unless the next scheduled CT shows a change").
        if exception is not None and (_CUE.pattern_for(text).search(folded, exception.end())
                                      or _timed_study(ctx, sentence, text, exception.end())):
            out.extend(_from_sentence(ctx, sentence, text, options, after=exception.start()))
    if options.references:
        out.extend(_guideline(ctx, block, options) for block in blocks)
    return out


def _refusal(text: str, folded: str) -> re.Match[str] | None:
    """The first refusal of a sentence; advice given before and restated ("CT is recommended,
    as was recommended on the prior study") is none."""
    for m in _REFUSAL.pattern_for(text).finditer(folded):
        if not (_PAST_ADVICE.fullmatch(text, m.start(), m.end())
                and _RESTATED.search(text, max(0, m.start() - 12), m.start())):
            return m
    return None


def _last(matches: Iterator[re.Match[str]]) -> re.Match[str] | None:
    found = None
    for found in matches:
        pass
    return found


def _timed_study(ctx: AnalysisContext, sentence: Span, text: str, after: int = 0) -> bool:
    """A study named with a time ahead and no recommending word ("If symptoms persist,
    pelvic ultrasound in 6-8 weeks.", "Chest CT in 3 months."): advice all the same."""
    starts = ctx.layers.get("followup_recommendation.named_starts")
    if starts is None:
        starts = ctx.layers["followup_recommendation.named_starts"] = sorted(
            p.start for p in ctx.procedures if p.modality_key != "imaging")
    index = bisect_left(starts, sentence.start + after)
    return index < len(starts) and starts[index] < sentence.end and names_time_ahead(text[after:])


def guideline_blocks(ctx: AnalysisContext) -> list[list[Span]]:
    """Runs of sentences that quote guidelines, each from its citing sentence to paragraph end."""
    breaks = [m.start() for m in _PARAGRAPH_BREAK.finditer(ctx.text)] + [len(ctx.text)]
    blocks: list[list[Span]] = []
    current: list[Span] = []
    limit = -1
    for sentence in ctx.sentences:
        if current and sentence.start >= limit:
            blocks.append(current)
            current = []
        if current:
            current.append(sentence)
            continue
        text = ctx.text[sentence.start:sentence.end]
        if (_GUIDELINE_WORDS.search(fold_case(text)) and _cites_guideline(text)
                and not _ADVICE_START.search(text)):
            section = ctx.section_at(sentence.start)
            end = min(b for b in breaks if b >= sentence.end)
            limit = min(end, section.end) if section else end
            current = [sentence]
    if current:
        blocks.append(current)
    return blocks


def _cites_guideline(text: str) -> bool:
    """A guideline word outside an exam's name ("per protocol", not "renal protocol MRI")."""
    folded = fold(text)
    if _GUIDELINE.pattern_for(text).search(folded) is None:
        return False
    if "protocol" not in folded.lower() or not _EXAM_PROTOCOL.search(text):
        return True
    text = _EXAM_PROTOCOL.sub(lambda m: " " * len(m.group(0)), text)
    return _GUIDELINE.pattern_for(text).search(fold(text)) is not None


def _from_sentence(ctx: AnalysisContext, sentence: Span, text: str,
                   options: Options, after: int = 0, before: int | None = None) -> list[Inference]:
    """The recommendations of a sentence; with ``after``, only of procedures named after
    that offset (the exception to a refusal), each conditional; with ``before``, only of
    the clause before that offset (the advice before a refusal), read alone."""
    if before is not None:
        text = text[:before]
    end = sentence.start + len(text)
    inside = [p for p in ctx.procedures if sentence.start + after <= p.start < end
              and not _EARLIER_STUDY.search(ctx.text, max(sentence.start, p.start - 30), p.start)]
    named = [p for p in inside if p.modality_key != "imaging"]
    if after and not named:
        return []  # the exception names no procedure: the refusal stands
    flags = {
        "is_conditional": bool(after) or bool(_CONDITIONAL.search(text)),
        "is_hedging": bool(_HEDGE.search(text)),
        "is_guideline": False,
    }
    when = timing(text, ctx.document_date)
    findings = _findings(ctx, sentence, flags["is_conditional"])
    focused = [sentences_extension("modality_sentences", [(sentence.start, sentence.end)])] \
        if options.focused else []
    out: list[Inference] = []
    if named:
        option = len(named) > 1 and any(
            _OPTION.search(ctx.text[a.end:b.start]) for a, b in zip(named, named[1:]))
        clauses = _own_clauses(ctx, sentence, text, named)
        for mention in named:
            if clauses is not None:
                when, flags["is_conditional"] = clauses[mention.start]
            procedure = ImagingProcedureRecommendation(
                procedure_codes=_codes(ctx, mention),
                imaging_procedures=imaging_procedures(ctx, mention, _side(ctx, mention)))
            spans = _mention_spans(mention)
            out.append(_recommendation(ctx, procedure, spans, when, findings, focused,
                                       is_option=option, **flags))
        return out
    if not options.no_modality:
        return out
    if inside:
        mention = inside[0]
        procedure = ImagingProcedureRecommendation(
            imaging_procedures=imaging_procedures(ctx, mention, _side(ctx, mention)))
        return [_recommendation(ctx, procedure, _mention_spans(mention), when, findings, focused,
                                is_option=False, **flags)]
    for code, pattern in _GENERIC.values():
        m = pattern.search(text)
        if m is None:
            continue
        spans = token_spans_for(ctx, [(sentence.start + m.start(), sentence.start + m.end())])
        generic = GenericProcedureRecommendation(code=coded(ctx, code, spans), description=code.display)
        return [_recommendation(ctx, generic, spans, when, findings, focused, is_option=False, **flags)]
    return out


def _own_clauses(ctx: AnalysisContext, sentence: Span, text: str,
                 named: list[ProcedureMention]) -> dict[int, tuple[Timing, bool]] | None:
    """Each procedure's timing and condition from its own clause, when the procedures of the
    sentence sit in different clauses; None (the sentence's for all) otherwise."""
    if len(named) < 2:
        return None
    bounds = [0] + [m.start() for m in _CLAUSE_BREAK.finditer(text)] + [len(text)]
    clause_of = {m.start: bisect_right(bounds, m.start - sentence.start) - 1 for m in named}
    if len(set(clause_of.values())) < 2:
        return None
    out: dict[int, tuple[Timing, bool]] = {}
    for start, i in clause_of.items():
        clause = text[bounds[i]:bounds[i + 1]]
        # "...; otherwise ultrasound in one year": the other branch of the condition.
        conditional = bool(_CONDITIONAL.search(clause)) or clause.lower().startswith("otherwise")
        out[start] = (timing(clause, ctx.document_date), conditional)
    return out


def _guideline(ctx: AnalysisContext, block: list[Span], options: Options) -> Inference:
    start, end = block[0].start, block[-1].end
    inside = [p for p in ctx.procedures if start <= p.start < end and p.modality_key != "imaging"]
    keys: list[str] = []
    for p in inside:
        if p.modality_key not in keys:
            keys.append(p.modality_key)
    codes = [m for m in (ctx.lexicon.modalities[k].loinc_generic for k in keys) if m is not None]
    modality_key = keys[0] if len(keys) == 1 else "imaging"
    spans = token_spans_for(ctx, [(s.start, s.end) for s in block])
    body = ctx.lexicon.anatomy["body"].codes[0]
    procedure = ImagingProcedureRecommendation(
        procedure_codes=[CodeableConcept(coding=[Coding(system=c.system, code=c.code, display=c.display)])
                         for c in codes] or None,
        imaging_procedures=[ImagingProcedure(
            modality=coded(ctx, ctx.lexicon.modalities[modality_key].code, spans),
            anatomy=coded(ctx, body))])
    focused = [sentences_extension("modality_sentences", [(s.start, s.end) for s in block])] \
        if options.focused else []
    return _recommendation(ctx, procedure, spans, timing("", None), [], focused, is_option=False,
                           is_conditional=False, is_hedging=False, is_guideline=True)


def _recommendation(ctx: AnalysisContext, procedure: object, spans: list[tuple[int, int]],
                    when: object, findings: list[RecommendationFinding], focused: list[Extension],
                    **flags: bool) -> Inference:
    extensions = focused + ctx.evidence(*token_spans_for(ctx, spans))
    return FollowupRecommendationInference(
        effective_at=when.effective_at,  # type: ignore[attr-defined]
        effective_period=Period(start=when.period[0], end=when.period[1])  # type: ignore[attr-defined]
        if when.period else None,  # type: ignore[attr-defined]
        findings=findings, recommended_procedure=procedure,  # type: ignore[arg-type]
        extension=extensions or None, **flags)


def _findings(ctx: AnalysisContext, sentence: Span, conditional: bool) -> list[RecommendationFinding]:
    out = []
    for mention in finding.reported(ctx):
        if not sentence.start <= mention.start < sentence.end:
            continue
        if mention.resolved:
            continue  # gone since the earlier study: nothing to follow up
        a = mention.assertion
        if a.negated:
            status = "ruleOut"
        elif a.hypothetical:
            status = "conditional" if conditional else "ruleOut"
        elif a.uncertainty:
            status = "differential"
        else:
            status = "present"
        description = critical_result.description_for(ctx, mention)
        observation = finding.observation(ctx, mention)
        critical = CriticalResult(description=description, finding=observation) if description else {}
        out.append(RecommendationFinding(finding=observation, critical_finding=critical,
                                         recommendation_finding_status=status))
    return out


def _codes(ctx: AnalysisContext, mention: ProcedureMention) -> list[CodeableConcept] | None:
    loinc = loinc_for(ctx, mention)
    if loinc is None:
        return None
    return [CodeableConcept(coding=[Coding(system=loinc.system, code=loinc.code, display=loinc.display)])]


def _side(ctx: AnalysisContext, mention: ProcedureMention) -> Laterality | None:
    """A side written right before the modality ("left mammography")."""
    if mention.laterality is not None:
        return mention.laterality
    start = mention.modality_span[0] if mention.modality_span else mention.start
    for term in ctx.terms.get("laterality", []):
        if term.end <= start and not ctx.text[term.end:start].strip():
            return Laterality(term.key, ctx.lexicon.laterality[term.key], term.start, term.end)
    return None


def _mention_spans(mention: ProcedureMention) -> list[tuple[int, int]]:
    spans = [mention.modality_span or (mention.start, mention.end)]
    spans += [(a.start, a.end) for a in mention.anatomy]
    return sorted(spans)
