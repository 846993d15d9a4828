"""Case-folded scans: the spans of the case-insensitive pattern, on any text."""

from __future__ import annotations

import re

import pytest

from ri_engine.nlp.casefold import CaseFolded, lower_source
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


@pytest.mark.parametrize(("source", "lowered"), [
    (r"\bIPMNs?\b|RUL", r"\bipmns?\b|rul"),
    (r"(?P<Side>LEFT)\s+\S+(?P=Side)", r"(?P<Side>left)\s+\S+(?P=Side)"),
    (r"[A-Z]\N{LATIN SMALL LETTER A}\B", r"[a-z]\N{LATIN SMALL LETTER A}\B"),
])
def test_lower_source_keeps_escapes_and_group_names(source: str, lowered: str) -> None:
    assert lowered == lower_source(source)


def test_upper_case_literals_match_as_with_ignorecase() -> None:
    pattern = re.compile(r"\b(?:IPMNs?|RUL|cystic\s+lesions?)\b", re.IGNORECASE)
    text = "Two IPMNs and a Cystic  lesion; rul nodule, ipmn."
    scanned, folded = CaseFolded(pattern).scan(text)
    assert [m.span() for m in pattern.finditer(text)] == [m.span() for m in folded.finditer(scanned)]


def test_refuses_a_range_across_cases() -> None:
    with pytest.raises(ValueError):
        CaseFolded(re.compile("[A-z]+", re.IGNORECASE))
