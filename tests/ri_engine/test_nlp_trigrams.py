"""The trigram table: it rules out absent strings and never a present one."""

from __future__ import annotations

import pytest

from ri_engine.nlp.trigrams import TrigramTable


@pytest.mark.parametrize("text", [
    "", "ab", "Liver LACERATION, spleen intact.", "T\u00f6nnis grade 2 \u2013 caf\u00e9 \ud83d\ude00 \udc80",
    "BI-RADS 4A\nTR5 nodule; 30 pack-years", "aaaaaaaa",
])
def test_trigram_table_rules_out_only_absent_strings(text: str) -> None:
    table = TrigramTable(text)
    needles = {text[i:j] for i in range(len(text)) for j in range(i, min(len(text), i + 6) + 1)}
    needles |= {"rads", "cuzick", "tr-4", "caf\u00e9", "\udc80x", "zzz", "a", "", "aaab"}
    for needle in needles:
        assert table.may_contain(needle) or needle not in text, needle
    assert not table.may_contain("qqq") or "qqq" in text

