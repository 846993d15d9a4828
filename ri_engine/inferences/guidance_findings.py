"""The lesions guidance applies to: pulmonary, thyroid, adrenal, kidney, liver and pancreas.

A guideline needs more than the finding layer names: the clause a lesion sits in (so
"nodules ... have resolved, but there are new nodules" gives one live lesion), its
current size, lobe and side, whether the noun is plural, and whether it is new. This
module reads those from the text and builds the finding Observation (ri_contract §5.6)
carried inside a guidance inference; when the finding builder has produced a finding
for the same lesion, guidance.py carries that one instead.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..context import AnalysisContext
from ..models import (
    RADLEX, SNOMED, CodeableConcept, Extension, Observation, ObservationComponent, PresentGuidanceInformation,
    Quantity, concept,
)
from ..nlp.casefold import CaseFolded, fold
from ..nlp.measurements import find_measurements
from ..nlp.prefilter import fold_case, literal_finder
from .evidence import section_value
from .quality_measures import ReportText

_CLAUSE = re.compile(r",\s*(?:but|however|whereas|while)\b|;", re.IGNORECASE)
# Where a denial stops inside a clause, as in the finding layer's terminators and the
# negation of ReportText: "No pulmonary nodules, with a 2.1 cm adrenal nodule", "no nodule
# other than a 4 mm ...". Each part names its own lesion.
_PART = re.compile(r",\s*(?:with|and\s+an?)\b|\bother\s+than\b", re.IGNORECASE)
_SIDE = {"right": ("24028007", "RIGHT (QUALIFIER VALUE)"), "left": ("7771000", "LEFT (QUALIFIER VALUE)"),
         "bilateral": ("51440002", "RIGHT AND LEFT (QUALIFIER VALUE)")}
_LOBE = re.compile(
    r"\b(?:(?P<pos>anterior|posterior|medial|lateral|superior|inferior|apical|basal)\s+)?"
    r"(?P<side>right|left)\s+(?P<lobe>upper|middle|lower)\s+lobes?\b"
    r"|\b(?P<abbr>RUL|RML|RLL|LUL|LLL)\b|\b(?P<lingula>lingula\w*)\b"
    r"|\b(?P<both>both\s+lungs|bilateral\s+lungs|bilaterally|both\s+lobes)\b"
    r"|\b(?P<lside>right|left)\s+lung\b", re.IGNORECASE)
_ABBR = {"RUL": ("right", "RIGHT UPPER LOBE"), "RML": ("right", "RIGHT MIDDLE LOBE"),
         "RLL": ("right", "RIGHT LOWER LOBE"), "LUL": ("left", "LEFT UPPER LOBE"),
         "LLL": ("left", "LEFT LOWER LOBE")}
_SIDE_WORD = re.compile(r"\b(right|left|bilateral|both)\b", re.IGNORECASE)
_NEW = re.compile(r"\bnew\b", re.IGNORECASE)
_SMALL = re.compile(r"\b(?:small|tiny)\b", re.IGNORECASE)

# organ -> (organ words, lesion nouns, SOI by noun, anatomy codings)
_ORGANS: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "thyroid": (r"\bthyroid\b|\b(?:right|left)\s+(?:thyroid\s+)?lobe\b|\bisthmus\b",
                r"\b(?:nodules?|lesions?|cysts?)\b",
                [(SNOMED, "69748006", "THYROID STRUCTURE (BODY STRUCTURE)"), (RADLEX, "RID7578", "THYROID GLAND")]),
    "adrenal": (r"\badrenals?\b", r"\b(?:nodules?|masse?s?|lesions?|adenomas?)\b",
                [(SNOMED, "23451007", "ADRENAL GLAND STRUCTURE (BODY STRUCTURE)")]),
    "kidney": (r"\b(?:kidneys?|renal)\b", r"\b(?:cysts?|lesions?|masse?s?)\b",
               [(SNOMED, "64033007", "KIDNEY STRUCTURE (BODY STRUCTURE)"), (RADLEX, "RID205", "KIDNEY")]),
    "liver": (r"\b(?:liver|hepatic)\b", r"\b(?:lesions?|cysts?|masse?s?|hypodensit(?:y|ies)|nodules?)\b",
              [(SNOMED, "10200004", "LIVER STRUCTURE (BODY STRUCTURE)"), (RADLEX, "RID58", "LIVER")]),
    "pancreas": (r"\bpancrea(?:s|tic)\b", r"\b(?:cysts?|cystic\s+lesions?|IPMNs?)\b",
                 [(SNOMED, "15776009", "PANCREATIC STRUCTURE (BODY STRUCTURE)"), (RADLEX, "RID170", "PANCREAS")]),
    "lung": (r"\b(?:pulmonary|lungs?|lobes?|lingula\w*|RUL|RML|RLL|LUL|LLL|perifissural|subpleural)\b",
             r"\bnodul(?:e|es|ar\s+opacit(?:y|ies))\b",
             [(SNOMED, "39607008", "LUNG STRUCTURE (BODY STRUCTURE)"), (RADLEX, "RID1301", "LUNG"),
              (RADLEX, "RID13437", "LUNGS")]),
}
# Searched in every clause: case-folded (the clause is lower-cased once for all of them).
_ORGAN_RX = {organ: (CaseFolded(re.compile(words, re.IGNORECASE)), CaseFolded(re.compile(nouns, re.IGNORECASE)))
              for organ, (words, nouns, _codes) in _ORGANS.items()}
# Any organ's lesion noun: most sentences name none, and then no clause of theirs is read.
_ANY_NOUN = CaseFolded(re.compile("|".join(nouns for _words, nouns, _codes in _ORGANS.values()), re.IGNORECASE))
_NOUN_WORDS = literal_finder(_ANY_NOUN.pattern)  # "nodul", "cyst", ...: a quicker first pass
_SOI = {"nodul": ("27925004", "NODULE (MORPHOLOGIC ABNORMALITY)"), "cyst": ("367643001", "CYST (MORPHOLOGIC ABNORMALITY)"),
        "mass": ("4147007", "MASS (MORPHOLOGIC ABNORMALITY)"), "ipmn": ("367643001", "CYST (MORPHOLOGIC ABNORMALITY)"),
        "adenoma": ("4147007", "MASS (MORPHOLOGIC ABNORMALITY)")}
_LESION_SOI = ("52988006", "LESION (MORPHOLOGIC ABNORMALITY)")


@dataclass(frozen=True)
class Size:
    values_mm: tuple[float, ...]
    written: tuple[float, ...]   # as written, in ``unit``
    unit: str                    # "mm" or "cm"


@dataclass(frozen=True)
class Lesion:
    organ: str
    start: int
    end: int
    clause: tuple[int, int]
    sentence: tuple[int, int]
    noun: str
    plural: bool
    multiple: bool
    new: bool
    small: bool
    sizes: tuple[Size, ...]
    lobes: tuple[str, ...]
    side: str | None


def clause_spans(start: int, text: str) -> list[tuple[int, int]]:
    """The clauses of a sentence starting at ``start`` (split at ', but', ', however', ';')."""
    out, pos = [], 0
    for match in _CLAUSE.finditer(text):
        out.append((start + pos, start + match.start()))
        pos = match.end()
    out.append((start + pos, start + len(text)))
    return out


def _lobes(clause: str) -> tuple[tuple[str, ...], str | None]:
    values: list[str] = []
    sides: set[str] = set()
    for m in _LOBE.finditer(clause):
        if m.group("side"):
            side = m.group("side").lower()
            if m.group("pos"):
                values.append(f"{side.upper()} LUNG")
            values.append(f"{side.upper()} {m.group('lobe').upper()} LOBE")
            sides.add(side)
        elif m.group("abbr"):
            side, value = _ABBR[m.group("abbr").upper()]
            values.append(value)
            sides.add(side)
        elif m.group("lingula"):
            values.append("LINGULA")
            sides.add("left")
        elif m.group("both"):
            values.append("BILATERAL LUNGS")
            sides.add("bilateral")
        elif m.group("lside"):
            values.append(f"{m.group('lside').upper()} LUNG")
            sides.add(m.group("lside").lower())
    side = "bilateral" if "bilateral" in sides or len(sides) > 1 else (sides.pop() if sides else None)
    return tuple(dict.fromkeys(values)), side


def _sizes(text: str, offset: int) -> tuple[Size, ...]:
    out = []
    for m in find_measurements(text):
        if m.prior:
            continue
        scale = 10.0 if m.unit == "cm" else 1.0
        # RI reports the first number of a range ("2 to 3 mm" -> 2 mm); the guideline
        # band uses the upper end so a range never lands in a milder band.
        written = tuple(m.values) if m.values else tuple(v for v in (m.low,) if v is not None)
        band = tuple(m.values) if m.values else tuple(v for v in (m.high,) if v is not None)
        if written:
            out.append(Size(values_mm=tuple(v * scale for v in band), written=written, unit=m.unit))
    return tuple(out)


def find_lesions(ctx: AnalysisContext, report: ReportText, *, include_history: bool) -> list[Lesion]:
    """Guideline-relevant lesions in text order; negated and resolved ones left out."""
    lesions: list[Lesion] = []
    plural_seen: set[tuple[str, str]] = set()   # (section, organ) with a plural mention
    for sentence in report.sentences:
        if sentence.history and not include_history:
            continue
        if not _NOUN_WORDS.search(fold_case(sentence.text)):
            continue
        scanned, any_noun = _ANY_NOUN.scan(sentence.text)
        if not any_noun.search(scanned):
            continue
        section = ctx.section_at(sentence.start)
        section_key = section.name if section else ""
        for c_start, c_end in _parts(ctx.text, clause_spans(sentence.start, sentence.text)):
            clause = ctx.text[c_start:c_end]
            folded = fold(clause)
            for organ, (organ_rx, noun_rx) in _ORGAN_RX.items():
                if not organ_rx.pattern_for(clause).search(folded):
                    continue
                noun = noun_rx.pattern_for(clause).search(folded)
                if noun is None:
                    continue
                start, end = c_start + noun.start(), c_start + noun.end()
                if report.negated(sentence, start, end):
                    continue
                word = noun.group().lower()
                plural = word.endswith(("es", "s", "ies")) and not word.endswith("ss")
                if plural:
                    plural_seen.add((section_key, organ))
                lobes, side = _lobes(clause) if organ == "lung" else ((), _side(clause))
                lesions.append(Lesion(
                    organ=organ, start=start, end=end, clause=(c_start, c_end),
                    sentence=(sentence.start, sentence.end), noun=word, plural=plural,
                    multiple=plural or (section_key, organ) in plural_seen,
                    new=bool(_NEW.search(clause)), small=bool(_SMALL.search(clause)),
                    sizes=_sizes(clause, c_start), lobes=lobes, side=side))
                break  # one lesion per clause
    return lesions


def _parts(text: str, clauses: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The clauses cut where a denial stops (``_PART``). A part naming no lesion noun joins
    the next one, so the organ named before the cut still goes with the lesion after it
    ("Left adrenal gland, with a 1.2 cm nodule")."""
    out: list[tuple[int, int]] = []
    for c_start, c_end in clauses:
        cuts = [m.start() for m in _PART.finditer(text, c_start, c_end)]
        if not cuts:
            out.append((c_start, c_end))
            continue
        start = c_start
        for cut in cuts:
            if _ANY_NOUN.pattern.search(text, start, cut):
                out.append((start, cut))
                start = cut
        out.append((start, c_end))
    return out


def lesion_at(ctx: AnalysisContext, organ: str, span: tuple[int, int], clause: tuple[int, int],
              sentence: tuple[int, int]) -> Lesion:
    """A lesion named by the words at ``span`` inside ``clause`` (guidelines defined as data)."""
    text = ctx.text[clause[0]:clause[1]]
    word = ctx.text[span[0]:span[1]].lower()
    plural = word.endswith("s") and not word.endswith("ss")
    return Lesion(organ=organ, start=span[0], end=span[1], clause=clause, sentence=sentence, noun=word,
                  plural=plural, multiple=plural, new=bool(_NEW.search(text)), small=bool(_SMALL.search(text)),
                  sizes=_sizes(text, clause[0]), lobes=(), side=_side(text))


def _side(clause: str) -> str | None:
    found = {m.group(1).lower() for m in _SIDE_WORD.finditer(clause)}
    if "bilateral" in found or "both" in found or {"right", "left"} <= found:
        return "bilateral"
    return found.pop() if found else None


def _component(code: str, display: str, *, system: str = SNOMED, **value: object) -> ObservationComponent:
    return ObservationComponent(code=_fixed(system, code, display), **value)  # type: ignore[arg-type]


@functools.cache
def _fixed(system: str, code: str, display: str) -> CodeableConcept:
    """A coded value that carries no evidence, shared wherever it appears (values never
    change once built; a lesion's observation has about ten of them)."""
    return concept(system, code, display)


def _unit(unit: str) -> str:
    return "MILLIMETER" if unit == "mm" else "CENTIMETER"


def size_components(lesion: Lesion) -> list[ObservationComponent]:
    out = []
    for size in lesion.sizes[:1]:
        for value in size.written:
            out.append(ObservationComponent(
                code=_fixed(RADLEX, "246115007", "SIZE (ATTRIBUTE)"),
                value_quantity=Quantity(value=int(value) if value == int(value) else value, unit=_unit(size.unit)),
                interpretation=[CodeableConcept(coding=[_current()])]))
    return out


def size_info(lesion: Lesion, item: str = "SIZE") -> PresentGuidanceInformation:
    """The lesion's current size as a present guidance item."""
    return PresentGuidanceInformation(
        present_guidance_item=item,
        sizes=[Observation(resource_type="Observation", component=size_components(lesion))],
        present_guidance_values=[item])


def guidance_item(name: str, *values: str) -> PresentGuidanceInformation:
    return PresentGuidanceInformation(present_guidance_item=name, present_guidance_values=list(values))


def _current():  # type: ignore[no-untyped-def]
    from ..models import Coding
    return Coding(code="15240007", display="CURRENT")


def section_extension(ctx: AnalysisContext, offset: int) -> list[Extension]:
    section = ctx.section_at(offset)
    if section is None or not section.loinc_code:
        return []
    return [section_value(section.loinc_code, section.loinc_display or section.name)]


def observation(lesion: Lesion, identifier: CodeableConcept, obs_id: str, *,
                anatomy: list[tuple[str, str, str]] | None = None,
                subject: CodeableConcept | None = None) -> Observation:
    """The finding Observation for ``lesion`` (component order as RI writes it).

    ``anatomy`` and ``subject`` come from the guideline for lesions of guidelines defined
    as data; organ lesions take theirs from the organ table and the lesion noun.
    """
    soi = next((v for k, v in _SOI.items() if lesion.noun.startswith(k)), _LESION_SOI)
    components = [_component("131195008", "SUBJECT OF INFORMATION (ATTRIBUTE)",
                             value_codeable_concept=subject or _fixed(SNOMED, *soi))]
    anatomy = list(anatomy if anatomy is not None else _ORGANS[lesion.organ][2])
    if lesion.organ == "lung" and any("LOBE" in v for v in lesion.lobes):
        anatomy.insert(1, (RADLEX, "RID13406", "ANATOMICAL LOBE"))
    components += [_component("722871000000108", "ANATOMY (QUALIFIER VALUE)",
                              value_codeable_concept=_fixed(*a)) for a in anatomy]
    if lesion.side:
        components.append(_component("45651917", "LATERALITY (ATTRIBUTE)",
                                     value_codeable_concept=_fixed(SNOMED, *_SIDE[lesion.side])))
    components.append(_component("723851000000107", "GUIDANCE (QUALIFIER VALUE)",
                                 value_codeable_concept=identifier))
    if lesion.small:
        components.append(_component("362981000", "QUALIFIER VALUE (QUALIFIER VALUE)",
                                     value_codeable_concept=_fixed(SNOMED, "703248002", "APPEARANCE (OBSERVABLE ENTITY)")))
    components.append(_component("46150521", "MULTIPLE (QUALIFIER VALUE)", value_boolean=lesion.multiple))
    components += size_components(lesion)
    return Observation(
        resource_type="Observation", id=obs_id, status="unknown",
        code=_fixed(SNOMED, "404684003", "CLINICAL FINDING (FINDING)"),
        interpretation=[_fixed(SNOMED, "7147002", "NEW (QUALIFIER VALUE)")] if lesion.new else None,
        component=components)
