"""Groups of ``re`` parser op codes read by the modules that look inside patterns
(prefilter.py, guarded.py, leading.py); the op codes are stable since Python 3.11."""

from __future__ import annotations

from re import _constants as sre

# Items that consume no text: anchors such as ``\b`` and ``^``, look-aheads, look-behinds.
ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)
# Repeats of every kind: greedy, lazy, possessive.
REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
