"""Report sections: FINDINGS, IMPRESSION, HISTORY, ... found from their headers.

A header is a known heading name (``knowledge/sections.json``) followed by a colon, at the
start of a line or right after a sentence end ("... contrast. IMPRESSION: ..."), or a known
heading alone on its own line ("FINDINGS"). Unknown headings ("Right lobe:", "Isthmus:")
never end a section. A section runs from its header to the next recognised header; text
before the first header belongs to no section (RI then omits the ``section`` extension).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy

from ..knowledge import load_json
from .alternation import phrase_alternation
from .casefold import folded_pattern
from .guarded import GuardedPattern
from .types import Section


@dataclass(frozen=True)
class SectionScheme:
    """Header patterns plus the LOINC code and display RI prints for each section name."""

    pattern: re.Pattern[str]
    alone_pattern: re.Pattern[str]
    names: dict[str, str]                # lower-cased header text -> section name
    codes: dict[str, tuple[str, str]]    # section name -> (LOINC code, display)

    @classmethod
    def load(cls, scheme: str | None = None) -> SectionScheme:
        data = load_json("sections.json")
        chosen = scheme or data["default_scheme"]
        if chosen not in data["schemes"]:
            known = ", ".join(sorted(data["schemes"]))
            raise ValueError(f"unknown section code scheme {chosen!r} (known: {known})")
        names: dict[str, str] = {}
        for name, variants in data["headers"].items():
            for variant in variants:
                names[variant.lower()] = name
        # Longest variants first so "clinical history" wins over "history".
        alternatives = phrase_alternation(names, gap=r"[ \t]+")
        pattern = re.compile(
            r"(?:(?<=\n)|(?<=\r)|^|(?<=[.!?][ \t])|(?<=[.!?][ \t]{2}))[ \t]*"
            rf"(?P<name>{alternatives})[ \t]*(?:#?\d+[ \t]*)?:",
            re.IGNORECASE,
        )
        alone = re.compile(
            rf"(?:(?<=\n)|(?<=\r)|^)[ \t]*(?P<name>{alternatives})[ \t]*(?=\r|\n|$)",
            re.IGNORECASE,
        )
        codes = {name: (code, display) for name, (code, display) in data["schemes"][chosen].items()}
        return cls(pattern=pattern, alone_pattern=alone, names=names, codes=codes)


_SPACES = re.compile(r"\s+")


def _matches(pattern: re.Pattern[str] | GuardedPattern, text: str,
             candidates: list[int]) -> list[re.Match[str]]:
    """What ``pattern.finditer(text)`` finds, trying the pattern only at ``candidates``
    (sorted offsets, the only places where its look-behinds hold).

    A full scan would try the look-behinds at every character; there are far fewer line
    and sentence starts than characters.
    """
    out: list[re.Match[str]] = []
    end = 0
    match_at = pattern.match
    for candidate in candidates:
        if candidate < end:
            continue
        match = match_at(text, candidate)
        if match:
            out.append(match)
            end = match.end()
    return out


def _starts(text: str) -> tuple[list[int], list[int]]:
    """Where a header may start: (sentence starts, line starts), the text start in both
    (the places the patterns' look-behinds allow; a header never holds a line break or a
    sentence end).

    The places after a line break, and after ``.``, ``!`` or ``?`` and a space or tab (no
    two of these overlap), read from the text's code points as arrays: a regular
    expression would make a match object for each of the hundred or more.
    """
    points = numpy.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=numpy.uint32)  # one per character
    lines = numpy.flatnonzero((points == _LF) | (points == _CR)) + 1
    head, tail = points[:-1], points[1:]
    ends = numpy.flatnonzero(((head == _DOT) | (head == _BANG) | (head == _QUESTION))
                             & ((tail == _SPACE) | (tail == _TAB))) + 2
    return [0, *numpy.union1d(lines, ends).tolist()], [0, *lines.tolist()]


_LF, _CR, _DOT, _BANG, _QUESTION, _SPACE, _TAB = map(ord, "\n\r.!? \t")


def find_sections(text: str, scheme: SectionScheme) -> list[Section]:
    """The sections of ``text`` in order; each header's span is [start, header_end)."""
    headers: dict[int, tuple[int, int, str]] = {}
    sentence_starts, line_starts = _starts(text)
    for pattern, starts in ((scheme.pattern, sentence_starts), (scheme.alone_pattern, line_starts)):
        # Tried case-folded (casefold.py): a header name is compared letter by letter at
        # every line start, and a case-insensitive comparison costs more per letter.
        scanned, folded = folded_pattern(pattern.pattern, pattern.flags).scan(text)
        for match in _matches(folded, scanned, starts):
            words = _SPACES.sub(" ", match.group("name").lower())
            name = scheme.names.get(words)
            if name is None:
                continue
            start = match.start("name")
            headers.setdefault(start, (start, match.end(), name))
    ordered = sorted(headers.values())
    sections: list[Section] = []
    for index, (start, header_end, name) in enumerate(ordered):
        end = ordered[index + 1][0] if index + 1 < len(ordered) else len(text)
        code, display = scheme.codes.get(name, (None, None))
        sections.append(Section(name=name, start=start, end=end, loinc_code=code,
                                loinc_display=display, header_end=header_end))
    return sections
