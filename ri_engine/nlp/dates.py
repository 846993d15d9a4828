"""Dates and times written in reports, resolved against the document date.

Recognised: ``6/29/2012``, ``1/1/15``, ``2023/09/05``, ``2023-09-05``, ``November 5 2020``,
``Nov. 5, 2020``, ``5 November 2020``, ``January 2022``, ``September 5`` (year taken from the
document date), ``today``/``yesterday``; times ``3 PM``, ``5:05 p.m.``, ``15:30``,
``1430 hours``, ``at 0215``, ``noon``.
A date whose year is written with two digits is kept but flagged ``two_digit_year``: RI does
not normalise those (ri_contract §9.8) and neither does ``communicatedAt``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .casefold import CaseFolded

_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9,
    "sept": 9, "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12,
    "december": 12,
}
_MONTH = r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
# Each pattern starts with a look-ahead for the characters its forms can start with (a
# digit, a month's or a relative word's first letter): one test fails most positions.
_DATE = re.compile(
    r"(?=[\djfmasondty])(?<![\w/])(?:"
    r"(?P<ymd_y>\d{4})[/-](?P<ymd_m>\d{1,2})[/-](?P<ymd_d>\d{1,2})"
    r"|(?P<mdy_m>\d{1,2})[/-](?P<mdy_d>\d{1,2})[/-](?P<mdy_y>\d{4}|\d{2})"
    rf"|{_MONTH}\s+(?P<md_d>\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?P<md_y>\d{{4}}))?"
    rf"|(?P<dm_d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<dm_month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?,?\s+(?P<dm_y>\d{{4}})"
    rf"|(?P<my_month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?,?\s+(?P<my_y>\d{{4}})"
    r"|(?P<rel>today|yesterday|this\s+morning|this\s+afternoon|this\s+evening|tonight)"
    r")(?![\w/])",
    re.IGNORECASE,
)
_ISO_DATE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})")
_TIME = re.compile(
    r"(?=[\dnm])(?<![\w:])(?:(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>a\.?\s?m\.?|p\.?\s?m\.?)(?![a-z])"
    r"|(?P<h24>[01]?\d|2[0-3]):(?P<m24>[0-5]\d)(?!\s*[ap]\.?m)(?![\d:])"
    # Four digits without a colon are a time only with "hours"/"hrs" or after "at" ("at 0215").
    r"|(?P<hm_h>[01]\d|2[0-3])(?P<hm_m>[0-5]\d)(?!\d|[:.,/]\d)"
    r"(?:\s*(?:hours|hrs|hr|h)(?![a-z])|(?<=\bat\s\d{4}))"
    r"|(?P<noon>noon|midnight))",
    re.IGNORECASE,
)

_DATE_FOLDED, _TIME_FOLDED = CaseFolded(_DATE), CaseFolded(_TIME)


@dataclass(frozen=True)
class DateMention:
    start: int
    end: int
    date: dt.date | None          # None when the text cannot be resolved to a day
    precision: str                # "day", "month"
    two_digit_year: bool = False

    def iso(self) -> str | None:
        if self.date is None:
            return None
        return self.date.isoformat() if self.precision == "day" else self.date.strftime("%Y-%m")


@dataclass(frozen=True)
class TimeMention:
    start: int
    end: int
    hour: int
    minute: int


def find_dates(text: str, base: dt.date | None) -> list[DateMention]:
    out: list[DateMention] = []
    scanned, pattern = _DATE_FOLDED.scan(text)
    for m in pattern.finditer(scanned):
        try:
            out.append(_resolve(m, base))
        except ValueError:
            continue  # "13/45/2020" and friends: not a date
    return out


def _resolve(m: re.Match[str], base: dt.date | None) -> DateMention:
    g = m.groupdict()
    s, e = m.span()
    if g["ymd_y"]:
        return DateMention(s, e, dt.date(int(g["ymd_y"]), int(g["ymd_m"]), int(g["ymd_d"])), "day")
    if g["mdy_y"]:
        year = int(g["mdy_y"])
        two = len(g["mdy_y"]) == 2
        if two:
            year += 2000 if year < 50 else 1900
        return DateMention(s, e, dt.date(year, int(g["mdy_m"]), int(g["mdy_d"])), "day", two)
    if g["month"]:
        month = _MONTHS[g["month"].lower().rstrip(".")]
        if g["md_y"]:
            return DateMention(s, e, dt.date(int(g["md_y"]), month, int(g["md_d"])), "day")
        if base is None:
            return DateMention(s, e, None, "day")
        return DateMention(s, e, dt.date(base.year, month, int(g["md_d"])), "day")
    if g["dm_month"]:
        month = _MONTHS[g["dm_month"].lower().rstrip(".")]
        return DateMention(s, e, dt.date(int(g["dm_y"]), month, int(g["dm_d"])), "day")
    if g["my_month"]:
        month = _MONTHS[g["my_month"].lower().rstrip(".")]
        return DateMention(s, e, dt.date(int(g["my_y"]), month, 1), "month")
    rel = g["rel"].lower()
    if base is None:
        return DateMention(s, e, None, "day")
    if rel == "yesterday":
        # The day before 0001-01-01 is not a date.
        return DateMention(s, e, base - dt.timedelta(days=1) if base > dt.date.min else None, "day")
    return DateMention(s, e, base, "day")


def find_times(text: str) -> list[TimeMention]:
    out: list[TimeMention] = []
    scanned, pattern = _TIME_FOLDED.scan(text)
    for m in pattern.finditer(scanned):
        g = m.groupdict()
        if g["noon"]:
            out.append(TimeMention(m.start(), m.end(), 12 if g["noon"].lower() == "noon" else 0, 0))
            continue
        if g["h24"] is not None:
            out.append(TimeMention(m.start(), m.end(), int(g["h24"]), int(g["m24"])))
            continue
        if g["hm_h"] is not None:
            out.append(TimeMention(m.start(), m.end(), int(g["hm_h"]), int(g["hm_m"])))
            continue
        hour = int(g["h"])
        if hour > 12:
            continue
        pm = g["ampm"].lower().startswith("p")
        hour = (hour % 12) + (12 if pm else 0)
        out.append(TimeMention(m.start(), m.end(), hour, int(g["m"] or 0)))
    return out


def parse_document_date(value: str | None) -> dt.date | None:
    """The date part of an RI datetime string, leniently ("2014-2-20T00:00:00" works)."""
    if not value:
        return None
    match = _ISO_DATE.match(value)
    if not match:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
