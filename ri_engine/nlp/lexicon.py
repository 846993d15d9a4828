"""Lexicons from ``ri_engine/knowledge`` and one phrase matcher over all of them.

Every term becomes a spaCy ``PhraseMatcher`` pattern (lower-cased, or exact case for
ambiguous abbreviations such as "US" and "PE") whose match id is ``"<group>|<key>|<flag>"``:
group says which lexicon (finding, anatomy, laterality, change, severity, chronicity,
feature, temporal, multiplicity, cue, pseudo and label (key <category>:<direction>),
terminator, modality), key the entry and flag "pl" for a generated plural.
``Lexicon.match(doc)`` returns ``Term`` values, longest match first within each group,
overlaps inside a group removed.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from ..knowledge import load_json
from .alternation import phrase_alternation
from .types import Code, Term

SYSTEMS = {"SCT": "http://snomed.info/sct", "RADLEX": "http://radlex.org", "LOINC": "http://loinc.org"}
MODIFIER_GROUPS = ("change", "severity", "chronicity", "feature", "temporal", "multiplicity")


def _word_pattern(words: list[str]) -> re.Pattern[str]:
    """Any of ``words`` as whole words, case-insensitive; a space matches any gap."""
    return re.compile(rf"\b{phrase_alternation(words)}\b", re.IGNORECASE)


def make_code(triple: list[str]) -> Code:
    system, code, display = triple
    return Code(SYSTEMS.get(system, system), code, display)


def plural(term: str) -> str:
    """English plural of the last word ("lymph node" -> "lymph nodes")."""
    head, _, last = term.rpartition(" ")
    if last.endswith("is"):
        last = last[:-2] + "es"
    elif last.endswith(("s", "x", "ch", "sh", "z")):
        last = last + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last = last + "s"
    return f"{head} {last}" if head else last


def expand(term: str, placeholders: dict[str, list[str]]) -> list[str]:
    """``term`` with each ``{name}`` left out and replaced by every word of its list
    ("cannot be {certainty} excluded" -> "cannot be excluded", "cannot be entirely excluded", ...)."""
    for name, words in placeholders.items():
        slot = "{%s}" % name
        if slot in term:
            return [t for w in ["", *words] for t in expand(" ".join(term.replace(slot, w).split()),
                                                            placeholders)]
    return [term]


@dataclass(frozen=True)
class FindingEntry:
    key: str
    codes: tuple[Code, ...]
    tags: frozenset[str]
    anatomy: tuple[str, ...]
    # (entry key, words): the mention is that entry's finding when its sentence holds one of
    # the words, and no finding at all when none matches ("filling defect").
    by_context: tuple[tuple[str, re.Pattern[str]], ...] = ()
    # ... and no finding at all when its sentence holds one of these ("mixing artifact").
    not_in_context: re.Pattern[str] | None = None


@dataclass(frozen=True)
class AnatomyEntry:
    key: str
    codes: tuple[Code, ...]
    laterality: str | None
    parents: tuple[str, ...]
    lobe: str | None


@dataclass(frozen=True)
class ModalityEntry:
    key: str
    code: Code
    loinc_generic: Code | None


_START = attrgetter("start")
# Hedges that end a denial only where they open a clause (context.json clause_terminators):
# right after a comma, semicolon, dash or parenthesis.
_CLAUSE_TERMINATOR = "clause"
_OPENS_CLAUSE = re.compile(r"[,;(\u2014\u2013-][ \t]*$")
# Connectors of what a finding is taken for (context.json qualifier_terminators): they end a
# denial where they open a clause, an adverb allowed between ("absent flow, highly suspicious
# for torsion"), or follow what is no finding ("absent flow consistent with torsion"); right
# after a finding of the same clause ("no mass consistent with malignancy") the denial goes on.
_QUALIFIER_TERMINATOR = "qualifier"
_OPENS_CLAUSE_ADVERB = re.compile(
    r"[,;(\u2014\u2013-][ \t]*(?:(?:\w+ly|most|more|also|again)[ \t]+){0,2}$", re.IGNORECASE)
_AFTER_FINDING = re.compile(r"[^,;:.()\n]{0,40}")
# Or a chain of prepositional phrases of any length that place the finding ("no mass in the
# upper outer quadrant of the left breast consistent with ..."): its location, not a clause.
# Each phrase is a preposition and words that are no preposition, so the parse is unique.
_PREPOSITION = r"(?:in|of|at|on|within|along|involving|near|from|to|throughout|about|around|into)"
_CLAUSE_WORD = r"(?:is|are|was|were|there|but|and|or|which|that|where|with|without|seen)"
_LOCATION_AFTER_FINDING = re.compile(
    rf"(?:[ \t]+{_PREPOSITION}(?:[ \t]+(?!(?:{_PREPOSITION}|{_CLAUSE_WORD})\b)[\w'/-]+)+)+[ \t]*",
    re.IGNORECASE)
_LOCATION_MAX = 120
# After what is no finding, a connector ends a denial only when the denied thing is a sign
# whose absence is the finding ("no flow ... consistent with torsion"), not when the text
# qualifies that sign ("no abnormal flow ... consistent with torsion"): context.json
# absence_signs, sign_qualifiers. The sign is looked for in the connector's clause.
_CONTEXT = load_json("context.json")
_ABSENCE_SIGN = re.compile(r"\b(?:(%s)[ \t]+(?:[A-Za-z-]+[ \t]+)?)?(?:%s)\b" % (
    "|".join(map(re.escape, _CONTEXT["sign_qualifiers"])),
    "|".join(re.escape(w).replace(r"\ ", r"[ \t]+") for w in _CONTEXT["absence_signs"])),
    re.IGNORECASE)
_CLAUSE_BEFORE = re.compile(r"[^,;:.()\n]{0,%d}$" % _LOCATION_MAX)
# A size or severity word right after a finding, with no comma or conjunction between, opens
# the next finding of a run-on sentence whose period was dropped, which capitals hide from the
# sentence splitter ("NO FOCAL CONSOLIDATION SMALL RIGHT PLEURAL EFFUSION"): it ends a denial.
_RUN_ON = "run-on"
_RUN_ON_WORD = re.compile(r"[ \t]+(small|large|moderate|mild|trace|tiny|minimal|severe)\b",
                          re.IGNORECASE)


def _absence_is_the_sign(text: str, connector: int) -> bool:
    """The clause before a connector names a sign whose absence is a finding ("no flow in
    the left testis"), not qualified as abnormal ("no asymmetric flow")."""
    clause = _CLAUSE_BEFORE.search(text, max(0, connector - _LOCATION_MAX), connector)
    if clause is None:
        return False
    signs = list(_ABSENCE_SIGN.finditer(text, clause.start(), connector))
    return bool(signs) and signs[-1].group(1) is None


class Lexicon:
    """All term lists plus the matchers built from them (built once per process)."""

    def __init__(self, nlp: Language) -> None:
        self.findings: dict[str, FindingEntry] = {}
        self.anatomy: dict[str, AnatomyEntry] = {}
        self.laterality: dict[str, Code] = {}
        self.modifier_codes: dict[tuple[str, str], Code | None] = {}
        self.modalities: dict[str, ModalityEntry] = {}
        self._lower = PhraseMatcher(nlp.vocab, attr="LOWER")
        self._exact = PhraseMatcher(nlp.vocab, attr="ORTH")
        self._patterns: dict[str, list[str]] = {}
        self._exact_patterns: dict[str, list[str]] = {}
        self._load_findings()
        self._load_anatomy()
        self._load_modifiers()
        self._load_context()
        self._load_modalities()
        tokenizer = nlp.tokenizer
        for match_id, terms in self._patterns.items():
            self._lower.add(match_id, [tokenizer(t) for t in terms])
        for match_id, terms in self._exact_patterns.items():
            self._exact.add(match_id, [tokenizer(t) for t in terms])
        # Match id (a string hash) -> (group, key, plural), decoded once here, not per hit.
        strings = nlp.vocab.strings
        self._ids: dict[int, tuple[str, str, bool]] = {}
        for match_id in [*self._patterns, *self._exact_patterns]:
            group, key, flag = match_id.split("|")
            self._ids[strings[match_id]] = (group, key, flag == "pl")
        # Finding term text (lower case, single spaces) -> (key, plural), for ``finding_term``.
        self._finding_terms: dict[str, tuple[str, bool]] = {}
        for match_id, terms in self._patterns.items():
            group, key, flag = match_id.split("|")
            if group == "finding":
                for term in terms:
                    self._finding_terms.setdefault(" ".join(term.split()), (key, flag == "pl"))

    # --- loading ---------------------------------------------------------------------

    def _add(self, group: str, key: str, terms: list[str], *, plurals: bool = False,
             extra_plurals: list[str] | None = None, exact: list[str] | None = None) -> None:
        singular = sorted({t.lower() for t in terms})
        self._patterns.setdefault(f"{group}|{key}|", []).extend(singular)
        if plurals or extra_plurals:
            forms = {plural(t) for t in singular} if plurals else set()
            forms |= {t.lower() for t in extra_plurals or []}
            forms -= set(singular)
            if forms:
                self._patterns.setdefault(f"{group}|{key}|pl", []).extend(sorted(forms))
        if exact:
            self._exact_patterns.setdefault(f"{group}|{key}|", []).extend(exact)

    def _load_findings(self) -> None:
        for key, entry in load_json("findings.json")["entries"].items():
            self.findings[key] = FindingEntry(
                key=key, codes=tuple(make_code(c) for c in entry["codes"]),
                tags=frozenset(entry.get("tags", ())), anatomy=tuple(entry.get("anatomy", ())),
                by_context=tuple((rule["key"], _word_pattern(rule["text_any"]))
                                 for rule in entry.get("by_context", ())),
                not_in_context=(_word_pattern(entry["not_in_context"])
                                if entry.get("not_in_context") else None))
            self._add("finding", key, entry["terms"], plurals=not entry.get("no_plural"),
                      exact=entry.get("case_sensitive_terms"))
        self._add("nonfinding", "nonfinding", load_json("findings.json")["not_findings"]["terms"])

    def _load_anatomy(self) -> None:
        data = load_json("anatomy.json")
        for side, entry in data["laterality"].items():
            self.laterality[side] = make_code(entry["code"])
            self._add("laterality", side, entry["terms"])
        for key, entry in data["entries"].items():
            self.anatomy[key] = AnatomyEntry(
                key=key, codes=tuple(make_code(c) for c in entry["codes"]),
                laterality=entry.get("laterality"), parents=tuple(entry.get("parents", ())),
                lobe=entry.get("lobe"))
            self._add("anatomy", key, entry["terms"], extra_plurals=entry.get("plural_terms"))

    def _load_modifiers(self) -> None:
        data = load_json("modifiers.json")
        for group in MODIFIER_GROUPS:
            for key, entry in data[group].items():
                code = entry.get("code")
                self.modifier_codes[(group, key)] = make_code(code) if code else None
                self._add(group, key, entry["terms"])

    def _load_context(self) -> None:
        data = load_json("context.json")
        seen: dict[str, tuple[str, set[str]]] = {}
        placeholders = {k: v for k, v in data["placeholders"].items() if k != "note"}
        for cue in data["cues"]:
            for term in (t for raw in cue["terms"] for t in expand(raw, placeholders)):
                term = term.lower()
                category, directions = seen.setdefault(term, (cue["category"], set()))
                if category != cue["category"]:
                    raise ValueError(
                        f"context.json: cue {term!r} is both {category} and {cue['category']}")
                directions.add(cue["direction"])
        for term, (category, directions) in seen.items():
            direction = directions.pop() if len(directions) == 1 else "both"
            # Pseudo-cues are their own group: matched beside the cues they overlap rather
            # than losing to a longer one ("there is no" in "there is no change in ...").
            group = "pseudo" if category == "pseudo" else "cue"
            self._patterns.setdefault(f"{group}|{category}:{direction}|", []).append(term)
        # "Pneumothorax: none": its own group, so that "none" still matches as a cue.
        self._add("label", "negated:backward", data["label_values"]["terms"])
        self._add("terminator", "terminator", data["terminators"])
        self._add("terminator", _CLAUSE_TERMINATOR, data["clause_terminators"])
        self._add("terminator", _QUALIFIER_TERMINATOR, data["qualifier_terminators"])

    def _load_modalities(self) -> None:
        for key, entry in load_json("modalities.json")["entries"].items():
            generic = entry.get("loinc_generic")
            self.modalities[key] = ModalityEntry(
                key=key, code=make_code(entry["code"]),
                loinc_generic=Code(SYSTEMS["LOINC"], generic[0], generic[1]) if generic else None)
            self._add("modality", key, entry["terms"], exact=entry.get("case_sensitive_terms"))

    # --- matching --------------------------------------------------------------------

    def match(self, doc: Doc) -> dict[str, list[Term]]:
        """Terms found in ``doc`` by group, each list sorted by start offset."""
        # Per group: (-length, start, arrival, end, key, plural), so that a plain sort puts
        # the longest first, then the leftmost, then the first found (entries sharing a span).
        raw: dict[str, list[tuple[int, int, int, int, str, bool]]] = {}
        ids = self._ids
        for matcher in (self._lower, self._exact):
            for match_id, start, end in matcher(doc):
                group, key, plural = ids[match_id]
                hits = raw.get(group)
                if hits is None:
                    hits = raw[group] = []
                hits.append((start - end, start, len(hits), end, key, plural))
        out: dict[str, list[Term]] = {}
        starts = doc.user_data.get("token_starts")
        ends = doc.user_data.get("token_ends")
        text = doc.user_data.get("text")
        if starts is None or ends is None or text is None:
            starts = [t.idx for t in doc]
            ends = [t.idx + len(t.text) for t in doc]
            text = doc.text
        for group, hits in raw.items():
            # Longest first, then leftmost; drop anything overlapping a kept match.
            hits.sort()
            taken = bytearray(len(doc))  # 1 for every token of a kept match
            kept: list[Term] = []
            for _, start, _, end, key, plural in hits:
                # Most terms are one word: one byte read and written, no slice made.
                if end - start == 1:
                    if taken[start]:
                        continue
                    taken[start] = 1
                elif taken.find(1, start, end) != -1:
                    continue
                else:
                    taken[start:end] = b"\x01" * (end - start)
                first, last = starts[start], ends[end - 1]
                # Positional (lexicon, key, start, end, text, plural): a report has hundreds.
                kept.append(Term(group, key, first, last, text[first:last], plural))
            kept.sort(key=_START)
            out[group] = kept
        if "terminator" in out:
            out["terminator"] = [t for t in out["terminator"] if self._ends_denial(
                t, text, out.get("finding"))]
        run_on = [Term("terminator", _RUN_ON, m.start(1), m.end(1), m.group(1))
                  for f in out.get("finding", ()) if (m := _RUN_ON_WORD.match(text, f.end))]
        if run_on:
            out["terminator"] = sorted([*out.get("terminator", []), *run_on], key=_START)
        return out

    @staticmethod
    def _ends_denial(term: Term, text: str, findings: list[Term] | None) -> bool:
        """Whether a matched terminator ends a denial where it stands (see the constants)."""
        if term.key == _CLAUSE_TERMINATOR:
            return _OPENS_CLAUSE.search(text, max(0, term.start - 8), term.start) is not None
        if term.key != _QUALIFIER_TERMINATOR:
            return True
        if _OPENS_CLAUSE_ADVERB.search(text, max(0, term.start - 40), term.start):
            return True
        index = bisect_right([f.end for f in findings], term.start) - 1 if findings else -1
        if index >= 0:
            # The finding of the same clause nearest before it: the connector qualifies it.
            end = findings[index].end  # type: ignore[index]
            if _AFTER_FINDING.fullmatch(text, end, term.start) is not None:
                return False
            if term.start - end <= _LOCATION_MAX and \
                    _LOCATION_AFTER_FINDING.fullmatch(text, end, term.start) is not None:
                return False
        return _absence_is_the_sign(text, term.start)

    def finding_term(self, words: str) -> tuple[str, bool] | None:
        """(entry key, plural) when ``words`` (lower case, single spaces) is a finding term."""
        return self._finding_terms.get(words)

    def describe(self) -> dict[str, Any]:
        """Entry counts per lexicon (for ``verbose`` output and tests)."""
        return {"findings": len(self.findings), "anatomy": len(self.anatomy),
                "modalities": len(self.modalities), "patterns": len(self._patterns)}
