"""Coarse body regions of anatomy codes and exam descriptions (``knowledge/body_regions.json``).

Used to tell whether a later exam covers the body part a follow-up recommendation names:
two sets of regions match when they share one, or when either is :data:`EVERYWHERE`.
``None`` means "not known" (no anatomy code or word this table knows), which callers
treat as no constraint.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from .knowledge import load_json

__all__ = ["EVERYWHERE", "regions_of_codes", "regions_of_text", "regions_overlap"]

EVERYWHERE = "everywhere"


@functools.cache
def _tables() -> tuple[dict[str, frozenset[str]], list[tuple[str, re.Pattern[str]]]]:
    anatomy = load_json("anatomy.json")["entries"]
    data = load_json("body_regions.json")
    by_code: dict[str, set[str]] = {}
    words = []
    for region, spec in [*data["regions"].items(), (EVERYWHERE, data["everywhere"])]:
        for key in spec["anatomy"]:
            for system, code, _ in anatomy[key]["codes"]:
                if system == "SCT":
                    by_code.setdefault(code, set()).add(region)
        words.append((region, re.compile(rf"\b(?:{'|'.join(spec['words'])})\b", re.IGNORECASE)))
    return {code: frozenset(regions) for code, regions in by_code.items()}, words


def regions_of_codes(codes: Iterable[str]) -> frozenset[str] | None:
    """The regions of SNOMED CT body structure codes; None when none of them is known."""
    by_code = _tables()[0]
    found: set[str] = set()
    for code in codes:
        found |= by_code.get(code, frozenset())
    return frozenset(found) or None


def regions_of_text(text: str | None) -> frozenset[str] | None:
    """The regions an exam description names ("CT ABDOMEN AND PELVIS"); None when none."""
    if not text:
        return None
    found = {region for region, words in _tables()[1] if words.search(text)}
    return frozenset(found) or None


def regions_overlap(first: frozenset[str] | None, second: frozenset[str] | None) -> bool:
    """Whether two region sets can be the same body part (unknown matches anything)."""
    if first is None or second is None or EVERYWHERE in first or EVERYWHERE in second:
        return True
    return bool(first & second)
