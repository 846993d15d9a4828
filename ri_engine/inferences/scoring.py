"""``scoringAndAssessment``: structured scores written in the report (ri_contract §5.11).

One inference per mention, in text order, duplicates kept (RI does not merge them).
The category table (names, value grammars, descriptions) is data:
``ri_engine/knowledge/scoring_categories.json``. A mention is a system name, optional
filler words ("category", "score of", ":", "v2.1"), then a value, a range ("PI-RADS 3-4",
"PI-RADS 3 or 4") or a list ("BI-RADS 2 and 4": one mention per value, for two lesions or
two breasts; two subcategories of one category, "BI-RADS 4A and 4B", stay a range);
a few systems are also recognised by their value alone ("TR4", "LR-5"). Overlapping
matches keep the longest one (then the higher priority), so "O-RADS MRI 4" is not also
read as "O-RADS 4". Evidence is the tokens of the name and of the value(s) only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..context import AnalysisContext
from .. import knowledge
from ..models import AssessmentValueRange, Inference, ScoringAndAssessmentInference
from ..nlp.casefold import CaseFolded, fold
from ..nlp.prefilter import Literals, Screen, required_literals

# Same token facts as RI's offsets: numbers whole, words whole, any other character alone.
_SPACES = re.compile(r"\s+")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[^\s\w]")
_ROMAN = {"0": "0", "I": "1", "II": "2", "III": "3", "IV": "4"}
_TO_ROMAN = {"1": "I", "2": "II", "2F": "IIF", "3": "III", "4": "IV"}


@dataclass(frozen=True)
class ScoreMention:
    """One score written in the text: category, value or range, and where."""

    category: str
    description: str
    start: int
    end: int
    value: str
    maximum: str | None
    spans: tuple[tuple[int, int], ...]   # name and value spans (for evidence)
    priority: int = 0


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    entry: dict[str, Any]
    literals: tuple[Literals, ...]  # every match has one string of each (nlp/prefilter.py)
    folded: CaseFolded              # the scan itself runs over the case-folded report

    @classmethod
    def compile(cls, pattern: str, entry: dict[str, Any]) -> _Pattern:
        regex = re.compile(pattern, re.IGNORECASE)
        return cls(regex, entry, required_literals(regex), CaseFolded(regex))


@cache
def _table() -> dict[str, Any]:
    path = Path(__file__).resolve().parent.parent / "knowledge" / "scoring_categories.json"
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _patterns() -> tuple[_Pattern, ...]:
    table = _table()
    filler = table["filler"]
    separator = table["rangeSeparator"]
    out: list[_Pattern] = []
    for entry in table["categories"]:
        value = f"(?:{entry['value']})"
        end = r"(?![\w%])(?!\.\d)"
        for name in entry["names"]:
            body = rf"(?<![\w-])(?P<name>{name})(?![\w]){filler}(?P<v>{value})"
            if entry.get("range"):
                # "4-5" / "4 to 5" / "4 or 5": one score; "2 and 4" / "2, 3 and 4": a list.
                item = rf"{value}{end}{table['listValueEnd']}"
                listed = rf"(?:\s*,\s*{item})*(?:\s*,\s*and\s+|\s+and\s+){item}"
                body += rf"(?:(?:{separator})(?P<v2>{value})|(?P<list>{listed}))?"
            out.append(_Pattern.compile(body + end, entry))
        for direct in entry.get("direct", ()):
            out.append(_Pattern.compile(direct + end, entry))
    return tuple(out)


@cache
def _list_item(value: str) -> re.Pattern[str]:
    """One separator and value of a list ("and 4", ", 3") of a category's value grammar."""
    return re.compile(rf"(?:{_table()['listSeparator']})(?P<v>(?:{value}))", re.IGNORECASE)


def _main_category(value: str) -> str:
    """The category a value belongs to without its subcategory: 4A -> 4, IIF -> II, 2F -> 2."""
    head = re.match(r"\d+|[IVX]+(?=F?$)", value)
    return head.group(0) if head else value


def category_names() -> list[str]:
    """Every category this builder can produce, in table order."""
    return [entry["category"] for entry in _table()["categories"]]


def _normalise(raw: str, entry: dict[str, Any]) -> str:
    value = _SPACES.sub("", raw)
    strip = entry.get("strip")
    if strip:
        value = knowledge.pattern(strip).sub("", value)
    value = value.upper()
    mode = entry.get("normalise", "upper")
    if mode == "number":
        value = value.replace(",", "").rstrip("%")
    elif mode == "signed":
        value = value.replace("−", "-").replace("–", "-").lstrip("+")
    elif mode == "roman_to_arabic":
        value = _ROMAN.get(value, value)
    elif mode == "arabic_to_roman":
        value = _TO_ROMAN.get(value, value)
    return value


# A score the sentence denies right before its name ("No PI-RADS 4 or 5 lesion", "without
# a LI-RADS 5 observation", "no sonographic evidence of a TI-RADS 5 nodule", "no findings to
# suggest a Lung-RADS 4 category", "does not meet criteria for PI-RADS 4") assesses
# nothing: the report says no lesion has it.
_DENIED_BEFORE = re.compile(
    r"\b(?:no|not|without|negative\s+for|absence\s+of|rather\s+than"
    r"|(?:no|without)\s+(?:any\s+)?(?:[a-z]+\s+)?(?:evidence|findings?|features?|signs?)"
    r"\s+(?:of|for|to\s+suggest|suggesting|suggestive\s+of|consistent\s+with)"
    r"|(?:does|do|did|would)\s+not\s+(?:meet|fulfil|fulfill|satisfy|reach|qualify\s+for)"
    r"(?:\s+(?:the\s+)?(?:criteria|threshold)\s+(?:for|of))?"
    r"|not\s+(?:meeting|reaching)(?:\s+(?:the\s+)?(?:criteria|threshold)\s+(?:for|of))?)\s+"
    r"(?:(?:an?|any|the|other|new|definite|additional|suspicious)\s+)?$", re.IGNORECASE)
# "LR-3 versus LR-4", "BI-RADS 3 or BI-RADS 4": two mentions of one system given as
# alternatives are one score with a range, as "PI-RADS 3 or 4" is.
_ALTERNATIVE_BETWEEN = re.compile(r"\s*(?:or|versus|vs\.?|to)\s*", re.IGNORECASE)


def find_scores(text: str) -> list[ScoreMention]:
    """Every score mention in ``text``, in text order, overlaps resolved; denied ones
    ("No PI-RADS 4 or 5 lesion") left out."""
    candidates: list[tuple[ScoreMention, ...]] = []
    # Most reports name none of the ~50 systems: rule patterns out on their literal text
    # instead of letting each one scan the whole report.
    screen = Screen(text)
    folded = fold(text)  # values are upper-cased by _normalise, offsets are the text's
    for pattern in _patterns():
        if not screen.may_match(pattern.literals):
            continue
        for match in pattern.folded.pattern_for(text).finditer(folded):
            candidates.append(_mentions(text, match, pattern.entry))
    # Longest first, then higher priority; a kept match blocks everything it overlaps.
    # The mentions of one match (a list) stand or fall together.
    candidates.sort(key=lambda ms: (-(ms[-1].end - ms[0].start), -ms[0].priority, ms[0].start))
    kept: list[tuple[ScoreMention, ...]] = []
    for mentions in candidates:
        start, end = mentions[0].start, mentions[-1].end
        if all(end <= k[0].start or start >= k[-1].end for k in kept):
            kept.append(mentions)
    return _merge_alternatives(text, sorted(
        (m for ms in kept for m in ms
         if not _DENIED_BEFORE.search(text, max(0, ms[0].start - 60), ms[0].start)),
        key=lambda m: m.start))


def _merge_alternatives(text: str, mentions: list[ScoreMention]) -> list[ScoreMention]:
    out: list[ScoreMention] = []
    for mention in mentions:
        before = out[-1] if out else None
        if (before is not None and before.category == mention.category
                and before.maximum is None and mention.maximum is None
                and _ALTERNATIVE_BETWEEN.fullmatch(text, before.end, mention.start)):
            out[-1] = ScoreMention(
                category=before.category, description=before.description, start=before.start,
                end=mention.end, value=before.value, maximum=mention.value,
                spans=before.spans + mention.spans, priority=before.priority)
            continue
        out.append(mention)
    return out


def _mentions(text: str, match: re.Match[str], entry: dict[str, Any]) -> tuple[ScoreMention, ...]:
    """The score mentions of one match: one, or one per value of a list."""
    groups = match.groupdict()
    name = [match.span("name")] if groups.get("name") is not None else []
    # A pattern that needs context before its value ("C-RADS C1, E2" for E2) marks
    # where its own mention starts with the group "at", so the context stays free
    # for the mention it belongs to.
    start = match.start("at") if groups.get("at") is not None else match.start()

    def mention(at: int, end: int, value: tuple[int, int], maximum: tuple[int, int] | None = None
                ) -> ScoreMention:
        spans = [*name, value] + ([maximum] if maximum else [])
        return ScoreMention(
            category=entry["category"], description=entry["description"], start=at, end=end,
            value=_normalise(text[value[0]:value[1]], entry),
            maximum=_normalise(text[maximum[0]:maximum[1]], entry) if maximum else None,
            spans=tuple(spans), priority=entry.get("priority", 0))

    first = match.span("v")
    if groups.get("v2") is not None:
        return (mention(start, match.end(), first, match.span("v2")),)
    if groups.get("list") is None:
        return (mention(start, match.end(), first),)
    list_start, list_end = match.span("list")
    values = [first] + [m.span("v") for m in _list_item(entry["value"]).finditer(
        match.string, list_start, list_end)]
    mentions = [mention(start, first[1], first)]
    mentions += [mention(a, b, (a, b)) for a, b in values[1:]]
    if len(mentions) == 2 and _alternatives(match.string, list_end, mentions):
        return (mention(start, list_end, first, values[1]),)
    return tuple(mentions)


def _alternatives(text: str, end: int, mentions: list[ScoreMention]) -> bool:
    """Two listed values of one category differing only in a subcategory ("BI-RADS 4A
    and 4B") are one score given as alternatives, unless the text says "respectively"."""
    low, high = mentions[0].value, mentions[1].value
    if low == high or _main_category(low) != _main_category(high):
        return False
    return re.match(_table()["respectively"], text[end:end + 20], re.IGNORECASE) is None


def _token_spans(text: str, spans: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    out = []
    for start, end in spans:
        for token in _TOKEN.finditer(text, start, end):
            out.append((token.start(), token.end()))
    return out


def infer(ctx: AnalysisContext) -> list[Inference]:
    inferences: list[Inference] = []
    for mention in find_scores(ctx.text):
        if mention.maximum is not None and mention.maximum != mention.value:
            single, ranged = None, AssessmentValueRange(minimum=mention.value, maximum=mention.maximum)
        else:
            single, ranged = mention.value, None
        evidence = ctx.evidence(*_token_spans(ctx.text, mention.spans))
        inferences.append(ScoringAndAssessmentInference(
            category=mention.category, category_description=mention.description,
            single_value=single, range_value=ranged, extension=evidence or None))
    return inferences
