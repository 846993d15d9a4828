"""HL7 v2 data types read into RI values: TS/DTM dates, XCN/CNN names, CE/CWE codings.

Every reader takes a raw (escaped) field value and the message's ``Delimiters``.

Date decisions: HL7 TS/DTM ``YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]``. A birth date keeps
the calendar date as sent (a time zone does not move a birthday) and a partial one stays
partial (``1950``, ``1950-03``, FHIR date forms) rather than inventing a month or day.
Date-times become ``YYYY-MM-DDTHH:MM:SS`` with ``+HH:MM`` appended when the sender gave
an offset; missing time parts are zero. Values that are not valid dates (free text,
month 13, a 9-digit date) give ``None`` and the caller records a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .escapes import render_text
from .header import Delimiters

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?$")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def components(value: str, d: Delimiters) -> list[str]:
    return value.split(d.component) if d.component else [value]


def subcomponents(value: str, d: Delimiters) -> list[str]:
    return value.split(d.subcomponent) if d.subcomponent else [value]


def repetitions(value: str, d: Delimiters) -> list[str]:
    return value.split(d.repetition) if d.repetition else [value]


def component(value: str, index: int, d: Delimiters) -> str:
    """Component ``index`` (1-based) of a field value, unescaped and stripped."""
    comps = value.split(d.component) if d.component else [value]  # components(), inlined
    if index > len(comps):
        return ""
    return text(comps[index - 1], d)


def text(value: str, d: Delimiters) -> str:
    """An unescaped, stripped value; the HL7 explicit null ``""`` reads as empty."""
    value = value.strip()
    if value == '""':
        return ""
    return render_text(value, d).strip()


def _parts(value: str) -> tuple[int, ...] | None:
    match = _TS.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) if g else None for g in match.groups()[:6])
    if month is not None and not 1 <= month <= 12:
        return None
    if day is not None and not 1 <= day <= _DAYS[(month or 1) - 1]:
        return None
    if day is not None and month == 2 and day == 29 and not _leap(year or 0):
        return None
    if (hour or 0) > 23 or (minute or 0) > 59 or (second or 0) > 59:
        return None
    return tuple(p for p in (year, month, day, hour, minute, second) if p is not None)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def hl7_date(value: str) -> str | None:
    """A TS/DT value as a FHIR date (``YYYY-MM-DD``, or ``YYYY-MM`` / ``YYYY`` when partial)."""
    parts = _parts(value)
    if parts is None:
        return None
    return "-".join(f"{p:04d}" if i == 0 else f"{p:02d}" for i, p in enumerate(parts[:3]))


def is_hl7_datetime(value: str) -> bool:
    """Whether :func:`hl7_datetime` reads ``value`` (without formatting it)."""
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) in (4, 6, 8, 10, 12, 14):
        return _valid_digits(value)  # the usual form, without the regex and int()s of _parts
    return _parts(value) is not None


_MONTH_DAYS = {f"{month:02d}": f"{days:02d}" for month, days in enumerate(_DAYS, 1)}


def _valid_digits(ts: str) -> bool:
    """``_parts(ts) is not None`` for ``YYYY[MM[DD[HH[MM[SS]]]]]`` in ASCII digits: two-digit
    fields compare as strings the way they compare as numbers."""
    month, day, hour, minute, second = ts[4:6], ts[6:8], ts[8:10], ts[10:12], ts[12:14]
    if month and month not in _MONTH_DAYS:
        return False
    if day and not "01" <= day <= _MONTH_DAYS[month]:
        return False
    if month == "02" and day == "29" and not _leap(int(ts[:4])):
        return False
    return hour <= "23" and minute <= "59" and second <= "59"


def hl7_datetime(value: str) -> str | None:
    """A TS/DTM value as ``YYYY-MM-DDTHH:MM:SS[+HH:MM]`` (partial values padded with zeros)."""
    raw = value.strip()
    parts = _parts(raw)
    if parts is None:
        return None
    year, month, day, hour, minute, second = (list(parts) + [1, 1, 0, 0, 0][len(parts) - 1:])[:6]
    out = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    zone = _TS.match(raw).group(7)  # type: ignore[union-attr]
    if zone:
        out += f"{zone[:3]}:{zone[3:]}"
    return out


@dataclass(frozen=True)
class Person:
    """An XCN/CNN person (ordering provider, result interpreter), unescaped."""

    id: str
    family: str
    given: str
    middle: str = ""
    prefix: str = ""
    suffix: str = ""
    raw: str = ""

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.prefix, self.given, self.middle, self.family, self.suffix) if p)


def xcn(value: str, d: Delimiters) -> Person | None:
    """XCN: id^family^given^middle^suffix^prefix... (family may carry sub-components)."""
    if not value.strip() or value.strip() == '""':
        return None
    c = components(value, d)

    def part(i: int) -> str:
        return text(subcomponents(c[i], d)[0], d) if i < len(c) else ""

    person = Person(part(0), part(1), part(2), part(3), part(5), part(4), value)
    return person if person.id or person.full_name else None


def cnn(value: str, d: Delimiters) -> Person | None:
    """OBR-32 NDL: the first component is a CNN written with sub-components (id&family&given...)."""
    first = components(value, d)[0]
    s = subcomponents(first, d)

    def part(i: int) -> str:
        return text(s[i], d) if i < len(s) else ""

    person = Person(part(0), part(1), part(2), part(3), part(5), part(4), value)
    if not person.id and not person.full_name:
        return None
    return person


@dataclass(frozen=True)
class Coded:
    """A CE/CWE value: identifier, text, coding system, alternates and original text."""

    code: str
    display: str
    system: str
    alt_code: str = ""
    alt_display: str = ""
    alt_system: str = ""
    original_text: str = ""

    @property
    def label(self) -> str:
        return self.display or self.original_text or self.alt_display or self.code


def coded(value: str, d: Delimiters) -> Coded:
    """CE/CWE. Stray sub-component separators in a text component (an unescaped ``&`` in
    "MRI W/&W/O CONTRAST") are put back as the literal character."""
    c = components(value, d)

    def part(i: int) -> str:
        raw = c[i] if i < len(c) else ""
        return text(raw, d)

    return Coded(part(0), part(1), part(2), part(3), part(4), part(5), part(8))
