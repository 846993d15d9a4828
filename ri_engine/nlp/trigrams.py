"""Rule out absent strings without reading the whole text: which three-byte runs it holds.

``Screen`` (prefilter.py) asks one report for a hundred or so short strings ("rads",
"cuzick", "tr-4"), nine in ten of them absent, and a substring test for an absent string
reads all of a 3 KB report (about 1.4 us). ``TrigramTable`` marks, once per text, every
run of three consecutive bytes of its UTF-8 form, hashed into a 64 KB table (about 10 us
with numpy). A string with a run the table lacks is not in the text: a substring of the
text has its bytes, and so its runs, in the text's bytes. Runs that share a slot only let
a string through to the real substring test, so answers never change.
"""

from __future__ import annotations

import functools

import numpy

_BITS = 16
_MASK = (1 << _BITS) - 1


def _slot(first: object, second: object, third: object) -> object:
    """The table slot of a three-byte run (for ints, or elementwise for numpy arrays)."""
    return ((first << 10) ^ (second << 5) ^ third) & _MASK  # type: ignore[operator]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # any str, lone surrogates included


@functools.lru_cache(maxsize=4096)
def _slots(needle: str) -> tuple[int, ...]:
    data = _utf8(needle)
    return tuple(dict.fromkeys(_slot(a, b, c) for a, b, c in zip(data, data[1:], data[2:])))  # type: ignore[misc]


class TrigramTable:
    """The three-byte runs of one text; ``may_contain`` is False only for absent strings."""

    def __init__(self, text: str) -> None:
        data = numpy.frombuffer(_utf8(text), dtype=numpy.uint8).astype(numpy.intp)
        table = numpy.zeros(1 << _BITS, dtype=numpy.uint8)
        if len(data) >= 3:
            table[_slot(data[:-2], data[1:-1], data[2:])] = 1
        self._table = table.tobytes()  # indexing bytes is far cheaper than a numpy array

    def may_contain(self, needle: str) -> bool:
        """False when ``needle`` cannot be in the text (strings under three bytes: True)."""
        table = self._table
        for slot in _slots(needle):
            if not table[slot]:
                return False
        return True
