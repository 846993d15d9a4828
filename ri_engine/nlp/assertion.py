"""ConText-style assertion: what a sentence says about each finding mention.

A cue ("no", "may represent", "history of", "cannot be excluded", ...) has a category and a
direction (``knowledge/context.json``). A forward cue covers the mentions after it up to the
next terminator ("but", "however", "there is", ";", ...) or the sentence end; a backward cue
covers the mentions before it back to a terminator or the sentence start. Pseudo-cues
("no change", "not only") hide every cue sharing a word with them; the finding builder
drops those cues before they get here (``mentions.outside_pseudo``).

So in "No pneumothorax, but there is a small effusion" the negation stops at "but", and in
"No pneumothorax, pleural effusion or pulmonary edema" it covers all three findings.
When several uncertainty cues reach a mention, the nearest one decides its level.
Resolution cues ("has resolved", "resolution of", "no longer seen") are a category of their
own, not a denial: RI reports a resolved finding with RESOLVED rather than NONE.
"""

from __future__ import annotations

from bisect import bisect_left

from .types import Assertion, Term

UNCERTAINTY = ("possible", "probable", "improbable", "cannotBeExcluded")
_DENIALS = frozenset({"negated", "resolved"})


def assert_mention(start: int, end: int, cues: list[Term], terminators: list[int]) -> Assertion:
    """The assertion for the mention at [start, end) given the sentence's cues.

    ``cues`` are the cue terms of the sentence (key ``"<category>:<direction>"``),
    ``terminators`` the sorted start offsets of terminator terms in the sentence.
    """
    negated = historical = hypothetical = other = known = resolved = False
    uncertainty: str | None = None
    uncertainty_distance = 1 << 30
    used: list[tuple[int, int]] = []
    for cue in cues:
        category, direction = cue.key.split(":")
        if start <= cue.start and cue.end <= end:
            continue  # the cue is part of the mention itself
        if cue.start < start < cue.end and direction in ("forward", "both"):
            # "No acute infarct": the cue "no acute" shares a word with "acute infarct".
            distance = 0
        elif cue.end <= start and direction in ("forward", "both"):
            if _blocked(terminators, cue.end, start):
                continue
            distance = start - cue.end
        elif cue.start >= end and direction in ("backward", "both"):
            if _blocked(terminators, end, cue.start):
                continue
            distance = cue.start - end
        else:
            continue
        used.append((cue.start, cue.end))
        if category == "negated":
            negated = True
        elif category in UNCERTAINTY:
            if distance < uncertainty_distance:
                uncertainty, uncertainty_distance = category, distance
        elif category == "resolved":
            resolved = True
        elif category == "historical":
            historical = True
        elif category == "known":
            known = True
        elif category == "hypothetical":
            hypothetical = True
        elif category == "other_experiencer":
            other = True
    return Assertion(negated=negated, uncertainty=uncertainty, historical=historical,
                     hypothetical=hypothetical, other_experiencer=other, known=known,
                     resolved=resolved and not negated, cues=tuple(sorted(used)))


def denied_between(lo: int, hi: int, cues: list[Term], terminators: list[int]) -> bool:
    """True when a forward negation or resolution cue lies inside [lo, hi) and reaches ``hi``
    (no terminator between its end and ``hi``): what follows a finding and a denial is denied,
    not the finding ("pneumothorax without mediastinal shift", "aneurysm, no evidence of
    rupture"); what has resolved is no sign now ("pneumothorax, with resolution of the shift").
    ``cues`` are sorted by start, pseudo-cues already removed."""
    for cue in cues:
        if cue.start < lo or cue.end > hi:
            continue
        category, direction = cue.key.split(":")
        if category in _DENIALS and direction != "backward" and not _blocked(
                terminators, cue.end, hi):
            return True
    return False


def _blocked(terminators: list[int], lo: int, hi: int) -> bool:
    """True when a terminator starts inside [lo, hi)."""
    index = bisect_left(terminators, lo)
    return index < len(terminators) and terminators[index] < hi
