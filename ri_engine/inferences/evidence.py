"""Extensions RI attaches to inferences: token evidence, ``section``, focused sentences.

- ``coded(ctx, code, spans)``: a CodeableConcept carrying token evidence for ``spans``
  (only when the request asked for evidence).
- ``section_extension(ctx, offset)``: RI's ``section`` extension for the most specific
  section holding ``offset``, or None outside any recognised section.
- ``section_value(code, display)``: the same for a known section code (one shared value).
- ``sentences_extension(url, spans)``: ``ci_sentence`` / ``modality_sentences`` values
  ("start-end;start-end", end exclusive).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..context import AnalysisContext
from ..knowledge import load_json
from ..models import CodeableConcept, Coding, Extension
from ..nlp.types import Code

LOINC_OID = "2.16.840.1.113883.6.1"


def coded(ctx: AnalysisContext, code: Code, spans: Iterable[tuple[int, int]] = ()) -> CodeableConcept:
    # Positional (coding, text, extension): the hot path of every coded value.
    return CodeableConcept([Coding(code.system, None, code.code, code.display)], None,
                           ctx.evidence(*spans) or None)


def section_extension(ctx: AnalysisContext, offset: int) -> Extension | None:
    """One value per kind of section, shared by every inference in such a section."""
    section = ctx.section_at(offset)
    if section is None or section.loinc_code is None:
        return None
    return section_value(section.loinc_code, section.loinc_display)


@functools.cache
def section_value(code: str, display: str | None) -> Extension:
    """RI's ``section`` extension for a section with this LOINC ``code`` and ``display``."""
    # The value depends on the section's LOINC code only, not on where the section is,
    # so requests share it too (inference values never change once built): a 3 KB report
    # of several studies has some twenty sections, five extensions each.
    data = load_json("sections.json")
    return Extension(url="section", extension=[
        Extension(url="code", value_string=code),
        Extension(url="codingSystem", value_string=LOINC_OID),
        Extension(url="codingSystemName", value_string=data["coding_system_name"]),
        Extension(url="displayName", value_string=display),
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
