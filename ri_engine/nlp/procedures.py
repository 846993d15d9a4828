"""Imaging procedures named in text or in an order: modality, body parts, contrast.

"Head CT with Contrast", "CT of the head", "CT non-contrast abd/pelvis", "US pelvis",
"MRI of the left knee": a modality term plus the anatomy right before it or shortly after
it (joined by "of the", "/", "and"), within the same line. A modality that only guides
another procedure ("CT-guided drainage") is not a procedure of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .lexicon import Lexicon
from .types import AnatomyMention, Laterality, ProcedureMention, Section, Term

_AFTER_LINK = re.compile(r"^[ \t]*(?:(?:of|through|for|to)[ \t]+)?(?:the[ \t]+)?"
                         r"(?:(?:non-?contrast|contrast(?:-enhanced)?|with(?:out)?[ \t]+(?:iv[ \t]+)?contrast"
                         r"|w/o?|wo|w)[ \t]+)?$", re.IGNORECASE)
_GUIDED = re.compile(r"[ \t]*-?[ \t]*guided\b", re.IGNORECASE)
_CHAIN_LINK = re.compile(r"^[ \t]*(?:/|and|&|,)[ \t]*$", re.IGNORECASE)
_BEFORE_LINK = re.compile(r"^[ \t]*$")
# Exam titles run body regions together without a link ("CT ABDOMEN PELVIS W CONTRAST",
# "CT CHEST ABDOMEN PELVIS"): a bare space joins two regions, never two structures ("CT of
# the chest lungs ...").
_SPACE_LINK = re.compile(r"^[ \t]+$")
_REGIONS = frozenset({"head", "neck", "chest", "abdomen", "pelvis"})
_SIDE_GAP = re.compile(r"^[ \t]*(?:of[ \t]+)?(?:the[ \t]+)?(?:left|right|bilateral|both)[ \t]*$", re.I)
_CONTRAST = (
    ("without_then_with", re.compile(r"\bw(?:ith)?(?:out|/o)?\s*(?:and|&|/)\s*w(?:ith)?(?:out|/o)\b|\bwo?/w\b", re.I)),
    ("without", re.compile(r"\b(?:without(?:\s+(?:iv|intravenous))?\s+contrast|non-?contrast|w/o\b|wo\b|unenhanced|noncontrast)", re.I)),
    ("with", re.compile(r"\b(?:with(?:\s+(?:iv|intravenous))?\s+contrast|w/\s*(?:dye|contrast|iv)?|contrast[- ]enhanced|post-?contrast|with\s+dye|enhanced)", re.I)),
)


def find_procedures(text: str, terms: dict[str, list[Term]], anatomy: Sequence[AnatomyMention],
                    sections: Sequence[Section], lexicon: Lexicon) -> list[ProcedureMention]:
    out: list[ProcedureMention] = []
    for term in terms.get("modality", []):
        if _GUIDED.match(text, term.end):
            continue  # "CT-guided drainage": the modality only guides another procedure
        entry = lexicon.modalities[term.key]
        line_start = max(text.rfind("\n", 0, term.start), text.rfind("\r", 0, term.start)) + 1
        line_end_candidates = [i for i in (text.find("\n", term.end), text.find("\r", term.end)) if i >= 0]
        line_end = min(line_end_candidates) if line_end_candidates else len(text)
        parts = _anatomy_after(text, term, anatomy, line_end) or _anatomy_before(
            text, term, anatomy, line_start)
        start = min([term.start] + [a.start for a in parts])
        end = max([term.end] + [a.end for a in parts])
        window = text[start:min(line_end, end + 40)]
        contrast = next((name for name, rx in _CONTRAST if rx.search(window)), None)
        laterality: Laterality | None = next((a.laterality for a in parts if a.laterality), None)
        section = next((s for s in sections if s.start <= term.start < s.end), None)
        out.append(ProcedureMention(
            start=start, end=end, text=text[start:end], modality_key=term.key,
            modality=entry.code, anatomy=tuple(parts), laterality=laterality, contrast=contrast,
            section_name=section.name if section else None,
            modality_span=(term.start, term.end)))
    return out


def _anatomy_after(text: str, term: Term, anatomy: Sequence[AnatomyMention],
                   limit: int) -> list[AnatomyMention]:
    chain: list[AnatomyMention] = []
    cursor = term.end
    for mention in anatomy:
        if mention.start < cursor or mention.start >= limit:
            continue
        gap = text[cursor:mention.start]
        link = _CHAIN_LINK if chain else _AFTER_LINK
        if not link.match(gap) and not (not chain and _side_gap(gap)) and not (
                chain and _regions(chain[-1], mention) and _SPACE_LINK.match(gap)):
            break
        chain.append(mention)
        cursor = mention.end
    return chain


def _anatomy_before(text: str, term: Term, anatomy: Sequence[AnatomyMention],
                    limit: int) -> list[AnatomyMention]:
    chain: list[AnatomyMention] = []
    cursor = term.start
    for mention in reversed(anatomy):
        if mention.end > cursor or mention.end < limit:
            continue
        gap = text[mention.end:cursor]
        link = _CHAIN_LINK if chain else _BEFORE_LINK
        if not link.match(gap):
            break
        chain.insert(0, mention)
        cursor = mention.start
    return chain


def _regions(first: AnatomyMention, second: AnatomyMention) -> bool:
    return first.key in _REGIONS and second.key in _REGIONS


def _side_gap(gap: str) -> bool:
    # "MRI of the left knee": the laterality word sits between the link and the anatomy.
    return bool(_SIDE_GAP.match(gap))
