"""Skip regular expressions that cannot match: the literal text every match must contain.

Tables of many rule patterns (scoring systems, ...) each scan the whole report, and
Python's ``re`` has no way to skip ahead when a pattern starts with a look-behind or an
optional group: it tries every character position. Most reports name none of a table's
systems, so most of those scans find nothing. ``required_literals`` reads the parsed
pattern once and returns the strings every match contains (``"bi"`` and ``"rads"`` for
``(?:ACR\\s+)?BI-?\\s?RADS``); substring tests on the case-folded report (``Screen``)
then rule the pattern out in microseconds. The test is sound: it never rules out a
pattern that could match, whatever the pattern's flags (``fold_case`` folds exactly the
characters ``re`` treats as case variants of ASCII letters).
"""

from __future__ import annotations

import re
from re import _constants as sre  # the parser's op codes (stable since Python 3.11)
from re import _parser

Literals = frozenset[str]  # one of these strings is in every match

# Non-ASCII characters that re.IGNORECASE matches to an ASCII letter (Kelvin sign, dotted
# and dotless i, long s); tests check this list against ``re`` itself.
_ASCII_CASE_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def fold_case(text: str) -> str:
    """``text`` lower-cased the way ``required_literals`` expects (done once per report)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_CASE_TWINS).lower()


def required_literals(regex: re.Pattern[str]) -> tuple[Literals, ...]:
    """What every match of ``regex`` contains: one lower-case ASCII string of each set.

    ``LUNG-?\\s?RADS`` gives ({"lung"}, {"rads"}); an empty tuple promises nothing (the
    pattern must always be tried).
    """
    requirements = dict.fromkeys(_sequence(_parser.parse(regex.pattern, regex.flags)))
    # Most selective first: a long string that is absent rules the pattern out soonest.
    return tuple(sorted(requirements, key=lambda options: -min(map(len, options))))


class Screen:
    """One report's text, asked which patterns may match; each string is looked up once.

    A substring test for an absent string reads the whole report (1-3 us for 3 KB), and
    tables share strings ("rads" for a dozen patterns), so answers are remembered.
    """

    def __init__(self, text: str) -> None:
        self.folded = fold_case(text)
        self._found: dict[str, bool] = {}

    def may_match(self, literals: tuple[Literals, ...]) -> bool:
        """False only when a pattern with these ``literals`` cannot match the text."""
        return all(any(self._holds(literal) for literal in options) for options in literals)

    def _holds(self, literal: str) -> bool:
        found = self._found.get(literal)
        if found is None:
            found = self._found[literal] = literal in self.folded
        return found


def _sequence(items: _parser.SubPattern | list) -> list[Literals]:
    """Requirements of a sequence: those of each item (every item must match)."""
    found: list[Literals] = []
    run: list[str] = []
    for op, av in items:
        if op is sre.LITERAL and av < 128:
            run.append(chr(av).lower())
            continue
        if run:
            found.append(frozenset({"".join(run)}))
            run = []
        found.extend(_item(op, av))
    if run:
        found.append(frozenset({"".join(run)}))
    return found


def _item(op: object, av: object) -> list[Literals]:
    if op is sre.SUBPATTERN:
        return _sequence(av[-1])  # type: ignore[index]
    if op is sre.ATOMIC_GROUP:
        return _sequence(av)  # type: ignore[arg-type]
    if op in _REPEATS and av[0] >= 1:  # type: ignore[index]
        return _sequence(av[2])  # type: ignore[index]
    if op is sre.BRANCH:
        # One alternative matches: the union of each alternative's most selective set.
        options = [_most_selective(_sequence(branch)) for branch in av[1]]  # type: ignore[index]
        if any(option is None for option in options):
            return []
        return [frozenset().union(*options)]  # type: ignore[arg-type]
    # Anything else (character sets, optional repeats, assertions, back-references,
    # non-ASCII literals) promises no literal text.
    return []


def _most_selective(requirements: list[Literals]) -> Literals | None:
    """The set whose shortest string is longest (None when there is none)."""
    return max(requirements, key=lambda options: min(map(len, options)), default=None)
