"""The values the NLP layer hands to inference builders.

Every span is a pair of character offsets ``(start, end)`` (end exclusive) into the exact
document text, so builders can turn any of them into RI evidence with ``ctx.evidence``.
Builders read these values and never change them. Most are frozen dataclasses; the ones
made by the hundred per report (terms, spans, sections, assertions, modifiers, anatomy
and finding mentions) are slotted instead: a frozen dataclass sets each field through
``object.__setattr__`` and costs about 2.4 times as much to build, 0.3 ms of a 3 KB
report.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

Offsets = tuple[int, int]


class _Spanning(Protocol):
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


S = TypeVar("S", bound=_Spanning)


@dataclass(slots=True)
class Section:
    """A report section: character span of its body, its name and RI's LOINC code."""

    name: str            # normalised: FINDINGS, IMPRESSION, HISTORY, TECHNIQUE, ...
    start: int           # offset of the header (or of the text when there is no header)
    end: int             # exclusive
    loinc_code: str | None = None
    loinc_display: str | None = None
    header_end: int | None = None  # offset just after "FINDINGS:" when a header was written


@dataclass(slots=True)
class Span:
    start: int
    end: int  # exclusive


@dataclass(frozen=True)
class Code:
    """One coding: ``system`` is a URI (SNOMED, RadLex, LOINC), ``display`` as RI prints it."""

    system: str
    code: str
    display: str


@dataclass(slots=True)
class Term:
    """A lexicon hit: which entry of which lexicon matched which characters."""

    lexicon: str          # "finding", "anatomy", "modality", "modifier", "cue", ...
    key: str              # the entry id inside its lexicon file
    start: int
    end: int
    text: str
    plural: bool = False  # matched the plural form of the entry ("nodules")


@dataclass(slots=True)
class Assertion:
    """ConText-style status of a mention (what the sentence says about it).

    ``uncertainty`` is one of None, "possible", "probable", "improbable",
    "cannotBeExcluded", "uncertain" (the RI interpretation each maps to is in
    ``ri_engine.knowledge/interpretations.json``).
    """

    negated: bool = False
    uncertainty: str | None = None
    historical: bool = False        # "history of", "known", "prior", "dating back to"
    hypothetical: bool = False      # "if", "rule out", "evaluate for", "assess for"
    other_experiencer: bool = False  # "family history of", "mother's"
    known: bool = False             # "known", "again seen", "dating back to" (RI: KNOWN)
    # "has resolved", "resolution of", "no longer seen": there before, gone now (RI: RESOLVED).
    # Not a denial: RI reports the finding with RESOLVED, not NONE (ri_contract 5.6).
    resolved: bool = False
    cues: tuple[Offsets, ...] = ()  # the trigger words that set the flags above

    @property
    def asserted(self) -> bool:
        """Stated as present for this patient now (may still be uncertain or historical)."""
        return not (self.negated or self.resolved or self.hypothetical or self.other_experiencer)


@dataclass(frozen=True)
class Measurement:
    """A size: 1-3 dimensions (``values``), or a range (``low``/``high``), in one unit.

    ``unit`` is "mm" or "cm" (RI writes MILLIMETER / CENTIMETER). ``prior`` is True for a
    size the text gives for an earlier study ("previously 6 mm", "from 4 mm").
    """

    start: int
    end: int
    unit: str
    values: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    comparator: str | None = None   # "<", ">", "<=", ">="
    prior: bool = False
    value_spans: tuple[Offsets, ...] = ()

    @property
    def is_range(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def largest_mm(self) -> float:
        """The largest dimension in millimetres (the upper end for a range)."""
        numbers = list(self.values) + [v for v in (self.low, self.high) if v is not None]
        scale = 10.0 if self.unit == "cm" else 1.0
        return max(numbers) * scale if numbers else 0.0


@dataclass(frozen=True)
class Laterality:
    """left / right / bilateral with its SNOMED code and where the text said so."""

    value: str            # "left", "right", "bilateral"
    code: Code
    start: int
    end: int


@dataclass(slots=True)
class AnatomyMention:
    """A body structure named in the text ("right upper lobe", "RUL", "kidneys")."""

    key: str                   # entry id in knowledge/anatomy.json
    start: int
    end: int
    text: str
    codes: tuple[Code, ...]    # SNOMED structure first, then RadLex synonyms
    laterality: Laterality | None = None
    plural: bool = False
    parents: tuple[str, ...] = ()  # keys of coarser structures (lung for right upper lobe)


@dataclass(slots=True)
class Modifier:
    """A qualifier attached to a finding: change, severity, chronicity, feature, ..."""

    kind: str                  # "change", "severity", "chronicity", "feature", "temporal"
    key: str                   # entry id in knowledge/modifiers.json ("increased", "acute")
    start: int
    end: int
    text: str
    code: Code | None = None   # None for free-text features ("lobulated")


@dataclass(slots=True)
class FindingMention:
    """One clinical finding named in the text, with everything attached to it.

    ``start``/``end`` cover the finding term itself ("pneumothorax", "mass");
    ``sentence`` is the sentence holding it, ``clause`` the part of it between clause
    breaks ("but", "however", ";") and ``section_name`` its section
    (FINDINGS, IMPRESSION, ...). ``codes`` are the SUBJECT OF INFORMATION codings.
    """

    key: str
    start: int
    end: int
    text: str
    codes: tuple[Code, ...]
    sentence: Offsets
    section_name: str | None
    assertion: Assertion
    anatomy: tuple[AnatomyMention, ...] = ()
    laterality: Laterality | None = None
    measurements: tuple[Measurement, ...] = ()
    modifiers: tuple[Modifier, ...] = ()
    multiple: bool = False
    date: str | None = None          # "dating back to 6/29/2012" -> "2012-06-29"
    date_span: Offsets | None = None
    tags: frozenset[str] = field(default_factory=frozenset)  # lexicon tags ("lesion", ...)
    clause: Offsets | None = None    # the part of the sentence between clause breaks ("but", ";")

    def modifier(self, kind: str) -> Modifier | None:
        for mod in self.modifiers:
            if mod.kind == kind:
                return mod
        return None

    def modifiers_of(self, kind: str) -> tuple[Modifier, ...]:
        return tuple(m for m in self.modifiers if m.kind == kind)

    @property
    def resolved(self) -> bool:
        """Gone since an earlier study: a resolution cue reaches it ("the effusion has
        resolved") or "resolved" qualifies it ("resolved right pneumothorax"); never when
        it is denied."""
        if self.assertion.negated:
            return False
        return self.assertion.resolved or any(
            m.kind == "temporal" and m.key == "resolved" for m in self.modifiers)

    @property
    def spans(self) -> tuple[Offsets, ...]:
        """Evidence spans: the term, then anatomy, laterality, sizes and qualifiers."""
        out: list[Offsets] = [(self.start, self.end)]
        out += [(a.start, a.end) for a in self.anatomy]
        if self.laterality and (self.laterality.start, self.laterality.end) not in out:
            out.append((self.laterality.start, self.laterality.end))
        for m in self.measurements:
            out.extend(m.value_spans or ((m.start, m.end),))
        out += [(m.start, m.end) for m in self.modifiers]
        return tuple(sorted(set(out)))


@dataclass(frozen=True)
class ProcedureMention:
    """An imaging procedure named in the text or the order ("CT of the head", "US pelvis").

    ``modality`` is the SNOMED modality coding; ``anatomy`` the body structures it
    covers (two for "head/brain"); ``contrast`` one of None, "with", "without",
    "without_then_with".
    """

    start: int
    end: int
    text: str
    modality_key: str
    modality: Code
    anatomy: tuple[AnatomyMention, ...] = ()
    laterality: Laterality | None = None
    contrast: str | None = None
    section_name: str | None = None
    modality_span: Offsets | None = None  # the modality words alone ("CT" in "Head CT")


class OffsetIndex(Generic[S]):
    """The span holding a character offset, by bisection over sorted, disjoint spans.

    Sections and sentences are asked for once per mention; a scan of the whole list each
    time made that quadratic in the report length. ``of`` gives None for spans that
    overlap or are out of order (callers then scan).
    """

    def __init__(self, spans: Sequence[S], starts: list[int]) -> None:
        self.spans = spans
        self.starts = starts

    @classmethod
    def of(cls, spans: Sequence[S]) -> OffsetIndex[S] | None:
        if any(a.end > b.start for a, b in zip(spans, spans[1:])):
            return None
        return cls(spans, [s.start for s in spans])

    def at(self, offset: int) -> S | None:
        i = bisect_right(self.starts, offset) - 1
        if i < 0 or offset >= self.spans[i].end:
            return None
        return self.spans[i]
