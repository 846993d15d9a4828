"""Sizes in the text: ``5 mm``, ``7-mm``, ``5.6 x 4.5 x 3.4 cm``, ``2.5 cm x 1.2 cm``, ``6-8 mm``,
``2 to 3 mm``, ``between 5 and 7 mm``, ``< 3 cm``, ``up to 7 mm``, ``sub-5 mm``; current versus prior
("previously 6 mm", "increased from 4 mm to 6 mm", "increased from 4 to 6 mm", "6 mm on the prior
study").

Matching runs on the raw text (a regular expression is much cheaper than a token walk) and
returns character offsets, so the result lines up with every other layer.
"""

from __future__ import annotations

import re

from .casefold import CaseFolded
from .types import Measurement

_NUM = r"\d+(?:\.\d+)?|\.\d+"
_UNIT = r"mm|cm|millimet(?:er|re)s?|centimet(?:er|re)s?"
_MEASUREMENT = re.compile(
    r"(?:(?P<cmp>less\s+than|smaller\s+than|under|up\s+to|at\s+most|greater\s+than|larger\s+than"
    r"|more\s+than|over|at\s+least|<=|>=|\u2264|\u2265|<|>|sub-)\s*"
    r"(?:approximately|about|roughly|nearly|approx\.)?\s*)?"
    # "between 5 and 7 mm", "between 5 mm and 7 mm": a range (without "between", "5 and
    # 7 mm" names two sizes, and "from 4 mm to 6 mm" a change).
    rf"(?:between\s+(?P<b1>{_NUM})(?:\s*(?:{_UNIT})(?![A-Za-z]))?\s*(?:and|-|\u2013|to)\s*"
    rf"(?P<b2>{_NUM})"
    rf"|(?<![\w.])(?P<n1>{_NUM})"
    rf"(?:\s*(?:-|\u2013|to)\s*(?P<r2>{_NUM})"
    rf"|(?:\s*(?:{_UNIT})(?![A-Za-z]))?\s*(?:x|X|\u00d7|\*|by)\s*(?P<n2>{_NUM})"
    rf"(?:\s*(?:{_UNIT})(?![A-Za-z]))?(?:\s*(?:x|X|\u00d7|\*|by)\s*(?P<n3>{_NUM}))?)?)"
    # "7-mm nodule": the unit joined by a hyphen, as an adjective.
    rf"\s*(?:-\s*)?(?P<unit>{_UNIT})(?![A-Za-z])",
    re.IGNORECASE,
)
_COMPARATORS = {
    "less than": "<", "smaller than": "<", "under": "<", "<": "<", "sub-": "<",
    "up to": "<=", "at most": "<=", "<=": "<=", "\u2264": "<=",
    "greater than": ">", "larger than": ">", "more than": ">", "over": ">", ">": ">",
    "at least": ">=", ">=": ">=", "\u2265": ">=",
}
_PRIOR_BEFORE = re.compile(
    r"(?:previously|prior(?:ly)?|formerly|before|was|were|from|compared\s+(?:to|with)|versus|vs\.?)"
    r"\s*(?:measur\w+|seen\s+at|at)?\s*(?:approximately|about|roughly)?\s*\(?\s*$",
    re.IGNORECASE,
)
# "ranging from 4 to 6 mm", "varying in size from 2 to 5 mm": the "from" opens the range
# itself, not an earlier size.
_RANGE_FROM = re.compile(r"\b(?:rang\w*|var(?:y|ies|ying)|span\w*)\s+(?:in\s+size\s+)?from\s*$",
                         re.IGNORECASE)
# "increased from 4 to 6 mm", "has decreased in size from 9 to 7 mm": after a word of change,
# "from A to B" is the earlier size and the size now, not a range. Without one ("measuring
# from 4 to 6 mm") it stays a range, and neither end is an earlier size.
_CHANGE_WORD = re.compile(
    r"\b(?:increas\w*|decreas\w*|gr[eo]w\w*|enlarg\w*|expand\w*|shr[aiu]nk\w*|reduc\w*"
    r"|diminish\w*|progress\w*|regress\w*|chang\w*|improv\w*|worsen\w*|evolv\w*)\b",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[.;:\n]")
# "No significant change in the nodules, measuring from 4 to 6 mm": a denied change is none.
_NO_CHANGE = re.compile(r"\b(?:no|not|without)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
_FROM = re.compile(r"\bfrom\s*$", re.IGNORECASE)
_PRIOR_AFTER = re.compile(
    r"\s*\)?\s*(?:previously|(?:on|in|at)\s+(?:the\s+)?(?:prior|previous|earlier|last|comparison)\b)",
    re.IGNORECASE,
)


_SPACES = re.compile(r"\s+")
_UNIT_ONLY = re.compile(rf"(?<![A-Za-z])(?:{_UNIT})(?![A-Za-z])", re.IGNORECASE)


_MEASUREMENT_FOLDED, _UNIT_FOLDED = CaseFolded(_MEASUREMENT), CaseFolded(_UNIT_ONLY)


def _matches(text: str) -> list[re.Match[str]]:
    # The full pattern is costly to try at every offset; every size ends in a unit, so it
    # only runs in a window before each unit word. Matches are of the case-folded text.
    out: list[re.Match[str]] = []
    pos = 0
    scanned, measurement = _MEASUREMENT_FOLDED.scan(text)
    unit_only = _UNIT_FOLDED.pattern_for(text)
    for unit in unit_only.finditer(scanned):
        if unit.end() <= pos:
            continue
        for match in measurement.finditer(scanned, max(pos, unit.start() - 80), unit.end() + 40):
            if match.start() >= pos:
                out.append(match)
                pos = match.end()
    return out


def find_measurements(text: str) -> list[Measurement]:
    """Every size expression in ``text``, in order of appearance."""
    found: list[Measurement] = []
    for match in _matches(text):
        unit = "mm" if match.group("unit").lower().startswith(("mm", "milli")) else "cm"
        cmp_text = match.group("cmp")
        comparator = _COMPARATORS[_SPACES.sub(" ", cmp_text.lower())] if cmp_text else None
        start, end = match.span()
        first, second = ("b1", "b2") if match.group("b1") else ("n1", "r2")
        value_start = match.start(first)
        lead_end = start if first == "b1" else value_start  # "previously between 5 and 7 mm"
        lead = text[max(0, lead_end - 40):lead_end]
        prior = (bool(_PRIOR_BEFORE.search(lead)) and not _RANGE_FROM.search(lead)) or bool(
            _PRIOR_AFTER.match(text, end))
        if match.group(second) and first == "n1" and _FROM.search(lead):
            if _changed(text, value_start):
                found.extend(_change(match, unit))
                continue
            prior = False  # "measuring from 4 to 6 mm": a range of sizes now
        if match.group(second):
            low, high = float(match.group(first)), float(match.group(second))
            found.append(Measurement(
                start=start, end=end, unit=unit, low=low, high=high, comparator=comparator,
                prior=prior, value_spans=((value_start, match.end(second)),)))
            continue
        groups = [g for g in ("n1", "n2", "n3") if match.group(g)]
        values = tuple(float(match.group(g)) for g in groups)
        spans = tuple((match.start(g), match.end(g)) for g in groups)
        found.append(Measurement(
            start=start, end=end, unit=unit, values=values, comparator=comparator,
            prior=prior, value_spans=spans))
    return found


def _changed(text: str, value_start: int) -> bool:
    """Whether the "from" before ``value_start`` follows a word of change in its clause (the
    last such word, and not a denied one)."""
    words = list(_CHANGE_WORD.finditer(text, max(0, value_start - 80), value_start))
    if not words:
        return False
    word = words[-1]
    return (not _CLAUSE_END.search(text, word.end(), value_start)
            and not _NO_CHANGE.search(text, max(0, word.start() - 30), word.start()))


def _change(match: re.Match[str], unit: str) -> list[Measurement]:
    """"from 4 to 6 mm" after a word of change: the earlier size, then the size now, each in
    the unit written after the second (a unit after the first makes two sizes of its own)."""
    sizes = []
    for group, prior in (("n1", True), ("r2", False)):
        start, end = match.span(group)
        sizes.append(Measurement(
            start=match.start() if prior else start, end=end if prior else match.end(), unit=unit,
            values=(float(match.group(group)),), prior=prior, value_spans=((start, end),)))
    return sizes
