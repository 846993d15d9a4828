"""``followupCommunication`` inferences (ri_contract §5.9): who was told, when, and how.

A sentence is a communication when it has a communication verb ("discussed", "called",
"faxed", "sent", "communicated", "notified", ...) and names a recipient (a role word, a
title such as "Dr.", or a name after "with"/"to"). Recipients: "Dr. X", "X, MD", physician
words -> doctor; ", PA" -> physicianAssistant; RN / nurse / NP -> nurse; midwife / CNM ->
midwife; a bare name -> unknown. ``wasAcknowledged`` is true for spoken communication
("discussed with", "spoke", "by telephone", "read back") and false for notices (fax,
PowerScribe, e-mail, "communicated to", "sent to"). ``communicatedAt`` joins the date and
time written in the sentence (a time alone takes the document date); it is left out when
the year is written with two digits, as RI does ("1/1/15", ri_contract §9.8).
"""

from __future__ import annotations

import re

from ..context import AnalysisContext
from ..knowledge import load_json
from ..models import FollowupCommunicationInference, Inference
from ..nlp.casefold import CaseFolded, fold
from .evidence import token_spans_for

_VOCAB = load_json("communication.json")
# Searched in every sentence, case-folded (nlp/casefold.py).
_VERB = CaseFolded(re.compile(r"\b(?:%s)\b" % "|".join(_VOCAB["verbs"]), re.IGNORECASE))
_VERBAL = CaseFolded(re.compile(r"\b(?:%s)\b" % "|".join(_VOCAB["verbal_cues"]), re.IGNORECASE))
_ROLES = [(role, re.compile(pattern)) for role, pattern in _VOCAB["recipient_patterns"]]
_NAME_AFTER = re.compile(r"\b(?:with|to)\s+(?:the\s+)?(?P<name>[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)")
# Credentials that stay in capitals when a sentence written in capitals is read in title
# case ("DISCUSSED WITH DR. OKAFOR" -> "Discussed With Dr. Okafor"; "JONES, RN" keeps "RN").
# "DO" is left out: in capitals it is far more often the verb ("PLEASE DO NOT").
_CREDENTIALS = re.compile(r"\b(?:Md|Pa(?:-C)?|Rn|Np|Crnp|Aprn|Lpn|Cnm|Ed|Er)\b")
_EXCLUDE = CaseFolded(re.compile(r"\b(?:%s)\b" % "|".join(_VOCAB["not_communication"]), re.IGNORECASE))


# Where a sentence turns from one act to another ("discussed with Dr. A at 3 PM and will be
# discussed at tumor board", "Dr. A could not be reached; discussed with Dr. B", "discussed
# with Dr. A, who will call the patient"): a planned or failed act in one clause does not
# undo the communication in another.
_CLAUSE = re.compile(r";|\bbut\b|\bhowever\b|,?\s+who\b|,?\s+and\s+(?=(?:will|would|to\s+be|"
                     r"findings|results|they|it|this|these|the)\b)", re.IGNORECASE)


# The comparison describes an earlier study: a communication written there ("CT 1/3/2024,
# whose findings were discussed with Dr. Lee at that time") was of that study, not this one.
_EARLIER_STUDY_SECTIONS = frozenset({"COMPARISON"})


def infer(ctx: AnalysisContext) -> list[Inference]:
    out: list[Inference] = []
    for sentence in ctx.sentences:
        text = ctx.text[sentence.start:sentence.end]
        folded = fold(text)
        verb_pattern = _VERB.pattern_for(text)
        if verb_pattern.search(folded) is None:
            continue
        section = ctx.section_at(sentence.start)
        if section is not None and section.name in _EARLIER_STUDY_SECTIONS:
            continue
        exclude = _EXCLUDE.pattern_for(text)
        # Clauses that plan, fail or request a communication drop out; the rest of the
        # sentence is read as one ("paged at 06:45; Dr. Osei acknowledged receipt").
        kept = [(lo, hi) for lo, hi in _clauses(text) if exclude.search(folded, lo, hi) is None]
        verb = next((v for lo, hi in kept if (v := verb_pattern.search(folded, lo, hi))), None)
        if verb is None:
            continue
        recipients: list[str] = []
        spans: list[tuple[int, int]] = []
        names = _mixed_case(text)
        for lo, hi in kept:
            roles, found = _recipients(names[:hi], max(lo, verb.end()), lo)
            recipients += [r for r in roles if r not in recipients]
            spans += found
        if not recipients:
            continue
        base = sentence.start
        evidence = [(base + verb.start(), base + verb.end())]
        evidence += [(base + s, base + e) for s, e in spans]
        when, when_spans = _when(ctx, sentence.start, sentence.end)
        evidence += when_spans
        verbal = _VERBAL.pattern_for(text)
        out.append(FollowupCommunicationInference(
            communicated_at=[when] if when else None,
            recipient=recipients,
            was_acknowledged=any(verbal.search(folded, lo, hi) for lo, hi in kept),
            extension=ctx.evidence(*token_spans_for(ctx, sorted(evidence))) or None))
    return out


def _mixed_case(text: str) -> str:
    """A sentence written in capitals, in title case (same length, so offsets hold): names
    and titles are told by their capital first letter ("Dr. Okafor", "Smith, RN")."""
    if any(c.islower() for c in text) or not any(c.isupper() for c in text):
        return text
    return _CREDENTIALS.sub(lambda m: m.group(0).upper(), text.title())


def _clauses(text: str) -> list[tuple[int, int]]:
    bounds = [0] + [m.start() for m in _CLAUSE.finditer(text)] + [len(text)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def _recipients(text: str, after: int, start: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """The recipients named in text[start:] (a role or title anywhere, else a name after the
    verb, which ends at ``after``)."""
    found: list[tuple[int, str, tuple[int, int]]] = []
    for role, pattern in _ROLES:
        for m in pattern.finditer(text, start):
            if not any(m.start() < e and s < m.end() for _, _, (s, e) in found):
                found.append((m.start(), role, m.span()))
    if not found:
        m = _NAME_AFTER.search(text, max(0, after - 1))
        if m and m.group("name").lower() not in _VOCAB["not_names"]:
            found.append((m.start("name"), "unknown", m.span("name")))
    found.sort()
    roles: list[str] = []
    for _, role, _span in found:
        if role not in roles:
            roles.append(role)
    return roles, [span for _, _, span in found]


def _when(ctx: AnalysisContext, start: int, end: int) -> tuple[str | None, list[tuple[int, int]]]:
    dates = [d for d in ctx.dates if start <= d.start < end]
    times = [t for t in ctx.times if start <= t.start < end]
    spans = [(d.start, d.end) for d in dates[:1]] + [(t.start, t.end) for t in times[:1]]
    date = dates[0] if dates else None
    if date is not None and (date.two_digit_year or date.date is None or date.precision != "day"):
        return None, spans
    day = date.date if date is not None else (ctx.document_date if times else None)
    if day is None:
        return None, spans
    if times:
        return f"{day.isoformat()}T{times[0].hour:02d}:{times[0].minute:02d}:00", spans
    return f"{day.isoformat()}T00:00:00", spans
