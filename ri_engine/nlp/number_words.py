"""Cardinal numbers written in English words, 0 to 199 ("sixty-five", "seventy two").

``NUMBER_WORDS`` is a regular-expression fragment (no groups, case-insensitive use) that
matches one such number as a whole word; ``word_value`` turns the matched text into its
value. Tens and units may be joined by a hyphen or by spaces ("twenty-one", "twenty one"),
and a hundred may come first ("one hundred and two"). Reports write ages and counts this
way; sizes and intervals use digits almost always, so only the age reader uses it today.
"""

from __future__ import annotations

import re

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}


def _alternation(words: dict[str, int]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_UNIT_WORD = rf"(?:{_alternation(_UNITS)})"
_ONE_TO_NINE = rf"(?:{_alternation({w: v for w, v in _UNITS.items() if 1 <= v <= 9})})"
_TENS_WORD = rf"(?:{_alternation(_TENS)})"
_BELOW_HUNDRED = rf"(?:{_TENS_WORD}(?:(?:-|\s+){_ONE_TO_NINE})?|{_UNIT_WORD})"

NUMBER_WORDS = (
    rf"(?<![A-Za-z])(?:(?:(?:one|a)[\s-]+hundred(?:(?:\s+and)?[\s-]+{_BELOW_HUNDRED})?)"
    rf"|{_BELOW_HUNDRED})(?![A-Za-z])"
)

_WORD = re.compile(r"[A-Za-z]+")


def word_value(text: str) -> int | None:
    """The value of a number matched by ``NUMBER_WORDS``; None for anything else."""
    total = 0
    words = [w.lower() for w in _WORD.findall(text) if w.lower() != "and"]
    if not words:
        return None
    if len(words) >= 2 and words[1] == "hundred" and words[0] in ("one", "a"):
        total, words = 100, words[2:]
    for word in words:
        if word in _TENS:
            total += _TENS[word]
        elif word in _UNITS:
            total += _UNITS[word]
        else:
            return None
    return total
