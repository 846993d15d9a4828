"""The pipeline's spaCy components, all registered here (``ri_<name>`` factories).

Order on ``spacy.blank("en")`` with the radiology tokenizer:
``ri_layout`` (sections, sentences) -> ``ri_terms`` (lexicon matches) ->
``ri_measurements`` (sizes, dates, times) -> ``ri_mentions`` (anatomy and findings with
assertion) -> ``ri_procedures`` (imaging procedures named in the text).
The document date, needed to resolve "September 5", travels in ``doc.user_data["document_date"]``.
"""

from __future__ import annotations

import numpy
from spacy.attrs import IDX, SENT_START
from spacy.language import Language
from spacy.tokens import Doc

from .dates import find_dates, find_times
from .extensions import register_extensions
from .lexicon import Lexicon
from .measurements import find_measurements
from .mentions import build_anatomy, build_findings
from .procedures import find_procedures
from .sections import SectionScheme, find_sections
from .sentences import split_sentences

register_extensions()


def text_of(doc: Doc) -> str:
    """The document text, cached: ``doc.text`` re-joins every token on each access."""
    text = doc.user_data.get("text")
    if text is None:
        text = doc.text
        doc.user_data["text"] = text
    return text


class LayoutComponent:
    """Sections and sentences; also marks each sentence's first token for ``doc.sents``."""

    def __init__(self, scheme: str | None) -> None:
        self.scheme = SectionScheme.load(scheme or None)

    def __call__(self, doc: Doc) -> Doc:
        text = text_of(doc)
        sections = find_sections(text, self.scheme)
        sentences = split_sentences(text, sections)
        ext = doc._  # each ``doc._`` builds an accessor object: one per component
        ext.ri_sections = sections
        ext.ri_sentences = sentences
        # One array write instead of a Python-level setter call per token.
        # Token offsets are sorted and distinct, so each start offset is found by bisection;
        # a start that falls inside a token, or past the last one, marks nothing.
        offsets = doc.to_array(IDX)
        starts = numpy.fromiter({s.start for s in sentences} | {s.start for s in sections},
                                dtype=numpy.int64)
        at = numpy.searchsorted(offsets, starts)
        inside = at < len(offsets)
        at, starts = at[inside], starts[inside]
        flags = numpy.full(len(offsets), -1, dtype=numpy.int64)
        flags[at[offsets[at] == starts]] = 1
        flags = flags.astype(numpy.uint64)
        if len(flags):
            flags[0] = 1
        doc.from_array([SENT_START], flags.reshape(-1, 1))
        return doc


class TermsComponent:
    def __init__(self, nlp: Language) -> None:
        self.lexicon = Lexicon(nlp)

    def __call__(self, doc: Doc) -> Doc:
        doc._.ri_terms = self.lexicon.match(doc)
        return doc


class MeasurementsComponent:
    def __call__(self, doc: Doc) -> Doc:
        text = text_of(doc)
        ext = doc._
        ext.ri_measurements = find_measurements(text)
        ext.ri_dates = find_dates(text, doc.user_data.get("document_date"))
        ext.ri_times = find_times(text)
        return doc


class MentionsComponent:
    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp

    def __call__(self, doc: Doc) -> Doc:
        lexicon = self.nlp.get_pipe("ri_terms").lexicon
        ext = doc._
        terms = ext.ri_terms
        text = text_of(doc)
        anatomy, used = build_anatomy(text, terms, lexicon)
        ext.ri_anatomy = anatomy
        ext.ri_findings = build_findings(
            text, ext.ri_sentences, ext.ri_sections, terms, anatomy, used,
            ext.ri_measurements, ext.ri_dates, lexicon)
        return doc


class ProceduresComponent:
    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp

    def __call__(self, doc: Doc) -> Doc:
        lexicon = self.nlp.get_pipe("ri_terms").lexicon
        ext = doc._
        ext.ri_procedures = find_procedures(
            text_of(doc), ext.ri_terms, ext.ri_anatomy, ext.ri_sections, lexicon)
        return doc


@Language.factory("ri_layout", default_config={"scheme": ""},
                  assigns=["token.is_sent_start", "doc._.ri_sections", "doc._.ri_sentences"])
def make_layout(nlp: Language, name: str, scheme: str) -> LayoutComponent:
    return LayoutComponent(scheme)


@Language.factory("ri_terms", assigns=["doc._.ri_terms"])
def make_terms(nlp: Language, name: str) -> TermsComponent:
    return TermsComponent(nlp)


@Language.factory("ri_measurements",
                  assigns=["doc._.ri_measurements", "doc._.ri_dates", "doc._.ri_times"])
def make_measurements(nlp: Language, name: str) -> MeasurementsComponent:
    return MeasurementsComponent()


@Language.factory("ri_mentions", requires=["doc._.ri_terms", "doc._.ri_sentences"],
                  assigns=["doc._.ri_anatomy", "doc._.ri_findings"])
def make_mentions(nlp: Language, name: str) -> MentionsComponent:
    return MentionsComponent(nlp)


@Language.factory("ri_procedures", requires=["doc._.ri_terms", "doc._.ri_anatomy"],
                  assigns=["doc._.ri_procedures"])
def make_procedures(nlp: Language, name: str) -> ProceduresComponent:
    return ProceduresComponent(nlp)
