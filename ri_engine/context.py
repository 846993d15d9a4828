"""What every inference builder reads: one document, its metadata and the NLP layers.

The engine builds one ``AnalysisContext`` per request (see ``engine.py``); each module in
``ri_engine/inferences/`` is a function ``infer(ctx) -> list[Inference]``. Layers that the NLP
pipeline computes (sections, sentences, finding mentions, ...) are filled in by the engine
before any builder runs; builders never re-run the pipeline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .models import (
    Extension, ModelConfiguration, OrderedProcedure, PatientDocument, PatientRecord,
    token_extension,
)


@dataclass(frozen=True)
class Section:
    """A report section: character span of its body, its name and RI's LOINC code."""

    name: str            # normalised: FINDINGS, IMPRESSION, HISTORY, TECHNIQUE, ...
    start: int           # offset of the header (or of the text when there is no header)
    end: int             # exclusive
    loinc_code: str | None = None
    loinc_display: str | None = None
    header_end: int | None = None  # offset just after "FINDINGS:" when a header was written


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # exclusive


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
    # Filled by the NLP layer; see ri_engine/nlp for the mention types.
    layers: dict[str, Any] = field(default_factory=dict)

    @property
    def document_id(self) -> str:
        return self.document.id

    @property
    def include_evidence(self) -> bool:
        return bool(self.configuration.include_evidence)

    def evidence(self, *spans: tuple[int, int]) -> list[Extension]:
        """Token evidence for (start, end) character spans, or [] when not requested."""
        if not self.include_evidence:
            return []
        return [token_extension(s, e - s, self.document_id) for s, e in spans if e > s]

    def section_at(self, offset: int) -> Section | None:
        """The most specific section containing ``offset`` (RI's rule for ``section``)."""
        best = None
        for section in self.sections:
            if section.start <= offset < section.end:
                if best is None or section.end - section.start < best.end - best.start:
                    best = section
        return best

    def sentence_at(self, offset: int) -> Span | None:
        for sentence in self.sentences:
            if sentence.start <= offset < sentence.end:
                return sentence
        return None
