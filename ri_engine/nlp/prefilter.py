"""Skip regular expressions that cannot match: the literal text every match must contain.

Tables of many rule patterns (scoring systems, ...) each scan the whole report, and
Python's ``re`` has no way to skip ahead when a pattern starts with a look-behind or an
optional group: it tries every character position. Most reports name none of a table's
systems, so most of those scans find nothing. ``required_literals`` reads the parsed
pattern once and returns strings one of which every match contains (``"rads"`` for
``(?:ACR\\s+)?BI-?\\s?RADS``); a substring test on the case-folded report then rules the
pattern out in a microsecond. The test is sound: it never rules out a pattern that could
match, whatever the pattern's flags (``fold_case`` folds exactly the characters ``re``
treats as case variants of ASCII letters).
"""

from __future__ import annotations

import re
from re import _constants as sre  # the parser's op codes (stable since Python 3.11)
from re import _parser

Literals = frozenset[str]

# Non-ASCII characters that re.IGNORECASE matches to an ASCII letter (Kelvin sign, dotted
# and dotless i, long s); tests check this list against ``re`` itself.
_ASCII_CASE_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def fold_case(text: str) -> str:
    """``text`` lower-cased the way ``required_literals`` expects (done once per report)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_CASE_TWINS).lower()


def required_literals(regex: re.Pattern[str]) -> Literals | None:
    """Lower-case ASCII strings one of which every match of ``regex`` contains.

    None when the pattern guarantees no such text (then it must always be tried).
    """
    return _sequence(_parser.parse(regex.pattern, regex.flags))


def may_match(literals: Literals | None, folded: str) -> bool:
    """False only when a pattern with these ``literals`` cannot match the folded text."""
    return literals is None or any(literal in folded for literal in literals)


def _sequence(items: _parser.SubPattern | list) -> Literals | None:
    """The best requirement among the items of a sequence (each item must match)."""
    best: Literals | None = None
    run: list[str] = []
    for op, av in items:
        if op is sre.LITERAL and av < 128:
            run.append(chr(av).lower())
            continue
        best = _better(best, _run(run))
        run = []
        best = _better(best, _item(op, av))
    return _better(best, _run(run))


def _item(op: object, av: object) -> Literals | None:
    if op is sre.SUBPATTERN:
        return _sequence(av[-1])  # type: ignore[index]
    if op is sre.ATOMIC_GROUP:
        return _sequence(av)  # type: ignore[arg-type]
    if op in _REPEATS and av[0] >= 1:  # type: ignore[index]
        return _sequence(av[2])  # type: ignore[index]
    if op is sre.BRANCH:
        options = [_sequence(branch) for branch in av[1]]  # type: ignore[index]
        if any(option is None for option in options):
            return None
        return frozenset().union(*options)  # type: ignore[arg-type]
    # Anything else (character sets, optional repeats, assertions, back-references,
    # non-ASCII literals) promises no literal text.
    return None


def _run(chars: list[str]) -> Literals | None:
    return frozenset({"".join(chars)}) if chars else None


def _better(a: Literals | None, b: Literals | None) -> Literals | None:
    """The more selective requirement: the one whose shortest string is longer."""
    if a is None:
        return b
    if b is None:
        return a
    return a if min(map(len, a)) >= min(map(len, b)) else b
