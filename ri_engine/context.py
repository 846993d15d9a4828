"""What every inference builder reads: one document, its metadata and the NLP layers.

The engine builds one ``AnalysisContext`` per request (see ``engine.py``); each module in
``ri_engine/inferences/`` is a function ``infer(ctx) -> list[Inference]``. Layers that the NLP
pipeline computes are filled in by the engine before any builder runs; builders never re-run
the pipeline. The layers (all offsets are character offsets into ``ctx.text``; the value
types are in ``ri_engine.nlp.types`` and documented in ``ri_engine/nlp/__init__.py``):

- ``sections``      list[Section]        FINDINGS, IMPRESSION, ... with RI's LOINC code
- ``sentences``     list[Span]           trimmed sentences, headers and list markers left out
- ``terms``         dict[str, list[Term]] raw lexicon matches by group ("finding", "anatomy",
                                         "laterality", "modality", "cue", "change", ...)
- ``measurements``  list[Measurement]    every size in the text
- ``dates``/``times`` list[DateMention] / list[TimeMention]
- ``anatomy``       list[AnatomyMention] every body structure named, with laterality
- ``findings``      list[FindingMention] every finding term with assertion, anatomy,
                                         laterality, sizes and qualifiers attached
- ``procedures``    list[ProcedureMention] imaging procedures named in the text
- ``order_procedures`` list[ProcedureMention] procedures read from the ordered procedure
- ``doc``           the spaCy Doc (tokens: ``ctx.doc[i].idx``, ``.text``; sentences: ``doc.sents``)
- ``lexicon``       the loaded ``ri_engine.nlp.lexicon.Lexicon`` (codes for any entry key)
"""

from __future__ import annotations

import datetime as dt
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .nlp.casefold import fold, folded_pattern
from .nlp.leading import leading_scan
from .nlp.prefilter import Screen, screen_of
from .nlp.dates import DateMention, TimeMention
from .nlp.types import (
    AnatomyMention, FindingMention, Measurement, OffsetIndex, ProcedureMention, Section, Span,
    Term,
)
from .models import (
    Extension, ModelConfiguration, OrderedProcedure, PatientDocument, PatientRecord,
    document_reference, document_token,
)


@dataclass
class AnalysisContext:
    text: str
    patient: PatientRecord
    document: PatientDocument
    configuration: ModelConfiguration
    document_date: dt.date | None
    reference_date: dt.date | None  # encounter start, else document date: base for ages
    ordered_procedures: list[OrderedProcedure]
    sections: list[Section] = field(default_factory=list)
    sentences: list[Span] = field(default_factory=list)
    terms: dict[str, list[Term]] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    dates: list[DateMention] = field(default_factory=list)
    times: list[TimeMention] = field(default_factory=list)
    anatomy: list[AnatomyMention] = field(default_factory=list)
    findings: list[FindingMention] = field(default_factory=list)
    procedures: list[ProcedureMention] = field(default_factory=list)
    order_procedures: list[ProcedureMention] = field(default_factory=list)
    doc: Any = None
    lexicon: Any = None
    # Free-form extra layers a builder owner may add (name them after their module).
    layers: dict[str, Any] = field(default_factory=dict)

    @property
    def document_id(self) -> str:
        return self.document.id

    @property
    def include_evidence(self) -> bool:
        return bool(self.configuration.include_evidence)

    def evidence(self, *spans: tuple[int, int]) -> list[Extension]:
        """Token evidence for (start, end) character spans, or [] when not requested.

        One evidence value per span and request: the same words are evidence for a
        finding, its observation, a critical result and a recommendation, and inferences
        already share those observations. Like every inference value, evidence is never
        changed once built.
        """
        if not self.include_evidence:
            return []
        made = self._evidence
        out = []
        for start, end in spans:
            if end > start:
                extension = made.get((start, end))
                if extension is None:
                    extension = made[start, end] = document_token(self._reference, start, end - start)
                out.append(extension)
        return out

    def folded(self, pattern: re.Pattern[str]) -> tuple[re.Pattern[str], str]:
        """Case-insensitive ``pattern`` as a case-folded scan: (its twin, the text to search),
        offsets as in ``text`` (``ri_engine.nlp.casefold``); the folded text is made once."""
        return folded_pattern(pattern.pattern, pattern.flags).pattern_for(self.text), self._folded_text

    def spans(self, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
        """(start, end) of every match of case-insensitive ``pattern`` over the whole report,
        scanned case-folded once per request (guidelines share their anchor patterns)."""
        key = (pattern.pattern, pattern.flags)
        found = self._spans.get(key)
        if found is None:
            if not self.may_match(pattern):
                found = self._spans[key] = []  # a word every match needs is not in the report
            else:
                scan, folded = self.folded(pattern)
                if isinstance(scan, re.Pattern):  # one that cannot skip ahead on its own
                    scan = leading_scan(scan)     # tried where its leading words are
                found = self._spans[key] = [m.span() for m in scan.finditer(folded)]
        return found

    def may_match(self, pattern: re.Pattern[str]) -> bool:
        """False only when ``pattern`` cannot match anywhere in the report: text that every
        match needs is missing (``ri_engine.nlp.prefilter``; no scan of the report)."""
        return self._screen.may_match_pattern(screen_of(pattern))

    def section_at(self, offset: int) -> Section | None:
        """The most specific section containing ``offset`` (RI's rule for ``section``)."""
        if self._section_index is not None:  # pipeline sections are sorted and disjoint
            return self._section_index.at(offset)
        best = None
        for section in self.sections:
            if section.start <= offset < section.end:
                if best is None or section.end - section.start < best.end - best.start:
                    best = section
        return best

    def sentence_at(self, offset: int) -> Span | None:
        if self._sentence_index is not None:
            return self._sentence_index.at(offset)
        for sentence in self.sentences:
            if sentence.start <= offset < sentence.end:
                return sentence
        return None

    def sentences_in(self, section_names: tuple[str, ...]) -> list[Span]:
        """Sentences whose start lies in a section with one of these names."""
        out = []
        for sentence in self.sentences:
            section = self.section_at(sentence.start)
            if section is not None and section.name in section_names:
                out.append(sentence)
        return out

    def span_text(self, start: int, end: int) -> str:
        return self.text[start:end]

    def tokens(self, start: int, end: int) -> list[tuple[int, int]]:
        """(start, end) of every non-space token inside [start, end) -- RI's evidence unit.

        Same tokens as ``doc.char_span(start, end, alignment_mode="expand")`` minus the
        whitespace ones, found by bisection over the token offsets the tokenizer recorded
        (builders ask for thousands of spans; no spaCy Span or Token objects are made).
        """
        index = self._token_index
        if index is None:
            return self._tokens_from_doc(start, end)
        starts, ends, spaces = index
        if not 0 <= start < len(self.text) or not 0 < end <= len(self.text):
            return [(start, end)]
        # Every character belongs to one token (tokens, their trailing space and the
        # whitespace tokens tile the text), so the token holding char c is the last one
        # starting at or before c.
        first = bisect_right(starts, start) - 1
        last = bisect_right(starts, end - 1) - 1
        if start >= ends[first]:
            first += 1  # ``start`` is the trailing space of a token: not part of it
        return [(starts[i], ends[i]) for i in range(first, last + 1) if not spaces[i]]

    def _tokens_from_doc(self, start: int, end: int) -> list[tuple[int, int]]:
        if self.doc is None:
            return [(start, end)]
        span = self.doc.char_span(start, end, alignment_mode="expand")
        if span is None:
            return [(start, end)]
        return [(t.idx, t.idx + len(t.text)) for t in span if not t.is_space]

    @cached_property
    def _evidence(self) -> dict[tuple[int, int], Extension]:
        return {}

    @cached_property
    def _spans(self) -> dict[tuple[str, int], list[tuple[int, int]]]:
        return {}

    @cached_property
    def _screen(self) -> Screen:
        return Screen(self.text)

    @cached_property
    def _folded_text(self) -> str:
        return fold(self.text)

    @cached_property
    def _reference(self) -> Extension:
        return document_reference(self.document_id)

    # --- indexes, built on first use (the layers never change once builders run) ------

    @cached_property
    def _section_index(self) -> OffsetIndex[Section] | None:
        return OffsetIndex.of(self.sections)

    @cached_property
    def _sentence_index(self) -> OffsetIndex[Span] | None:
        return OffsetIndex.of(self.sentences)

    @cached_property
    def _token_index(self) -> tuple[list[int], list[int], list[bool]] | None:
        user_data = getattr(self.doc, "user_data", None) or {}
        starts, ends = user_data.get("token_starts"), user_data.get("token_ends")
        if starts is None or ends is None or user_data.get("text") != self.text:
            return None
        return starts, ends, [self.text[s].isspace() for s in starts]

