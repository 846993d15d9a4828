"""Case-folded scans: the spans of the case-insensitive pattern, on any text."""

from __future__ import annotations

import re

import pytest

from ri_engine.nlp.casefold import CaseFolded
from ri_engine.nlp.dates import _DATE, _TIME
from ri_engine.nlp.measurements import _MEASUREMENT, _UNIT_ONLY


@pytest.mark.parametrize("pattern", [_DATE, _TIME, _MEASUREMENT, _UNIT_ONLY])
@pytest.mark.parametrize("text", [
    "Nodule 2.5 X 1.2 CM, previously 2 cm on Jan 5, 2020 at 10:30 PM.",
    "MASS LESS THAN 5 MM seen YESTERDAY at Noon; 3/4/21 and 12 March 2019.",
    "Nodule 2.5 \u00d7 1.2 cm (\u212a-space), 7 Sept. 2021, 7 P.M.",  # not ASCII: scanned as written
])
def test_same_spans_as_the_case_insensitive_pattern(pattern: re.Pattern[str], text: str) -> None:
    scanned, folded = CaseFolded(pattern).scan(text)
    assert [m.span() for m in pattern.finditer(text)] == [m.span() for m in folded.finditer(scanned)]


def test_refuses_a_case_sensitive_pattern() -> None:
    with pytest.raises(ValueError):
        CaseFolded(re.compile("abc"))
