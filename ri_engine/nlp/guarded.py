"""Search a pattern that opens with a look-around from the literal text after it.

``re`` skips ahead to the places a match can start only when a pattern starts with
literal text (or a few possible first characters): ``cysts?\\b`` is found by a fast
substring search, but ``\\bcysts?\\b`` or ``(?<![\\w-])RMI`` makes it try the whole
pattern at every character, 20-40 times slower on a 3 KB report. Most rule patterns open
with such an assertion (``\\b``, ``(?<![\\w-])``) and then literal words.

``guarded(pattern)`` splits such a pattern into its leading zero-width assertions (the
guard) and the rest. The rest is searched (fast, from its literal prefix); a place where
it matches is kept when the guard holds there, otherwise the search goes on one character
further. The matches are exactly those of the whole pattern: the guard consumes nothing
and captures nothing, so the whole pattern matches at a position exactly when the guard
holds there and the rest matches there, with the same span and groups; and the leftmost
such position is the first place where the rest matches and the guard holds.

Patterns that do not have that shape, whose rest has no literal prefix or few first
characters to skip to (then searching the rest gains little and false starts cost), or
whose rest may match the empty string, are returned unchanged.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from re import _compiler, _parser  # the parser's view of a pattern (stable since 3.11)
from re import _constants as sre
from typing import Any

from .regex_ops import ZERO_WIDTH

_MAX_FIRST_CHARACTERS = 4   # more possible first characters: too many false starts
_MAX_GUARD_LENGTH = 80      # characters of source searched for the end of the guard


class GuardedPattern:
    """A compiled pattern whose ``search`` and ``finditer`` run guard-last (same results).

    Every other attribute (``match``, ``pattern``, ``flags``, ``groupindex``, ...) is the
    whole pattern's.
    """

    def __init__(self, whole: re.Pattern[str], guard: re.Pattern[str], rest: re.Pattern[str]) -> None:
        self.whole = whole
        self._guard = guard.match
        self._rest = rest.search

    def search(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        rest, guard = self._rest, self._guard
        while True:
            match = rest(string, pos, endpos)
            if match is None or guard(string, match.start(), endpos):
                return match
            pos = match.start() + 1

    def finditer(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> Iterator[re.Match[str]]:
        while True:
            match = self.search(string, pos, endpos)
            if match is None:
                return
            yield match
            pos = match.end()  # never empty (see _split), so the scan moves on

    def __getattr__(self, name: str) -> Any:
        return getattr(self.whole, name)

    def __repr__(self) -> str:
        return f"GuardedPattern({self.whole!r})"


def guarded(pattern: re.Pattern[str]) -> re.Pattern[str] | GuardedPattern:
    """``pattern``, searched guard-last when that is exact and faster (module docstring)."""
    split = _split(pattern)
    if split is None:
        return pattern
    return GuardedPattern(pattern, *split)


def _split(pattern: re.Pattern[str]) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    source, flags = pattern.pattern, pattern.flags
    items = list(_parser.parse(source, flags))
    count = 0
    while count < len(items) and items[count][0] in ZERO_WIDTH:
        count += 1
    if count == 0 or count == len(items):
        return None
    want_guard, want_rest = repr(items[:count]), repr(items[count:])
    for cut in range(1, min(len(source), _MAX_GUARD_LENGTH)):
        try:
            head = _parser.parse(source[:cut], flags)
        except re.error:
            continue
        if repr(list(head)) != want_guard:
            continue
        # Both parts parse to the whole pattern's own pieces (group numbers included: a
        # repr holds them), so together they are the same pattern.
        tail = _parser.parse(source[cut:], flags)
        if repr(list(tail)) != want_rest or head.state.groups > 1:
            return None
        guard, rest = re.compile(source[:cut], flags), re.compile(source[cut:], flags)
        if (rest.groups, rest.groupindex) != (pattern.groups, pattern.groupindex):
            return None
        if tail.getwidth()[0] == 0 or not _skips_ahead(tail, flags):
            return None
        return guard, rest
    return None


def _skips_ahead(parsed: _parser.SubPattern, flags: int) -> bool:
    """``re`` can skip to the places a match of ``parsed`` may start (its search is fast)."""
    try:
        prefix = _compiler._get_literal_prefix(parsed, flags)[0]
        if prefix:
            return True
        charset = _compiler._get_charset_prefix(parsed, flags)
    except (AttributeError, TypeError):  # another Python's private API: search as written
        return False
    return bool(charset) and len(charset) <= _MAX_FIRST_CHARACTERS and all(
        op is sre.LITERAL for op, _ in charset)
