"""Finding mentions: each finding term with its anatomy, laterality, sizes and qualifiers.

Attachment works inside a clause (a sentence cut at "but", "however", "although", ";"):
every anatomy, size, laterality or qualifier in the clause goes to the nearest finding
term of the clause (by character distance; on a tie, to the finding before it, as in
"nodule in the right upper lobe"). A finding without anatomy in its clause takes the
default anatomy of its lexicon entry ("appendicitis" -> appendix), if any.
"""

from __future__ import annotations

import dataclasses
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import TypeVar

from ..knowledge import load_json
from .assertion import assert_mention, denied_between
from .dates import DateMention
from .ellipsis import elided_findings
from .lexicon import MODIFIER_GROUPS, Lexicon
from .types import (
    AnatomyMention, FindingMention, Laterality, Measurement, Modifier, OffsetIndex, Section,
    Span, Term,
)

CLAUSE_BREAKS = frozenset({"but", "however", "although", "though", "whereas", "yet", ";",
                            "nonetheless", "nevertheless"})
_GAP_ONE_WORD = re.compile(r"[\s-]*(?:[A-Za-z]+[\s-]+)?$")
_DATED = re.compile(r"(?:dating\s+back\s+to|dated|since|from|on)\s*$", re.IGNORECASE)
# "without tension", "non-displaced": a qualifier the text denies is no qualifier.
_NEGATED_MODIFIER = re.compile(r"\b(?:without|no|not|non)[\s-]*$", re.IGNORECASE)
# "to document resolution", "confirm complete resolution": a resolution still to come.
_RESOLUTION_TO_COME = re.compile(
    r"\b(?:document|confirm|ensure|assess|evaluate|check|verify)(?:\s+for)?(?:\s+complete)?\s*$",
    re.IGNORECASE)
_GOVERNS = re.compile(r"\s+of\b", re.IGNORECASE)  # "resolution of ...": about what follows
# Qualifiers written before their noun ("new mass", "small effusion") attach forward.
_PRENOMINAL = frozenset({"temporal", "severity", "chronicity", "feature", "multiplicity"})
_CURRENT_SIZE = re.compile(r"(?:measur\w*|now|currently|today)\s*(?:up\s+to\s*)?(?:approximately\s*)?$",
                           re.IGNORECASE)

# "A 3 cm liver cyst and a 1.1 cm right renal stone": a size followed, within a few words
# that are no link (adjectives, anatomy), by a finding measures that finding.
_LINK_WORD = (r"(?!(?:and|or|with|without|in|of|on|at|to|from|a|an|the|is|are|was|were|which|"
              r"that|but|than|previously|now|series|image)\b)")
_PRENOMINAL_GAP = re.compile(r"[ \t-]*(?:%s[A-Za-z]+[ \t-]+){0,3}$" % _LINK_WORD, re.IGNORECASE)
_PRONOUN_MEASURES = re.compile(
    r"\s*(?:it|this)\s+(?:now\s+|currently\s+)?(?:measures|measured|is\s+measured)\b", re.IGNORECASE)
_SIZE_AFTER = re.compile(r"[ \t:,(-]*")
# A size right before a device or the study's geometry ("10 mm drainage catheter", "1.25 mm
# thin sections") measures that, not a finding (findings.json "not_finding_sizes").
_OTHER_SIZE = re.compile(r"[ \t-]*(?:%s[A-Za-z]+[ \t-]+){0,2}?(?:%s)\b" % (_LINK_WORD, "|".join(
    re.escape(t) for t in load_json("findings.json")["not_finding_sizes"]["terms"])), re.IGNORECASE)

# "The 2 cm mass abuts the 8 mm vessel": a size after a determiner opens a noun phrase and
# measures that phrase's head. The phrase runs over the words after the size up to a link
# word or punctuation; when no finding is among them (nor right after "of": "a 2 cm area
# of consolidation"), its head is something else and the size is not a finding's.
_DETERMINER_BEFORE = re.compile(
    r"(?<![A-Za-z])(?:the|a|an|this|that|these|those|its|their|each)[ \t]+$", re.IGNORECASE)
# Without a determiner, a size opens a noun phrase after a word that does not measure
# ("encases 5 mm segmental bronchus", "abuts 8 mm vessel"), unlike a size a measuring word
# or a comparison leads to ("measures 8 mm transverse", "up to 4 mm", "previously 5 mm").
_WORD_BEFORE = re.compile(r"(?<![A-Za-z])([A-Za-z]+)[ \t]+$")
_MEASURING_WORDS = frozenset((
    "measure", "measures", "measured", "measuring", "measurement", "measurements", "up", "upto",
    "to", "approximately", "approx", "about", "roughly", "nearly", "almost", "least", "most",
    "than", "of", "from", "by", "now", "previously", "currently", "initially", "is", "are",
    "was", "were", "be", "been", "diameter", "size", "sized", "and", "or", "between", "span",
    "spans", "spanning", "thickness", "thick", "length", "width", "height", "caliber",
    "calibre", "x", "at", "in", "within", "under", "over", "below", "above", "max", "maximum",
    "maximal", "minimum", "mean", "with", "without", "image", "images", "series", "sections",
    "slice", "slices", "cm", "mm", "largest", "biggest", "dominant", "each", "total",
    "combined", "aggregate", "averaging", "diameters", "sizes", "axis", "dimension",
    "dimensions", "estimated", "estimating", "approximating"))
# The dimension a size gives, right after it and ending its phrase ("estimated 3 cm across",
# "unchanged 3 cm craniocaudal"): the size measures what came before, whatever the word
# before it; "8 mm long segment" goes on to a noun and stays a noun phrase.
_DIMENSION_AFTER = re.compile(
    r"[ \t]+(?:across|long|wide|deep|tall|thick|transverse(?:ly)?|craniocaudal(?:ly)?|"
    r"anteroposterior(?:ly)?|AP|CC|TRV|axial(?:ly)?|sagittal(?:ly)?|coronal(?:ly)?|"
    r"in\s+(?:diameter|size|length|width|greatest\s+dimension))\b"
    r"(?![ \t-]+%s[A-Za-z])" % _LINK_WORD, re.IGNORECASE)
_NOUN_PHRASE = re.compile(r"(?:[ \t-]+%s[A-Za-z0-9][A-Za-z0-9']*){1,8}" % _LINK_WORD, re.IGNORECASE)
_OF_PHRASE = re.compile(r"[ \t]+of[ \t]+(?:(?:the|a|an)[ \t]+)?(?:%s[A-Za-z]+[ \t-]+){0,3}"
                        % _LINK_WORD, re.IGNORECASE)

T = TypeVar("T")


def build_anatomy(text: str, terms: dict[str, list[Term]], lexicon: Lexicon) -> tuple[
        list[AnatomyMention], set[int]]:
    """Anatomy mentions with laterality, and the start offsets of laterality terms used."""
    lateralities = terms.get("laterality", [])
    starts = [t.start for t in lateralities]
    used: set[int] = set()
    out: list[AnatomyMention] = []
    for term in terms.get("anatomy", []):
        entry = lexicon.anatomy[term.key]
        laterality = None
        if entry.laterality:
            code = lexicon.laterality[entry.laterality]
            laterality = Laterality(entry.laterality, code, term.start, term.end)
        else:
            index = bisect_left(starts, term.start) - 1
            if index >= 0:
                side = lateralities[index]
                if side.end <= term.start and _GAP_ONE_WORD.fullmatch(text[side.end:term.start]):
                    laterality = Laterality(side.key, lexicon.laterality[side.key],
                                            side.start, side.end)
                    used.add(side.start)
        out.append(AnatomyMention(key=term.key, start=term.start, end=term.end, text=term.text,
                                  codes=entry.codes, laterality=laterality, plural=term.plural,
                                  parents=entry.parents))
    return out, used


def build_findings(text: str, sentences: Sequence[Span], sections: Sequence[Section],
                   terms: dict[str, list[Term]], anatomy: list[AnatomyMention],
                   used_laterality: set[int], measurements: list[Measurement],
                   dates: list[DateMention], lexicon: Lexicon) -> list[FindingMention]:
    findings = _outside(terms.get("finding", []), terms.get("nonfinding", []))
    if not findings:
        return []
    # A coordinated word is often an anatomy term too ("pleural"); it may not be a finding,
    # a side or a qualifier already.
    taken = [t for group in ("finding", "nonfinding", "laterality", *MODIFIER_GROUPS)
             for t in terms.get(group, [])]
    elided = elided_findings(text, findings, taken, lexicon.finding_term)
    if elided:
        findings = sorted([*findings, *elided], key=lambda t: t.start)
    pseudo = terms.get("pseudo", [])
    cues = outside_pseudo(terms.get("cue", []), pseudo)
    labels = terms.get("label")
    if labels:  # rare: structured "Label: none" lines
        cues = sorted([*cues, *labels], key=lambda t: t.start)
    terminators = terms.get("terminator", [])
    free_sides = [t for t in terms.get("laterality", []) if t.start not in used_laterality]
    modifiers = sorted((t for g in MODIFIER_GROUPS for t in terms.get(g, [])
                        if not _NEGATED_MODIFIER.search(text, max(0, t.start - 12), t.start)),
                       key=lambda t: t.start)
    # "partially resolved" (a pseudo-cue), "to document resolution": no resolution.
    modifiers = [m for m in modifiers if m.lexicon != "temporal" or m.key != "resolved"
                 or not (_overlaps_any(m, pseudo)
                         or _RESOLUTION_TO_COME.search(text, max(0, m.start - 30), m.start))]
    all_terminators, all_cues = _Sorted(terminators), _Sorted(cues)
    section_index = OffsetIndex.of(sections)
    # The clauses holding findings, in text order, with their findings and sentence context.
    clauses: list[tuple[int, int]] = []
    clause_findings: list[list[Term]] = []
    contexts: list[tuple[Span, list[Term], list[int]]] = []
    for sentence, sentence_findings in _by_sentence(sentences, findings):
        in_sentence = _Sorted(sentence_findings)
        s_terminators = all_terminators.within(sentence)
        breaks = [sentence.start] + [t.start for t in s_terminators
                                     if t.text.lower() in CLAUSE_BREAKS] + [sentence.end]
        context = (sentence, all_cues.within(sentence), [t.start for t in s_terminators])
        for lo, hi in zip(breaks, breaks[1:]):
            found = in_sentence.within(Span(lo, hi))
            if found:
                clauses.append((lo, hi))
                clause_findings.append(found)
                contexts.append(context)
    # Every anatomy, side, size and qualifier goes to the clause holding it, found by
    # bisection over the clause starts: one pass over each layer rather than a range query
    # per clause and layer (a report has dozens of clauses and a few items in each).
    finding_starts = [f.start for f in findings]
    finding_ends = {f.end for f in findings}
    sizes = [m for m in measurements
             if not _sizes_other_thing(text, m, finding_starts, finding_ends)]
    layers = {"anatomy": anatomy, "laterality": free_sides, "measurement": sizes,
              "modifier": modifiers}
    clause_items = _by_clause(clauses, layers)
    date_starts = [d.start for d in dates]  # dates come in text order
    out: list[FindingMention] = []
    for (lo, hi), found, items, (sentence, s_cues, term_starts) in zip(
            clauses, clause_findings, clause_items, contexts):
        groups = _assign(found, _governed(found, items, text), text)
        clause_dates = [d for d in dates[bisect_left(date_starts, lo):bisect_left(date_starts, hi)]
                        if _DATED.search(text[lo:d.start])]
        for index, term in enumerate(found):
            if lexicon.findings[term.key].by_context:
                resolved = _by_context(text, term, sentence, lexicon, findings, finding_starts)
                if resolved is None:
                    continue
                term = resolved
            section = (section_index.at(term.start) if section_index is not None
                       else _section_at(sections, term.start))
            out.append(_mention(text, term, groups[index], sentence, (lo, hi), section, s_cues,
                                term_starts, clause_dates, lexicon))
    _sizes_in_next_sentence(text, sentences, out, sizes)
    return out


def _sizes_in_next_sentence(text: str, sentences: Sequence[Span], mentions: list[FindingMention],
                            sizes: list[Measurement]) -> None:
    """"There is a cyst in the left kidney. It measures 1.8 cm.": a sentence that opens with
    "It"/"This" and measures, and names no finding, gives its sizes to the one finding of the
    sentence before it."""
    by_sentence: dict[tuple[int, int], list[int]] = {}
    for index, mention in enumerate(mentions):
        by_sentence.setdefault(mention.sentence, []).append(index)
    size_starts = [m.start for m in sizes]
    for before, sentence in zip(sentences, sentences[1:]):
        held = by_sentence.get((before.start, before.end))
        if (held is None or len(held) != 1 or (sentence.start, sentence.end) in by_sentence
                or not _PRONOUN_MEASURES.match(text, sentence.start, sentence.end)):
            continue
        lo, hi = bisect_left(size_starts, sentence.start), bisect_left(size_starts, sentence.end)
        found = [m for m in sizes[lo:hi] if m.end <= sentence.end]
        mention = mentions[held[0]]
        if found and not mention.assertion.negated:
            mentions[held[0]] = dataclasses.replace(
                mention, measurements=mention.measurements + tuple(found))


def _by_context(text: str, term: Term, sentence: Span, lexicon: Lexicon,
                findings: list[Term], finding_starts: list[int]) -> Term | None:
    """The finding a context-read term names in its sentence ("filling defect in the right
    popliteal vein" -> dvt), or None when the sentence names none of its contexts, calls
    it an artifact, or names that finding itself ("filling defects ..., consistent with pulmonary embolism":
    one embolism, stated with its sign)."""
    entry = lexicon.findings[term.key]
    if entry.not_in_context is not None and entry.not_in_context.search(text, sentence.start, sentence.end):
        return None  # "filling defect ..., likely mixing artifact"
    for key, words in entry.by_context:
        if words.search(text, sentence.start, sentence.end):
            lo, hi = bisect_left(finding_starts, sentence.start), bisect_left(finding_starts, sentence.end)
            if any(f.key == key for f in findings[lo:hi]):
                return None
            return dataclasses.replace(term, key=key)
    return None


def _sizes_other_thing(text: str, size: Measurement, finding_starts: list[int],
                       finding_ends: set[int]) -> bool:
    """The size is written right before a device or the study's geometry with no finding
    between ("10 mm drainage catheter"), not before a finding ("6 mm nodule near the tube"),
    or it opens a noun phrase whose head is no finding ("the 8 mm vessel", "abuts 8 mm vessel")."""
    index = bisect_left(finding_starts, size.end)
    following = finding_starts[index] if index < len(finding_starts) else len(text)
    m = _OTHER_SIZE.match(text, size.end)
    if m is not None:
        return following >= m.end()
    if not _DETERMINER_BEFORE.search(text, max(0, size.start - 12), size.start):
        word = _WORD_BEFORE.search(text, max(0, size.start - 24), size.start)
        if word is None or word.group(1).lower() in _MEASURING_WORDS:
            return False
        if _DIMENSION_AFTER.match(text, size.end):
            return False
        if word.end(1) in finding_ends:
            return False  # "nodule 8 mm right upper lobe": the size follows its finding
    phrase = _NOUN_PHRASE.match(text, size.end)
    if phrase is None or following < phrase.end():
        return False
    of = _OF_PHRASE.match(text, phrase.end())
    return of is None or following > of.end()


def _outside(terms: list[Term], blocked: list[Term]) -> list[Term]:
    """``terms`` not inside a ``blocked`` term. Both come sorted, and the blocked terms (one
    lexicon group) never overlap, so only the last one starting at or before a term can hold it."""
    if not blocked:
        return list(terms)
    starts = [b.start for b in blocked]
    out = []
    for term in terms:
        index = bisect_right(starts, term.start) - 1
        if index < 0 or term.end > blocked[index].end:
            out.append(term)
    return out


def outside_pseudo(cues: list[Term], pseudo: list[Term]) -> list[Term]:
    """``cues`` sharing no character with a pseudo-cue: "no change" hides the "no" of "there
    is no change in ...", however long the cue holding that "no" is. Both lists are sorted
    and each is free of overlaps, so one merge pass does it."""
    if not pseudo:
        return cues
    out: list[Term] = []
    index = 0
    for cue in cues:
        while index < len(pseudo) and pseudo[index].end <= cue.start:
            index += 1
        if index < len(pseudo) and pseudo[index].start < cue.end:
            continue
        out.append(cue)
    return out


def _overlaps_any(term: Term, others: list[Term]) -> bool:
    return any(o.start < term.end and term.start < o.end for o in others)


def _mention(text: str, term: Term, attached: dict[str, list], sentence: Span,
             clause: tuple[int, int], section: Section | None, cues: list[Term], terminators: list[int],
             clause_dates: list[DateMention], lexicon: Lexicon) -> FindingMention:
    entry = lexicon.findings[term.key]
    anatomy: list[AnatomyMention] = attached["anatomy"]
    if not anatomy and entry.anatomy:
        anatomy = [AnatomyMention(key=k, start=term.start, end=term.end, text=term.text,
                                  codes=lexicon.anatomy[k].codes, parents=lexicon.anatomy[k].parents)
                   for k in entry.anatomy]
    laterality = next((a.laterality for a in anatomy if a.laterality), None)
    if laterality is None and attached["laterality"]:
        side = attached["laterality"][0]
        laterality = Laterality(side.key, lexicon.laterality[side.key], side.start, side.end)
    # "Pneumothorax without mediastinal shift", "fracture, not displaced": a qualifier
    # written after its finding and a denial is denied (the finding is not).
    mods = tuple(Modifier(kind=m.lexicon, key=m.key, start=m.start, end=m.end, text=m.text,
                          code=lexicon.modifier_codes.get((m.lexicon, m.key)))
                 for m in attached["modifier"]
                 if m.start < term.end or not denied_between(term.end, m.start, cues, terminators))
    date = clause_dates[0] if clause_dates else None
    sizes: list[Measurement] = attached["measurement"]
    if date is not None:
        # A size given next to "dating back to <date>" describes the earlier study unless the
        # text says it is the size now ("measuring", "now").
        sizes = [m if m.prior or _CURRENT_SIZE.search(text[max(0, m.start - 30):m.start])
                 else dataclasses.replace(m, prior=True) for m in sizes]
    multiple = term.plural or any(m.kind == "multiplicity" and m.key == "multiple" for m in mods)
    assertion = assert_mention(term.start, term.end, cues, terminators)
    return FindingMention(
        key=term.key, start=term.start, end=term.end, text=term.text, codes=entry.codes,
        sentence=(sentence.start, sentence.end), section_name=section.name if section else None,
        assertion=assertion, anatomy=tuple(anatomy), laterality=laterality,
        measurements=tuple(sizes), modifiers=mods, multiple=multiple,
        date=date.iso() if date else None, date_span=(date.start, date.end) if date else None,
        tags=entry.tags, clause=clause)


def _governed(findings: list[Term], items: dict[str, list], text: str) -> dict[str, list]:
    """Drop a temporal qualifier that governs a noun phrase after it which is no finding:
    in "small left pneumothorax, with resolution of the previously seen mediastinal shift"
    the shift resolved, not the pneumothorax."""
    modifiers = items.get("modifier")
    if not modifiers:
        return items
    kept = [m for m in modifiers
            if not (m.lexicon == "temporal" and _GOVERNS.match(text, m.end)
                    and not any(f.start >= m.end for f in findings))]
    if len(kept) == len(modifiers):
        return items
    return {**items, "modifier": kept}


def _assign(findings: list[Term], items: dict[str, list], text: str = "") -> list[dict[str, list]]:
    """Give every item to its nearest finding (ties go to the finding before the item).

    A qualifier that usually precedes its noun ("new", "small", "acute") goes to the next
    finding when that one follows within a few words ("mass with new adenopathy").
    """
    if len(findings) == 1:
        return [items]  # most clauses name one finding: everything in them is its
    groups: list[dict[str, list]] = [{name: [] for name in items} for _ in findings]
    for name, values in items.items():
        for value in values:
            if name == "modifier" and value.lexicon in _PRENOMINAL:
                following = next((i for i, f in enumerate(findings) if f.start >= value.end), None)
                if following is not None and len(
                        text[value.end:findings[following].start].split()) <= 3:
                    groups[following][name].append(value)
                    continue
            if name == "measurement":
                following = next((i for i, f in enumerate(findings) if f.start >= value.end), None)
                # Not when the size is written right after a finding ("Cyst 2 cm nodule 5 mm").
                preceding = following - 1 if following is not None else len(findings) - 1
                after_finding = preceding >= 0 and _SIZE_AFTER.fullmatch(
                    text, findings[preceding].end, value.start) is not None
                if following is not None and not after_finding and _PRENOMINAL_GAP.fullmatch(
                        text, value.end, findings[following].start):
                    groups[following][name].append(value)
                    continue
            best, best_key = 0, None
            for index, finding in enumerate(findings):
                if value.end <= finding.start:
                    key = (finding.start - value.end, 1)
                elif value.start >= finding.end:
                    key = (value.start - finding.end, 0)
                else:
                    key = (0, 0)
                if best_key is None or key < best_key:
                    best, best_key = index, key
            groups[best][name].append(value)
    return groups


def _by_sentence(sentences: Sequence[Span], findings: list[Term]) -> list[tuple[Span, list[Term]]]:
    """The sentences holding findings, in order, each with what ``_Sorted.within`` gives.

    Sentences are sorted and disjoint, so a finding can only be inside the last sentence
    starting at or before it: one bisection per finding rather than a range query per
    sentence (most sentences hold none).
    """
    starts = [sentence.start for sentence in sentences]
    grouped: dict[int, list[Term]] = {}
    for term in findings:  # sorted by start, as ``within`` returns them
        index = bisect_right(starts, term.start) - 1
        if index >= 0 and term.start < sentences[index].end and term.end <= sentences[index].end:
            grouped.setdefault(index, []).append(term)
    return [(sentences[index], grouped[index]) for index in sorted(grouped)]


def _by_clause(clauses: list[tuple[int, int]], layers: dict[str, Sequence[T]]) -> list[dict[str, list]]:
    """Per clause (sorted, disjoint), the items of each layer inside it, in layer order.

    An item is inside [lo, hi) when it starts there and ends by ``hi``, as for ``_Sorted``.
    """
    starts = [lo for lo, _ in clauses]
    out: list[dict[str, list]] = [{name: [] for name in layers} for _ in clauses]
    for name, items in layers.items():
        for item in items:
            index = bisect_right(starts, item.start) - 1  # type: ignore[attr-defined]
            if index >= 0 and item.end <= clauses[index][1]:  # type: ignore[attr-defined]
                out[index][name].append(item)
    return out


class _Sorted:
    """Items sorted by start offset, with the offsets kept for bisection."""

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self.starts = [i.start for i in items]  # type: ignore[attr-defined]

    def within(self, span: Span) -> list:
        lo = bisect_left(self.starts, span.start)
        hi = bisect_right(self.starts, span.end - 1)
        return [i for i in self.items[lo:hi] if i.end <= span.end]  # type: ignore[attr-defined]


def _section_at(sections: Sequence[Section], offset: int) -> Section | None:
    for section in sections:
        if section.start <= offset < section.end:
            return section
    return None
