"""Coordinated findings that share their noun: 'no pleural or pericardial effusion'."""

from __future__ import annotations

from functools import lru_cache

import pytest

from ri_engine.nlp import Pipeline


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    return Pipeline()


def findings(text: str) -> list[tuple[str, str, bool]]:
    """(key, words, negated) of every finding mention."""
    doc = pipeline().analyse(text)
    return [(m.key, text[m.start:m.end], m.assertion.negated) for m in doc._.ri_findings]


@pytest.mark.parametrize(("text", "expected"), [
    ("No pleural or pericardial effusion.",
     [("pleural_effusion", "pleural", True), ("pericardial_effusion", "pericardial effusion", True)]),
    ("Small pleural and pericardial effusions.",
     [("pleural_effusion", "pleural", False), ("pericardial_effusion", "pericardial effusions", False)]),
    ("No intracranial, subarachnoid, or subdural hemorrhage.",
     [("intracranial_hemorrhage", "intracranial", True), ("subarachnoid_hemorrhage", "subarachnoid", True),
      ("subdural_hematoma", "subdural hemorrhage", True)]),
])
def test_each_coordinated_word_names_its_finding(text: str, expected: list[tuple[str, str, bool]]) -> None:
    assert expected == findings(text)


@pytest.mark.parametrize(("text", "expected"), [
    # A side between the conjunction and the term: one finding on both sides.
    ("Left and right pleural effusions.", [("pleural_effusion", "pleural effusions", False)]),
    # Whole findings coordinated: nothing elided.
    ("No pneumothorax or pleural effusion.",
     [("pneumothorax", "pneumothorax", True), ("pleural_effusion", "pleural effusion", True)]),
    # A comma alone is a list of findings, not a shared noun.
    ("Pleural, pericardial effusion.", [("pericardial_effusion", "pericardial effusion", False)]),
    # The word and the rest of the term make no finding term.
    ("Mild and small pericardial effusion.", [("pericardial_effusion", "pericardial effusion", False)]),
])
def test_near_misses_name_no_extra_finding(text: str, expected: list[tuple[str, str, bool]]) -> None:
    assert expected == findings(text)
