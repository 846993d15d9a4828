"""The tokenizer's look-ahead for dotted forms changes no token."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ri_engine.nlp.tokenizer import TOKEN_RE

# TOKEN_RE as written before the look-ahead (the reference).
_PLAIN = re.compile(
    r"(?:(?i:dr|drs|mr|mrs|ms|prof|approx|fig|st|jr|sr|ca|cf)\.(?=[ \t]*[\w(#]))"
    r"|(?:[A-Za-z]\.){2,}"
    r"|\d+(?:\.\d+)?"
    r"|[^\W\d_]+(?:'[sS]\b)?"
    r"|\S",
)
_TRICKY = ["Dr. Smith and DRS. Jones", "e.g. the i.e. a.m. p.m. U.S.A.", "approx. 5 cm, Fig. (3)",
           "\u017ft. Mary's; \u212a. L. \u0130. x; \u0131.", "st.", "Approx.\t#2", "mr.x A.B.C.D"]


def test_same_tokens_as_without_the_look_ahead() -> None:
    corpus = Path(__file__).resolve().parents[2] / "eval" / "corpus"
    texts = [json.loads(line)["text"] for path in sorted(corpus.glob("*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for text in [*_TRICKY, *texts]:
        assert [m.span() for m in _PLAIN.finditer(text)] == [m.span() for m in TOKEN_RE.finditer(text)], text
