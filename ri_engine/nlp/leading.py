"""Scan a whole text for a pattern from the literal words its matches start with.

Rule anchors such as ``\\b(?:lacerations?|hematomas?|contusions?|...)\\b`` are searched
over whole reports. ``re`` skips ahead only to a literal prefix or a few possible first
characters, so a pattern opening with ``\\b`` and words starting with many letters is
tried at every character (about 40 us for 3 KB). Every match of such a pattern starts
with one of its words ("laceration", "hematoma", ...): one search for those words, as a
trie (alternation.py), finds the places worth trying, and the pattern is matched there.

The matches are those of ``finditer``: no match starts anywhere else, the places are
tried in order (the first that matches is the leftmost match), and a match tried at a
place is the one a search reaching that place finds. This pays when the words are rare
in the text (rule anchors); a pattern whose words are common would be matched at many
places one by one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from re import _constants as sre  # the parser's op codes (stable since Python 3.11)
from re import _parser

from .alternation import phrase_alternation
from .regex_ops import REPEATS, ZERO_WIDTH


class LeadingScan:
    """``finditer`` of ``whole``, trying it only where one of ``words`` starts."""

    def __init__(self, whole: re.Pattern[str], words: frozenset[str]) -> None:
        self.whole = whole
        self._find = re.compile(phrase_alternation(words, gap=" ")).search

    def finditer(self, string: str) -> Iterator[re.Match[str]]:
        find, match_at = self._find, self.whole.match
        pos = 0
        while True:
            place = find(string, pos)
            if place is None:
                return
            match = match_at(string, place.start())
            if match is None:
                pos = place.start() + 1  # another word may start inside this one
                continue
            yield match
            pos = match.end()  # never empty: it holds a word


@functools.cache
def leading_scan(pattern: re.Pattern[str]) -> re.Pattern[str] | LeadingScan:
    """``pattern``, or a scan from its leading words when every match starts with one
    (case-sensitive patterns whose words are lower case: the case-folded twins)."""
    if pattern.flags & re.IGNORECASE:
        return pattern
    words = _leading(_parser.parse(pattern.pattern, pattern.flags))
    if not words or any(not word or word != word.lower() for word in words):
        return pattern
    return LeadingScan(pattern, frozenset(words))


def _leading(items: _parser.SubPattern | list) -> set[str] | None:
    """Strings one of which every match of ``items`` starts with; None when unknown."""
    items = list(items)
    first = 0
    while first < len(items) and items[first][0] in ZERO_WIDTH:
        first += 1  # look-arounds consume nothing: the match starts with what follows
    if first == len(items):
        return None
    op, av = items[first]
    if op is sre.LITERAL:
        word = ""
        for op, av in items[first:]:
            if op is not sre.LITERAL or av >= 128:
                break
            word += chr(av)
        return {word} if word else None
    if op is sre.SUBPATTERN:
        _group, add_flags, _del_flags, inner = av
        return None if add_flags & re.IGNORECASE else _leading(inner)
    if op is sre.BRANCH:
        words: set[str] = set()
        for branch in av[1]:
            found = _leading(branch)
            if not found:
                return None
            words |= found
        return words
    if op in REPEATS and av[0] >= 1:
        return _leading(av[2])
    return None
