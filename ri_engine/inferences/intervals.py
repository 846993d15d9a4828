"""Follow-up timing written in a recommendation, resolved against the document date.

"in 3 months" -> effectiveAt; "in 6-12 months" / "in 6 to 12 months" -> effectivePeriod;
"within (the next) 6 months" -> effectivePeriod from the document date (RI docs, §5.8);
"6-month follow-up" -> effectiveAt; "annually", "yearly", "every 2 years" -> effectiveAt one
interval ahead; "in January 2022" -> effectiveAt "2022-01". Months are calendar months.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from ..knowledge import load_json

_VOCAB = load_json("recommendations.json")
_NUM = r"(?:\d+(?:\.\d+)?|%s)" % "|".join(sorted(_VOCAB["number_words"], key=len, reverse=True))
_UNIT = r"(?P<unit>%s)\b" % "|".join(sorted(_VOCAB["units"], key=len, reverse=True))
_WITHIN = re.compile(rf"\bwithin\s+(?:the\s+)?(?:next\s+)?(?:(?P<a>{_NUM})\s*(?:-|to)\s*)?(?P<b>{_NUM})[\s-]*{_UNIT}", re.I)
_RANGE = re.compile(rf"(?<![\w.])(?P<a>{_NUM})\s*(?:-|to)\s*(?P<b>{_NUM})[\s-]*{_UNIT}", re.I)
_POINT = re.compile(rf"\b(?:in|after|at|for)\s+(?:approximately\s+|about\s+|another\s+)?(?P<b>{_NUM})[\s-]*{_UNIT}", re.I)
_ADJ = re.compile(rf"(?<![\w.])(?P<b>{_NUM})[\s-]*{_UNIT}\s+(?:interval\s+)?(?:follow|repeat|re-?evaluation|surveillance|check)", re.I)
_EVERY = re.compile(rf"\bevery\s+(?:(?P<b>{_NUM})\s*)?{_UNIT}", re.I)
_ADVERB = re.compile(r"\b(?P<word>%s)\b" % "|".join(_VOCAB["every"]), re.I)
# "in 6-8 weeks", "within the next six months": a time ahead of the report, not one before it
# ("in 3 months ago" is no phrasing; "3 months ago", "in the prior 6 months" are not matched).
_AHEAD = re.compile(rf"\b(?:in|within|at)\s+(?:the\s+next\s+|approximately\s+|about\s+|another\s+)?"
                    rf"(?:{_NUM}\s*(?:-|to)\s*)?{_NUM}[\s-]*{_UNIT}"
                    rf"(?!\s+(?:ago|prior|earlier|before|of\s+age|old)\b)", re.I)
_MONTH_YEAR = re.compile(r"\bin\s+(?P<month>january|february|march|april|may|june|july|august|september|october|november|december)\s+(?P<year>\d{4})\b", re.I)


@dataclass(frozen=True)
class Timing:
    effective_at: str | None = None
    period: tuple[str, str] | None = None
    span: tuple[int, int] | None = None   # offsets inside the sentence text


def names_time_ahead(sentence: str) -> bool:
    """The sentence sets a time ahead of the report ("pelvic ultrasound in 6-8 weeks")."""
    return _AHEAD.search(sentence) is not None


def timing(sentence: str, base: dt.date | None) -> Timing:
    """When the recommendation should happen, or an empty Timing."""
    if base is None:
        return Timing()
    m = _MONTH_YEAR.search(sentence)
    if m:
        month = list(calendar.month_name).index(m.group("month").capitalize())
        return Timing(effective_at=f"{int(m.group('year')):04d}-{month:02d}", span=m.span())
    m = _WITHIN.search(sentence)
    if m:
        return _period(base.isoformat(), _shift(base, m.group("b"), m.group("unit")), m.span())
    m = _RANGE.search(sentence)
    if m:
        return _period(_shift(base, m.group("a"), m.group("unit")),
                       _shift(base, m.group("b"), m.group("unit")), m.span())
    for pattern in (_POINT, _ADJ, _EVERY):
        m = pattern.search(sentence)
        if m:
            return Timing(effective_at=_shift(base, m.group("b") or "1", m.group("unit")), span=m.span())
    m = _ADVERB.search(sentence)
    if m:
        amount, unit = _VOCAB["every"][m.group("word").lower()]
        return Timing(effective_at=_shift(base, str(amount), unit), span=m.span())
    return Timing()


def _period(start: str | None, end: str | None, span: tuple[int, int]) -> Timing:
    return Timing(period=(start, end) if start and end else None, span=span)


def _number(text: str) -> float:
    words = _VOCAB["number_words"]
    return float(words[text.lower()]) if text.lower() in words else float(text)


def _shift(base: dt.date, amount_text: str, unit_text: str) -> str | None:
    """``base`` moved by the interval, or None when that is past what a date can hold.

    The amount comes from the report ("in 9000 years", "in 999999999999 days"): a date out
    of range leaves the recommendation without a date rather than failing the analysis.
    """
    amount = _number(amount_text)
    unit = _VOCAB["units"][unit_text.lower()]
    try:
        if unit == "days":
            return (base + dt.timedelta(days=amount)).isoformat()
        if unit == "weeks":
            return (base + dt.timedelta(weeks=amount)).isoformat()
        months = round(amount * (12 if unit == "years" else 1))
        return add_months(base, months).isoformat()
    except (OverflowError, ValueError):
        return None


def add_months(base: dt.date, months: int) -> dt.date:
    index = base.month - 1 + months
    year, month = base.year + index // 12, index % 12 + 1
    day = min(base.day, calendar.monthrange(year, month)[1])
    return dt.date(year, month, day)
