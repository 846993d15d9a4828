"""Build the spaCy pipeline once and run it on a report or an order description."""

from __future__ import annotations

import datetime as dt

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from . import components  # noqa: F401  (registers the ri_* factories)
from .lexicon import Lexicon
from .tokenizer import RadiologyTokenizer
from .types import ProcedureMention

COMPONENTS = ("ri_layout", "ri_terms", "ri_measurements", "ri_mentions", "ri_procedures")


def build_nlp(section_scheme: str | None = None) -> Language:
    """``spacy.blank("en")`` with the radiology tokenizer and every ``ri_*`` component."""
    nlp = spacy.blank("en")
    nlp.tokenizer = RadiologyTokenizer(nlp.vocab)
    nlp.add_pipe("ri_layout", config={"scheme": section_scheme or ""})
    for name in COMPONENTS[1:]:
        nlp.add_pipe(name)
    return nlp


class Pipeline:
    """The loaded pipeline: ``analyse(text, date)`` gives a ``Doc`` with every ``ri_*`` layer."""

    # Order descriptions repeat ("CT CHEST W CONTRAST"), and a pipeline run costs about
    # 0.25 ms however short the text: their procedures are kept (bounded, oldest dropped).
    ORDER_CACHE_SIZE = 512

    def __init__(self, section_scheme: str | None = None) -> None:
        self.nlp = build_nlp(section_scheme)
        self._order_procedures: dict[str, tuple[ProcedureMention, ...]] = {}

    @property
    def lexicon(self) -> Lexicon:
        return self.nlp.get_pipe("ri_terms").lexicon

    @property
    def section_codes(self) -> dict[str, tuple[str, str]]:
        return self.nlp.get_pipe("ri_layout").scheme.codes

    def analyse(self, text: str, document_date: dt.date | None = None) -> Doc:
        doc = self.nlp.make_doc(text)
        doc.user_data["document_date"] = document_date
        doc.user_data["text"] = text
        for _name, component in self.nlp.pipeline:
            doc = component(doc)
        return doc

    def procedures_in(self, text: str) -> list[ProcedureMention]:
        """Procedures named in a short text such as an order description ("Ct head/brain w/dye")."""
        found = self._order_procedures.get(text)
        if found is None:
            found = tuple(self.analyse(text)._.ri_procedures)
            if len(self._order_procedures) >= self.ORDER_CACHE_SIZE:
                del self._order_procedures[next(iter(self._order_procedures))]
            self._order_procedures[text] = found
        return list(found)
