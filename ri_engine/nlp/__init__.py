"""The radiology NLP layer: a spaCy pipeline on ``spacy.blank("en")`` plus our components.

Use it through ``AnalysisContext`` (``ri_engine/context.py``): the engine runs
``Pipeline.analyse(text, document_date)`` once per request and copies every layer into the
context. Builders read ``ctx.<layer>``; they never run the pipeline again.

Layers (all offsets are character offsets into the exact document text, end exclusive)
----------------------------------------------------------------------------------------
``ctx.sections: list[Section]``
    ``name`` (FINDINGS, IMPRESSION, HISTORY, INDICATION, TECHNIQUE, EXAM, COMPARISON,
    RECOMMENDATION, ADDENDUM), ``start``/``end`` (header to next header), ``header_end``,
    ``loinc_code``/``loinc_display`` as RI prints them. ``ctx.section_at(offset)``.
``ctx.sentences: list[Span]``
    Trimmed sentences (no list marker, headers left out). ``ctx.sentence_at(offset)``,
    ``ctx.sentences_in(("FINDINGS", "IMPRESSION"))``.
``ctx.doc``
    The spaCy ``Doc``: tokens with ``.idx``/``.text``, ``doc.sents``. ``ctx.tokens(start, end)``
    gives the (start, end) of every non-space token in a span: RI's evidence unit.
``ctx.terms: dict[str, list[Term]]``
    Raw lexicon hits by group: "finding", "anatomy", "laterality", "modality", "change",
    "severity", "chronicity", "feature", "temporal", "multiplicity", "cue" (key
    "<category>:<direction>"), "pseudo" (pseudo-cues, key "pseudo:<direction>"),
    "label" (a negative value after a label's colon, key "negated:backward"), "terminator".
    ``Term(lexicon, key, start, end, text, plural)``.
``ctx.measurements: list[Measurement]``
    ``values`` (1-3 dimensions) or ``low``/``high`` (range), ``unit`` "mm"/"cm",
    ``comparator`` ("<", "<=", ">", ">="), ``prior`` (size of an earlier study),
    ``value_spans``; ``largest_mm``.
``ctx.dates: list[DateMention]``, ``ctx.times: list[TimeMention]``
    Dates resolved against the document date (``.date``, ``.iso()``, ``.two_digit_year``);
    times (``.hour``, ``.minute``).
``ctx.anatomy: list[AnatomyMention]``
    ``key`` (entry of knowledge/anatomy.json), ``codes`` (SNOMED first, then RadLex),
    ``laterality: Laterality | None`` (``value`` left/right/bilateral, ``code``), ``plural``,
    ``parents``. "RUL", "left kidney", "renal", "pulmonary" are all anatomy.
``ctx.findings: list[FindingMention]``
    Every finding term of knowledge/findings.json with: ``key``, ``codes`` (SUBJECT OF
    INFORMATION), ``sentence``, ``section_name``, ``assertion: Assertion`` (``negated``,
    ``uncertainty`` possible/probable/improbable/cannotBeExcluded, ``historical``, ``known``,
    ``hypothetical``, ``other_experiencer``, ``resolved``, ``asserted``), ``resolved`` (a
    resolution cue or "resolved" qualifier, not denied), ``anatomy``, ``laterality``,
    ``measurements``, ``modifiers`` (``kind`` change/severity/chronicity/feature/temporal/
    multiplicity; ``modifier(kind)``), ``multiple``, ``date``, ``tags``, ``spans``.
``ctx.procedures: list[ProcedureMention]`` / ``ctx.order_procedures``
    Imaging procedures named in the text / read from the ordered procedure description:
    ``modality_key`` (ct, cta, mri, us, xr, mammography, pet, pet_ct, nm, fluoroscopy,
    biopsy, imaging), ``modality: Code``, ``anatomy``, ``laterality``, ``contrast``
    (with / without / without_then_with), ``section_name``.
``ctx.lexicon``
    The loaded ``Lexicon``: ``findings``/``anatomy``/``modalities`` entries by key,
    ``laterality`` codes, ``modifier_codes[(kind, key)]``.

Components (registered in ``components.py``): ``ri_layout``, ``ri_terms``,
``ri_measurements``, ``ri_mentions``, ``ri_procedures``; Doc extensions in ``extensions.py``.
"""

from __future__ import annotations

from .pipeline import Pipeline, build_nlp
from .types import (
    AnatomyMention, Assertion, Code, FindingMention, Laterality, Measurement, Modifier,
    ProcedureMention, Section, Span, Term,
)

__all__ = sorted([
    "AnatomyMention", "Assertion", "Code", "FindingMention", "Laterality", "Measurement",
    "Modifier", "Pipeline", "ProcedureMention", "Section", "Span", "Term", "build_nlp",
])
