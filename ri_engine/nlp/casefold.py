"""Case-insensitive scans run case-sensitively over a lower-cased copy of the text.

``re.IGNORECASE`` folds the case of every character it compares and keeps ``re`` from
skipping ahead to the characters a match can start with; the same pattern without the
flag over the lower-cased text finds the same spans in about 60% of the time (dates,
sizes and times of a 3 KB report: 0.45 -> 0.28 ms). The spans are the same when

- lower-casing keeps every offset: ASCII text (other text is scanned as before), and
- the pattern is written in lower case: an upper-case letter, if any, only beside its
  lower-case form (``x|X``), and letter classes that include ``a-z``.

Groups then hold lower-cased text: callers that need the words as written slice the
original text with the match's offsets.
"""

from __future__ import annotations

import re


class CaseFolded:
    """A case-insensitive ``pattern`` and its case-sensitive twin for lower-cased text."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        if not pattern.flags & re.IGNORECASE:
            raise ValueError(f"not a case-insensitive pattern: {pattern.pattern!r}")
        self.pattern = pattern
        self.lower = re.compile(pattern.pattern, pattern.flags & ~re.IGNORECASE)

    def scan(self, text: str) -> tuple[str, re.Pattern[str]]:
        """The text to search and the pattern to search it with (same offsets as ``text``)."""
        return (text.lower() if text.isascii() else text), self.pattern_for(text)

    def pattern_for(self, text: str) -> re.Pattern[str]:
        """The pattern for the text ``scan(text)`` gives (another pattern's scan, say)."""
        return self.lower if text.isascii() else self.pattern
