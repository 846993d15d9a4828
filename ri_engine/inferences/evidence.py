"""Extensions RI attaches to inferences: token evidence, ``section``, focused sentences.

- ``coded(ctx, code, spans)``: a CodeableConcept carrying token evidence for ``spans``
  (only when the request asked for evidence).
- ``section_extension(ctx, offset)``: RI's ``section`` extension for the most specific
  section holding ``offset``, or None outside any recognised section.
- ``sentences_extension(url, spans)``: ``ci_sentence`` / ``modality_sentences`` values
  ("start-end;start-end", end exclusive).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..context import AnalysisContext
from ..knowledge import load_json
from ..models import CodeableConcept, Coding, Extension
from ..nlp.types import Code, Section

LOINC_OID = "2.16.840.1.113883.6.1"


def coded(ctx: AnalysisContext, code: Code, spans: Iterable[tuple[int, int]] = ()) -> CodeableConcept:
    # Positional (coding, text, extension): the hot path of every coded value.
    return CodeableConcept([Coding(code.system, None, code.code, code.display)], None,
                           ctx.evidence(*spans) or None)


def section_extension(ctx: AnalysisContext, offset: int) -> Extension | None:
    """One value per section and request, shared by every inference in that section."""
    section = ctx.section_at(offset)
    if section is None or section.loinc_code is None:
        return None
    made: dict[tuple[int, int], Extension] = ctx.layers.setdefault("evidence.sections", {})
    extension = made.get((section.start, section.end))
    if extension is None:
        extension = made[section.start, section.end] = _section_extension(section)
    return extension


def _section_extension(section: Section) -> Extension:
    data = load_json("sections.json")
    return Extension(url="section", extension=[
        Extension(url="code", value_string=section.loinc_code),
        Extension(url="codingSystem", value_string=LOINC_OID),
        Extension(url="codingSystemName", value_string=data["coding_system_name"]),
        Extension(url="displayName", value_string=section.loinc_display),
    ])


def sentences_extension(url: str, spans: Iterable[tuple[int, int]]) -> Extension:
    return Extension(url=url, value_string=";".join(f"{s}-{e}" for s, e in spans))


def token_spans_for(ctx: AnalysisContext, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split character spans into RI's token units (one evidence entry per word)."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        for token in ctx.tokens(start, end):
            if token not in out:
                out.append(token)
    return out
