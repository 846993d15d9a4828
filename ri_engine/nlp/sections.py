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


# Where a header may start: the text start, after a line break, after ". " (the places the
# patterns' look-behinds allow; a header never holds a line break or a sentence end).
_LINE_START = re.compile(r"[\n\r]")
_SENTENCE_START = re.compile(r"[\n\r]|[.!?][ \t]")
_SPACES = re.compile(r"\s+")


def _matches(pattern: re.Pattern[str] | GuardedPattern, text: str,
             starts: re.Pattern[str]) -> list[re.Match[str]]:
    """What ``pattern.finditer(text)`` finds, trying the pattern only where ``starts`` allows.

    A full scan would try the look-behinds at every character; there are far fewer line
    and sentence starts than characters.
    """
    out: list[re.Match[str]] = []
    end = 0
    for candidate in [0, *(m.end() for m in starts.finditer(text))]:
        if candidate < end:
            continue
        match = pattern.match(text, candidate)
        if match:
            out.append(match)
            end = match.end()
    return out


def find_sections(text: str, scheme: SectionScheme) -> list[Section]:
    """The sections of ``text`` in order; each header's span is [start, header_end)."""
    headers: dict[int, tuple[int, int, str]] = {}
    for pattern, starts in ((scheme.pattern, _SENTENCE_START), (scheme.alone_pattern, _LINE_START)):
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
