"""Sentence boundaries for radiology layout.

Reports are hard-wrapped, numbered, bulleted and full of headers, decimals and titles, so a
generic splitter cuts them in the wrong places. The rules here:

- a blank line always ends a sentence; so does a section header (it is not a sentence);
- a single line break ends a sentence unless the text clearly runs on: the next line starts
  in lower case, or the line ends with a comma, a colon (a run-in heading) or a word that
  cannot end a sentence ("the", "of", "with", ...);
- a numbered or bulleted list item ("1.", "2)", "-", "*", "•") starts a sentence, and the
  marker is not part of it (RI's sentence spans start after "2. ");
- a sentence opener capitalised right after a lower-case word ("No pneumothorax Moderate
  effusion") starts a sentence: the period was dropped in dictation;
- ``.``, ``!`` and ``?`` end a sentence when followed by whitespace, except after a title
  or abbreviation ("Dr. Smith", "e.g.", "approx.", "vs."); decimals ("5.6", "2.5 x 1.2 cm")
  never split because the dot is not followed by whitespace.

Sentences are returned trimmed: no surrounding whitespace, no list marker.
"""

from __future__ import annotations

import re

from .types import Section, Span

_LINE_BREAK = re.compile(r"\r\n|\r|\n|\\n")
# Tried only where a run of end punctuation starts, and never backtracked into: a run that is
# not followed by whitespace was otherwise rescanned from each of its characters, which took
# time quadratic in its length (50,000 dots: about a minute).
_END_PUNCT = re.compile(r"(?<![.!?])[.!?]++[\"')\]]*+(?=\s)")
_LIST_MARKER = re.compile(r"(?:\(?\d{1,2}[.)]|\(?[a-hA-H][.)]|[-*\u2022\u25cf\u25aa])[ \t]+")
_ABBREVIATIONS = frozenset({
    "dr", "drs", "mr", "mrs", "ms", "prof", "vs", "fig", "st", "jr", "sr", "ca", "cf",
    "e.g", "i.e", "eg", "ie", "pt", "pts", "resp", "max", "min", "incl", "esp",
})
_SOFT_ABBREVIATIONS = frozenset({"a.m", "p.m", "etc", "approx"})
_RUN_ON_WORDS = frozenset({
    "the", "a", "an", "of", "with", "and", "or", "to", "in", "on", "for", "at", "by", "from",
    "is", "are", "was", "were", "be", "been", "that", "which", "as", "than", "measuring",
    "without", "into", "onto", "within", "this", "these", "its", "their", "both", "nor",
})
# A dictated sentence whose period was dropped ("No pneumothorax Moderate right pleural
# effusion"): a word that opens radiology sentences, capitalised right after a lower-case
# word, starts a new sentence. Only such openers count, not any capital: names and terms
# ("Dr. Smith", "per Fleischner", "Bosniak IIF") are capitalised inside sentences.
_DROPPED_STOP = re.compile(
    r"(?<=[a-z])[ \t]+(?=(?:No|There|The|Small|Moderate|Mild|Large|Trace|Minimal|"
    r"Severe|Stable|Unchanged|Interval|Normal|New|Again|Otherwise|Redemonstrated|Persistent|"
    r"Resolved|Negative|Status|Heart|Lungs|Bones)\b)")
_PREVIOUS_TOKEN = re.compile(r"\S+$")
_UNITS = frozenset({"mm", "cm", "m", "ml", "cc", "hu", "mg", "kg", "g", "sec", "min", "mgy", "msv"})
# Words after which no sentence ends, though a line may end on them ("Pneumothorax: no"):
# "No New Fracture", "No Large Bowel Obstruction" are title case, not a dropped period.
_NO_STOP_AFTER = _RUN_ON_WORDS | {"no", "not", "any", "some", "very"}
_LONGEST_ABBREVIATION = max(map(len, _ABBREVIATIONS | _SOFT_ABBREVIATIONS))
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)\W*$")
_ALNUM = re.compile(r"[^\W_]")  # exactly str.isalnum (\w is alphanumerics plus "_")


def split_sentences(text: str, sections: list[Section]) -> list[Span]:
    """Trimmed sentence spans of ``text`` in order; headers are left out."""
    cuts: set[int] = {0, len(text)}
    header_spans = [(s.start, s.header_end) for s in sections if s.header_end is not None]
    for start, end in header_spans:
        cuts.add(start)
        cuts.add(end)
    _line_cuts(text, cuts)
    for match in _DROPPED_STOP.finditer(text):
        previous = _PREVIOUS_TOKEN.search(text, max(0, match.start() - 40), match.start())
        word = previous.group(0) if previous else ""
        # A word, not a size ("<3cm No need for follow-up" is a table row) nor a run-on word.
        if word.isalpha() and word.lower() not in _NO_STOP_AFTER and word.lower() not in _UNITS:
            cuts.add(match.end())
    for match in _END_PUNCT.finditer(text):
        if text[match.start()] == "." and _dot_ends_nothing(text, match.start()):
            continue
        cuts.add(match.end())
    ordered = sorted(cuts)
    header_end = {hs: he for hs, he in header_spans}
    sentences: list[Span] = []
    for start, end in zip(ordered, ordered[1:]):
        span = _trim(text, start, end)
        if span is None:
            continue
        # Headers are cut on both sides, so a header segment starts exactly at its header.
        if start in header_end and span.end <= header_end[start]:
            continue
        sentences.append(span)
    return sentences


def _line_cuts(text: str, cuts: set[int]) -> None:
    breaks = list(_LINE_BREAK.finditer(text))
    line_starts = [0] + [m.end() for m in breaks]
    line_ends = [m.start() for m in breaks] + [len(text)]
    # Each line, stripped once: it is the line after one break and the line before the next.
    lines = [text[start:end].strip() for start, end in zip(line_starts, line_ends)]
    for index, brk in enumerate(breaks):
        previous, following = lines[index], lines[index + 1]
        if not previous or not following or _is_hard_break(previous, following):
            cuts.add(brk.start())
            cuts.add(brk.end())


def _is_hard_break(previous: str, following: str) -> bool:
    if _LIST_MARKER.match(following + " "):
        return True
    if following[0].islower():
        return False
    if previous[-1] in ",:":
        # A run-in heading such as "Referral to Vascular Surgery:" belongs with the line it
        # introduces; known section headers are cut separately.
        return False
    if not previous[-1].isalpha():
        return True  # a line ending in punctuation or a digit ends its sentence
    last = _LAST_WORD.search(previous)
    return not (last and last.group(1).lower() in _RUN_ON_WORDS)


def _dot_ends_nothing(text: str, dot: int) -> bool:
    """The dot closes an abbreviation or a list number, not a sentence."""
    if dot > _LONGEST_ABBREVIATION and text[dot - _LONGEST_ABBREVIATION - 1:dot].isalpha():
        return False  # a word longer than any abbreviation or list number (most sentence ends)
    return _before_is_abbreviation(text, dot) or _is_list_number(text, dot)


def _is_list_number(text: str, dot: int) -> bool:
    """The dot of a list marker ("1." at the start of a line) ends nothing."""
    line_start = max(text.rfind("\n", 0, dot), text.rfind("\r", 0, dot)) + 1
    prefix = text[line_start:dot].strip()
    return bool(prefix) and len(prefix) <= 2 and (prefix.isdigit() or prefix.isalpha())


def _before_is_abbreviation(text: str, dot: int) -> bool:
    start = dot
    while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot].lower().rstrip(".")
    if not word:
        return False
    if word in _ABBREVIATIONS:
        return True
    if word in _SOFT_ABBREVIATIONS:
        # "3 p.m. today" runs on; "at 3 p.m. The results ..." ends.
        following = text[dot + 1:dot + 3].lstrip()
        return not (following[:1].isupper())
    # A lone capital initial ("J. Smith") is not a sentence end either.
    return len(word) == 1 and text[start].isupper() and start > 0 and text[start - 1] == " "


def _trim(text: str, start: int, end: int) -> Span | None:
    segment = text[start:end]
    content = segment.lstrip()
    if not content:
        return None
    start += len(segment) - len(content)
    end = start + len(content.rstrip())
    marker = _LIST_MARKER.match(text, start, end)
    if marker and marker.end() < end:
        start = marker.end()
    # Nearly every sentence starts with a letter or digit: no search then.
    if not (text[start].isalnum() or _ALNUM.search(text, start, end)):
        return None
    return Span(start, end)
