"""Imaging procedures as RI codes them: LOINC procedure codes and ImagingProcedure values.

``loinc_for(mention)`` picks the ``knowledge/procedures.json`` entry with the same modality
whose body parts are all named, preferring more body parts, the same contrast and the same
side; with no body part named it falls back to the modality's "unspecified body region"
code. ``imaging_procedures(ctx, mention)`` gives one ImagingProcedure per body part (two for
"head/brain"), HUMAN BODY STRUCTURE when none is named.
"""

from __future__ import annotations

from typing import Any

from ..context import AnalysisContext
from ..knowledge import load_json
from ..models import ImagingProcedure
from ..nlp.lexicon import SYSTEMS
from ..nlp.types import AnatomyMention, Code, Laterality, ProcedureMention
from .evidence import coded, token_spans_for

_DATA = load_json("procedures.json")
WHOLE_BODY = "body"


def _by_modality() -> dict[str, list[tuple[frozenset[str], dict[str, Any]]]]:
    """Entries by modality, each with its body parts as a set (built once, not per mention)."""
    out: dict[str, list[tuple[frozenset[str], dict[str, Any]]]] = {}
    for entry in _DATA["entries"]:
        out.setdefault(entry["modality"], []).append((frozenset(entry["anatomy"]), entry))
    return out


_ENTRIES = _by_modality()


def anatomy_keys(mention: ProcedureMention) -> set[str]:
    return {a.key for a in mention.anatomy} | {p for a in mention.anatomy for p in a.parents}


def loinc_for(ctx: AnalysisContext, mention: ProcedureMention) -> Code | None:
    keys = anatomy_keys(mention) or set(_default_anatomy(mention))
    side = mention.laterality.value if mention.laterality else None
    best: tuple[tuple[int, int, int], dict] | None = None
    for anatomy, entry in _ENTRIES.get(mention.modality_key, ()):
        if not anatomy <= keys:
            continue
        if entry.get("contrast") not in (None, mention.contrast):
            continue
        if entry.get("laterality") not in (None, side):
            continue
        score = (len(entry["anatomy"]), entry.get("contrast") is not None,
                 entry.get("laterality") is not None)
        if best is None or score > best[0]:
            best = (score, entry)
    if best is not None:
        return Code(SYSTEMS["LOINC"], best[1]["code"], best[1]["display"])
    if not keys:
        modality = ctx.lexicon.modalities[mention.modality_key]
        return modality.loinc_generic
    return None


def imaging_procedures(ctx: AnalysisContext, mention: ProcedureMention,
                       laterality: Laterality | None = None, *,
                       evidence: bool = True) -> list[ImagingProcedure]:
    """ImagingProcedure values; ``evidence=False`` leaves token evidence out entirely."""
    modality_spans = token_spans_for(ctx, [_modality_span(mention)]) if evidence else []
    modality = coded(ctx, mention.modality, modality_spans)
    parts: list[AnatomyMention] = list(mention.anatomy)
    if not parts:
        default = _default_anatomy(mention) or [WHOLE_BODY]
        entry = ctx.lexicon.anatomy[default[0]]
        parts = [AnatomyMention(key=entry.key, start=mention.start, end=mention.end,
                                text=mention.text, codes=entry.codes)]
        anatomy_spans = modality_spans
    elif not evidence:
        anatomy_spans = []
    else:
        anatomy_spans = []
    side = laterality or mention.laterality
    out = []
    for part in parts:
        if mention.anatomy and evidence:
            spans = token_spans_for(ctx, [(part.start, part.end)])
        else:
            spans = anatomy_spans
        side_spans = [(side.start, side.end)] if side and evidence else []
        out.append(ImagingProcedure(
            modality=modality, anatomy=coded(ctx, part.codes[0], spans),
            laterality=coded(ctx, side.code, side_spans) if side else None))
    return out


def _modality_span(mention: ProcedureMention) -> tuple[int, int]:
    return mention.modality_span or (mention.start, mention.end)


def _default_anatomy(mention: ProcedureMention) -> list[str]:
    default = _DATA["default_anatomy"].get(mention.modality_key)
    return [default] if default else []
