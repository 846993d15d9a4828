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

import functools
import re
from collections.abc import Callable
from re import _constants as sre  # the parser's op codes (stable since Python 3.11)
from re import _parser

from .alternation import phrase_alternation
from .regex_ops import REPEATS, ZERO_WIDTH
from .trigrams import TrigramTable

Literals = frozenset[str]  # one of these strings is in every match
# What a pattern needs (``screen_of``): the sets every match needs, and the sets each
# alternative of a pattern that is one alternation needs.
PatternScreen = tuple[tuple[Literals, ...], tuple[tuple[Literals, ...], ...]]

# Non-ASCII characters that re.IGNORECASE matches to an ASCII letter (Kelvin sign, dotted
# and dotless i, long s); tests check this list against ``re`` itself.
_ASCII_CASE_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def fold_case(text: str) -> str:
    """``text`` lower-cased the way ``required_literals`` expects (done once per report)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_CASE_TWINS).lower()


def required_literals(regex: re.Pattern[str]) -> tuple[Literals, ...]:
    """What every match of ``regex`` contains: one lower-case ASCII string of each set.

    ``LUNG-?\\s?RADS`` gives ({"lung"}, {"rads"}); an empty tuple promises nothing (the
    pattern must always be tried).
    """
    return _selective_first(_sequence(_parser.parse(regex.pattern, regex.flags)))


def literal_finder(regex: re.Pattern[str]) -> re.Pattern[str]:
    """A pattern that finds, in ``fold_case`` text, one of the most selective strings every
    match of ``regex`` holds (it matches everywhere when ``regex`` promises none).

    Where the finder finds nothing, ``regex`` cannot match: a first pass for patterns
    searched sentence by sentence. One that opens with ``\\b`` or a look-behind is tried
    at every character; an alternation of plain strings lets ``re`` skip to the
    characters they start with. It pays when few sentences hold those strings and they
    start with few different letters (a list of short word parts can cost more).
    """
    literals = required_literals(regex)
    if not literals:
        return re.compile("")
    # As a trie (alternation.py): at most one branch continues at each character.
    return re.compile(phrase_alternation(literals[0], gap=" "))


def _selective_first(requirements: list[Literals]) -> tuple[Literals, ...]:
    """Without repeats, most selective first: a long string that is absent rules the
    pattern out soonest."""
    return tuple(sorted(dict.fromkeys(requirements), key=lambda options: -min(map(len, options))))


def alternatives_of(regex: re.Pattern[str]) -> tuple[tuple[Literals, ...], ...]:
    """For a pattern that is one alternation (``\\b(?:high\\s+risk|smoking\\s+history)\\b``):
    what every match of each alternative contains; an empty tuple for any other pattern.

    ``required_literals`` keeps one set per alternation ({"high", "smoking"}), so a report
    with "high" but no "risk" still passes; a match is a match of one alternative, so the
    pattern may match only when every set of some alternative is in the text. Zero-width
    assertions around the alternation consume nothing and do not change that.
    """
    items = [item for item in _parser.parse(regex.pattern, regex.flags) if item[0] not in ZERO_WIDTH]
    while len(items) == 1 and items[0][0] is sre.SUBPATTERN:
        items = [item for item in items[0][1][-1] if item[0] not in ZERO_WIDTH]
    if len(items) != 1 or items[0][0] is not sre.BRANCH:
        return ()
    return tuple(_selective_first(_sequence(branch)) for branch in items[0][1][1])


@functools.cache
def screen_of(regex: re.Pattern[str]) -> PatternScreen:
    """``(required_literals(regex), alternatives_of(regex))``, read once per pattern."""
    return required_literals(regex), alternatives_of(regex)


class Screen:
    """One report's text, asked which patterns may match; each string is looked up once.

    A substring test for an absent string reads the whole report (1-3 us for 3 KB), and
    tables share strings ("rads" for a dozen patterns), so answers are remembered; after a
    few misses a trigram table rules most absent strings out first (``_contains``).
    """

    def __init__(self, text: str, fold: Callable[[str], str] = fold_case) -> None:
        self.folded = fold(text)
        self._found: dict[str, bool] = {}
        self._misses = 0
        self._table: TrigramTable | None = None

    def may_match(self, literals: tuple[Literals, ...]) -> bool:
        """False only when a pattern with these ``literals`` cannot match the text."""
        return all(any(self.holds(literal) for literal in options) for options in literals)

    def may_match_pattern(self, screen: PatternScreen) -> bool:
        """False only when a pattern with this ``screen_of`` cannot match the text: a
        string every match needs is missing, or one every match of each alternative needs."""
        literals, alternatives = screen
        if not self.may_match(literals):
            return False
        return not alternatives or any(self.may_match(needs) for needs in alternatives)

    def holds(self, literal: str) -> bool:
        """``literal`` is in the folded text."""
        found = self._found.get(literal)
        if found is None:
            found = self._found[literal] = self._contains(literal)
        return found

    def _contains(self, literal: str) -> bool:
        table = self._table
        if table is None:
            if self._misses < _MISSES_BEFORE_TABLE:
                found = literal in self.folded
                self._misses += not found
                return found
            table = self._table = _table_for(self.folded)
        return table.may_contain(literal) and literal in self.folded


# A screen asked for only a few strings scans for them; one that has missed this many
# builds the text's trigram table (trigrams.py; about as costly as seven misses), which
# rules most absent strings out without a scan. Screens of the same text share it.
_MISSES_BEFORE_TABLE = 4


@functools.lru_cache(maxsize=4)
def _table_for(folded: str) -> TrigramTable:
    return TrigramTable(folded)


def _sequence(items: _parser.SubPattern | list) -> list[Literals]:
    """Requirements of a sequence: those of each item (every item must match).

    A stretch of literal text is read together with the small character sets and optional
    characters that continue it, as the set of every way it can be written: ``TR-?[1-5]``
    needs one of "tr1" ... "tr-5", which rules out far more reports than "tr" alone.
    """
    found: list[Literals] = []
    runs = {""}  # every spelling of the literal stretch read so far
    for op, av in items:
        continuation = _continuation(op, av) if runs != {""} else None
        if op is sre.LITERAL and av < 128:
            runs = {run + chr(av).lower() for run in runs}
        elif continuation is not None and len(runs) * (len(continuation[0]) + 1) <= _MAX_SPELLINGS:
            chars, optional = continuation
            runs = {run + char for run in runs for char in chars} | (runs if optional else set())
        else:
            _flush(runs, found)
            runs = {""}
            found.extend(_item(op, av))
    _flush(runs, found)
    return found


# A stretch is continued only while it has few spellings: each is one substring test.
_MAX_SPELLINGS = 24


def _flush(runs: set[str], found: list[Literals]) -> None:
    if "" not in runs:
        found.append(_shortest(runs))


def _shortest(options: set[str] | frozenset[str]) -> Literals:
    """``options`` without the strings that hold another one ("bi-" beside "bi"): a text
    holding the longer string holds the shorter, so the test is the same and cheaper."""
    return frozenset(o for o in options if not any(other != o and other in o for other in options))


def _continuation(op: object, av: object) -> tuple[list[str], bool] | None:
    """The lower-case ASCII characters a small character set (``[1-5]``) or an optional
    single character (``-?``) may add to literal text, also inside a group (``(?P<v>[1-5])``),
    and whether it may add none; None for anything else."""
    if op is sre.SUBPATTERN and len(av[-1]) == 1:  # type: ignore[index, arg-type]
        (inner_op, inner_av), = av[-1]  # type: ignore[index]
        if inner_op is sre.LITERAL:
            return ([chr(inner_av).lower()], False) if inner_av < 128 else None  # type: ignore[operator]
        return _continuation(inner_op, inner_av)
    if op in REPEATS and av[0] == 0 and av[1] == 1 and len(av[2]) == 1:  # type: ignore[index]
        (inner_op, inner_av), = av[2]  # type: ignore[index]
        if inner_op is sre.LITERAL and inner_av < 128:
            return [chr(inner_av).lower()], True
        return None
    if op is not sre.IN:
        return None
    chars: set[str] = set()
    for member_op, member_av in av:  # type: ignore[attr-defined]
        if member_op is sre.LITERAL and member_av < 128:
            chars.add(chr(member_av).lower())
        elif member_op is sre.RANGE and member_av[1] < 128 and member_av[1] - member_av[0] < _MAX_SPELLINGS:
            chars.update(chr(c).lower() for c in range(member_av[0], member_av[1] + 1))
        else:
            return None  # a negated set, a category (\d, \s) or a non-ASCII character
    return sorted(chars), False


def _item(op: object, av: object) -> list[Literals]:
    if op is sre.SUBPATTERN:
        return _sequence(av[-1])  # type: ignore[index]
    if op is sre.ATOMIC_GROUP:
        return _sequence(av)  # type: ignore[arg-type]
    if op in REPEATS and av[0] >= 1:  # type: ignore[index]
        return _sequence(av[2])  # type: ignore[index]
    if op is sre.BRANCH:
        # One alternative matches: the union of each alternative's most selective set.
        options = [_most_selective(_sequence(branch)) for branch in av[1]]  # type: ignore[index]
        if any(option is None for option in options):
            return []
        return [_shortest(frozenset().union(*options))]  # type: ignore[arg-type]
    # Anything else (character sets, optional repeats, assertions, back-references,
    # non-ASCII literals) promises no literal text.
    return []


def _most_selective(requirements: list[Literals]) -> Literals | None:
    """The set whose shortest string is longest (None when there is none)."""
    return max(requirements, key=lambda options: min(map(len, options)), default=None)
