"""Findings named by one word of a coordination that shares its noun ("ellipsis").

"No pleural or pericardial effusion" names two findings, pleural effusion and pericardial
effusion, but only "pericardial effusion" is a lexicon term in the text. When a finding
term of two or more words is preceded by "<word> or", "<word> and" or "<word>, or"
(and, before that, more "<word>," links), and the word followed by the rest of the term
is itself a finding term of the lexicon ("pleural" + "effusion"), the word becomes a
finding of its own, as if the shared noun had been written after it. Its span is the
word: assertion, anatomy and sizes then attach to it as to any other finding.

Only coordinations ending in "and"/"or" right before the term count, so laterality pairs
("left and right pleural effusions": "right" sits between "and" and the term) and
coordinations of whole findings ("pleural thickening or effusion": the term after "or"
is one word) are left alone, and a word that is already part of a term is never reused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .types import Term

# The word before a link: ", ", " or ", " and ", ", or ", ", and " (at the end of the text
# searched, which stops where the next word of the coordination starts).
_LINK = re.compile(r"(?<![\w-])(?P<word>[A-Za-z]+)(?P<link>\s*,\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+)$",
                   re.IGNORECASE)
_CONJUNCTION = re.compile(r"\b(?:and|or)\b", re.IGNORECASE)
_WINDOW = 40  # characters searched before each link (longer words are not coordinated)


def elided_findings(text: str, findings: Sequence[Term], taken: Sequence[Term],
                    lookup: Callable[[str], tuple[str, bool] | None]) -> list[Term]:
    """The findings named by coordinated words before multi-word finding terms.

    ``taken`` are the terms whose words may not be reused (findings, sides, qualifiers);
    ``lookup`` gives (entry key, plural) for the lower-cased, single-spaced text of a
    finding term of the lexicon, or None.
    """
    out: list[Term] = []
    for term in findings:
        first, _, rest = " ".join(term.text.split()).partition(" ")
        if not rest:
            continue
        pos, first_link = term.start, True
        while True:
            link = _LINK.search(text, max(0, pos - _WINDOW), pos)
            if link is None or (first_link and not _CONJUNCTION.search(link.group("link"))):
                break
            start, end = link.span("word")
            found = lookup(f"{link.group('word').lower()} {rest.lower()}")
            if found is None or any(t.start < end and start < t.end for t in taken):
                break
            key, plural = found
            out.append(Term(lexicon="finding", key=key, start=start, end=end,
                            text=text[start:end], plural=plural))
            pos, first_link = start, False
    return out
