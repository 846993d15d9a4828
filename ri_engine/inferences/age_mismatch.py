"""ageMismatch: an age the report states for the patient disagrees with ``birthDate``.

The patient's true age is computed from ``details.birthDate`` at the context's reference
date (encounter start, else the document date). An inference is produced for every age
expression that describes the patient and falls outside the tolerance:

- years ("72-year-old", "72 yo", "72 y/o", "aged 72", "78 years old", "72 years of age",
  "45M with ..." / "72F, ..."),
  with the number also in words ("a sixty-five-year-old", "seventy two year old"):
  accepted within +/-1 year of the completed age (reports are dictated around birthdays
  and birth dates travel through time zones);
- months / weeks / days ("6-month-old", "3 week old"): +/-1 month, +/-2 weeks, +/-3 days;
- age words: each has an accepted range in years, already widened by a margin
  (``AGE_WORDS`` below): neonate/newborn, infant, toddler, adolescent/teenager,
  sexagenarian ... nonagenarian.

Ages that are not the patient's present age are skipped: another person's ("her
40-year-old son", "mother, 65 years old", "His brother, also a smoker, is seventy years
old", "a different patient, a 44-year-old woman"), a past event ("diagnosed at age 40",
"since age 12", "when she was 20 years old"), the age of a thing ("10-year-old fracture",
"ten-year-old left hip prosthesis", "hematoma, approximately two weeks old"; every age in
the COMPARISON section), other kinds of age ("Bone age: 11 years", "Gestational age: 32
weeks"), and words that run across a sentence break ("CT in one year / Old fractures").
Without a birth date or a reference date there is nothing to compare, so nothing is
produced (as RI does). Evidence: the RI tokens of the age expression.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from ..context import AnalysisContext
from ..models import AgeMismatchInference, Inference
from ..nlp.number_words import NUMBER_WORDS, word_value
from .quality_text import (
    knowledge, phrase_pattern, section_name_at, sentence_bounds, token_evidence,
)

_NUM = rf"(?P<n>\d{{1,3}}(?:\.\d)?|{NUMBER_WORDS})"
_UNIT = r"(?P<u>years?|yrs?|months?|mos?|weeks?|wks?|days?)"
# The compact form opens a line, a sentence or a labelled field ("HISTORY: 45M with ..."),
# or follows the words that introduce the patient ("Patient is a 45M with ...", "Pt is 80M
# with ..."): elsewhere a number and an F are a temperature ("fever to 102 F, cough") or a
# French size ("exchanged for a 10 F, which ...").  After "patient is" or "pt is" it may also
# end the sentence ("Patient is a 67F."): those words say whose the number is, where "This is
# a 10 F." or "The drain is a 10 F." may be a catheter's size.
_PATIENT_INTRO = "|".join(
    rf"(?<=(?i:\b{lead} {article}))" for lead in ("patient is", "pt is", "patient,")
    for article in ("a ", "an ", "") if article or lead != "patient,")
_OTHER_INTRO = "|".join(rf"(?<=(?i:\bthis is {article} ))" for article in ("a", "an"))
# The digit test comes first: most positions fail it at once, before the openers are tried.
COMPACT_AGE_SEX = re.compile(
    rf"(?=\d)(?<![\w.])(?:^|(?<=[.:;])|(?<=[.:;][ \t])|(?P<patient>{_PATIENT_INTRO})|{_OTHER_INTRO})"
    r"(?P<n>\d{1,3})\s?(?P<s>[MF])(?![\w-])"
    r"(?=\s*(?:[,;:]|$)"
    r"|\s+(?:with|w/|who|presenting|presents|s/p|status|c/o|complaining|here|for|after)\b"
    r"|(?(patient)\.(?!\d)|(?!)))",
    re.MULTILINE)
# "F/64, shortness of breath", "64/M with ...": sex and years joined by a slash, in the
# same openings as the compact form ("HISTORY: F/64," but not a ratio "M/F 2/1" or a date).
SLASH_AGE_SEX = re.compile(
    r"(?<![\w./])(?:^|(?<=[.:;])|(?<=[.:;][ \t]))"
    r"(?:(?P<s>[MF])[ \t]*/[ \t]*(?P<n>\d{1,3})|(?P<n2>\d{1,3})[ \t]*/[ \t]*(?P<s2>[MF]))(?![\w/.-])"
    r"(?=\s*(?:[,;:]|$)|\s+(?:with|w/|who|presenting|presents|s/p|status|c/o|complaining|here|for|after)\b)",
    re.MULTILINE)
_AGE_PATTERNS = (
    # 72-year-old, 78 years old, 6-month-old, 3 wk old
    re.compile(rf"(?<![\d.]){_NUM}\s*-?\s*{_UNIT}\s*-?\s*old\b", re.IGNORECASE),
    # 72 years of age
    re.compile(rf"(?<![\d.]){_NUM}\s*-?\s*{_UNIT}\s+of\s+age\b", re.IGNORECASE),
    # 72 yo, 72 y/o, 72 y.o., 72yo
    re.compile(rf"(?<![\d.]){_NUM}\s*(?P<u>yo|y/o|y\.o\.?|yoa)(?![A-Za-z])", re.IGNORECASE),
    # aged 72, age: 72, age 72
    re.compile(rf"\bage[d]?\s*:?\s*(?>{_NUM})(?![\d.])(?!\s*(?:months?|mos?|weeks?|wks?|days?)\b)",
               re.IGNORECASE),
    # 45M, 72 F: the years and the sex letter run together, as a history line opens
    # ("45M with chest pain", "72F, fall"); a catheter size ("5F pigtail") is followed by
    # its noun, not by one of these words.
    COMPACT_AGE_SEX,
    SLASH_AGE_SEX,
)

# Text every match of each pattern above holds (lower case): a cheap test before the scan.
_AGE_PATTERN_NEEDS = (("old",), ("age",), ("yo", "y/o", "y.o"), ("age",), ("m", "f"), ("/",))

# Accepted age range in years per age word, with a margin beyond the textbook range.
AGE_WORDS: dict[str, tuple[float, float]] = {
    "neonate": (0.0, 0.25), "newborn": (0.0, 0.25), "neonatal": (0.0, 0.25),
    "infant": (0.0, 2.0), "toddler": (0.5, 4.0),
    "adolescent": (9.0, 21.0), "teenager": (12.0, 20.0), "teen": (12.0, 20.0),
    "sexagenarian": (59.0, 71.0), "septuagenarian": (69.0, 81.0),
    "octogenarian": (79.0, 91.0), "nonagenarian": (89.0, 101.0),
}
_AGE_WORD = phrase_pattern(list(AGE_WORDS))
_AGE_WORD_NEEDS = ("neonat", "newborn", "infant", "toddler", "adolescent", "teen", "genarian")

# Word right before the number that dates the age to a past event ("at 40 years old").
_ISO_DATE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})")
_POSSESSOR_LEAD = re.compile(r"\b(?:her|his|their|the\s+mother'?s?|of\s+an?|delivered)\s+$")
_PAST_LEAD = re.compile(
    r"(?:\b(?:at|since|until|till|by|from|before|after|between|when|during|as\s+a)"
    r"(?:\s+the)?(?:\s+ages?\s+of)?(?:\s+(?:age|ages))?\s*:?\s*$)"
    r"|(?:\b(?:was|were|turned)\s*$)",
    re.IGNORECASE,
)
# A threshold in a rule or guideline ("Male <60 years of age", "older than 50 years").
_THRESHOLD = re.compile(
    r"(?:[<>≤≥=]|\b(?:over|under|above|below|older\s+than|younger\s+than|greater\s+than"
    r"|less\s+than|more\s+than|at\s+least|aged?\s+over|aged?\s+under))\s*$",
    re.IGNORECASE)
_THINGS = phrase_pattern([
    "fracture", "fractures", "prosthesis", "implant", "injury", "graft", "stent", "scar",
    "tumor", "device", "repair", "surgery", "shunt", "pacemaker", "infarct", "lesion",
    "clot", "hematoma", "thrombus", "hemorrhage", "bleed", "blood", "finding", "findings",
    "change", "changes", "arthroplasty", "replacement", "hardware", "history",
    # an earlier examination ("2-year-old study", "two year old CT for comparison")
    "study", "studies", "exam", "examination", "scan", "scans", "imaging", "images", "film",
    "films", "radiograph", "radiographs", "mammogram", "CT", "MRI", "ultrasound", "report",
])


# Who an age describes: words for the patient, and words that end the noun phrase after it.
_PATIENT_WORDS = phrase_pattern([
    "patient", "pt", "man", "woman", "male", "female", "boy", "girl", "gentleman", "lady",
    "child", "infant", "neonate", "newborn", "toddler", "adolescent", "teenager", "he", "she",
    "individual", "person", "adult", "baby", "kid", "primigravida",
    "multigravida", "gravida", "veteran", "athlete", "runner",
])
_OTHER_PATIENT = re.compile(r"\b(?:another|different|wrong|other|separate)\s+patient\b",
                            re.IGNORECASE)
_WORD_AFTER = re.compile(r"[A-Za-z]+(?:['’]s)?|[^\sA-Za-z-]")
_CLAUSE_WORDS = frozenset({
    "with", "who", "whose", "which", "that", "and", "or", "but", "presenting", "presents",
    "status", "s", "p", "for", "in", "on", "at", "after", "from", "here", "is", "was", "has",
    "had", "complaining", "c", "o", "w", "admitted", "seen", "referred", "of", "to",
})
_MAX_MODIFIERS = 4  # "ten-year-old left total hip prosthesis"
# An age that is not a person's age: "Bone age: 11 years", "Gestational age: 32 weeks".
_AGE_KINDS = (r"\b(?:bone|skeletal|gestational|corrected|menstrual|post-?menstrual"
              r"|post-?conceptional|conceptional|fetal|sonographic|dental|mental|developmental"
              r"|heart|vascular|arterial|lung|brain)")
_OTHER_AGE_KIND = re.compile(_AGE_KINDS + r"\s+$", re.IGNORECASE)
_OTHER_AGE = re.compile(_AGE_KINDS + r"\s+age\s*(?:is\s+|of\s+|by\s+\w+\s*)?[:=]?\s*$",
                        re.IGNORECASE)


def infer(ctx: AnalysisContext) -> list[Inference]:
    age = _true_age(ctx)
    if age is None:
        return []
    inferences: list[Inference] = []
    for stated in stated_ages(ctx):
        if stated.accepted_by(age):
            continue
        evidence = token_evidence(ctx, (stated.start, stated.end))
        inferences.append(AgeMismatchInference(extension=evidence or None))
    return inferences


# --- the patient's true age -----------------------------------------------------------------

def _parse_date(value: str | None) -> dt.date | None:
    if not value:
        return None
    m = _ISO_DATE.match(value)
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


class _Age:
    """Exact age at the reference date, in the units a report may use."""

    def __init__(self, born: dt.date, on: dt.date) -> None:
        self.days = (on - born).days
        months = (on.year - born.year) * 12 + on.month - born.month
        if on.day < born.day:
            months -= 1
        self.months = months
        self.years = months // 12
        self.exact_years = self.days / 365.25

    def accepts(self, value: float, unit: str) -> bool:
        unit = unit.lower()
        if unit.startswith(("y", "yo")):
            return self.years - 1 <= value <= self.years + 1
        if unit.startswith("mo"):
            return abs(value - self.months) <= 1
        if unit.startswith("w"):
            return abs(value - self.days / 7) <= 2
        if unit.startswith("d"):
            return abs(value - self.days) <= 3
        return True


def _true_age(ctx: AnalysisContext) -> _Age | None:
    details = ctx.patient.details
    born = _parse_date(details.birth_date if details else None)
    on = ctx.reference_date or ctx.document_date
    if born is None or on is None or on < born:
        return None
    return _Age(born, on)


# --- ages stated in the text ----------------------------------------------------------------

@dataclass(frozen=True)
class StatedAge:
    """An age the report gives the patient: a number with its unit, or an age word."""

    start: int
    end: int
    value: float | None = None   # with unit: "72-year-old", "seventy two year old"
    unit: str = "years"
    word: str | None = None      # "newborn", "octogenarian" (AGE_WORDS)

    def accepted_by(self, age: _Age) -> bool:
        if self.word is not None:
            low, high = AGE_WORDS[self.word]
            return low <= age.exact_years <= high
        return self.value is not None and age.accepts(self.value, self.unit)

    @property
    def years(self) -> int | None:
        """Completed years, where the expression gives them. An age word gives a range:
        the newborn and infant words count as 0 (no rule threshold lies between 0 and
        their upper bound of 2), the others give none."""
        if self.word is not None:
            return 0 if AGE_WORDS[self.word][1] <= _INFANT_YEARS else None
        if self.value is None or self.value != self.value:  # NaN: a number not read
            return None
        unit = self.unit.lower()
        if unit.startswith(("y", "yo")):
            return int(self.value)
        per_year = 12 if unit.startswith("mo") else 52.18 if unit.startswith("w") else 365.25
        return int(self.value // per_year)


_INFANT_YEARS = 2.0  # the upper bound of "infant" in AGE_WORDS
_LAYER = "age_mismatch.stated"


def stated_ages(ctx: AnalysisContext) -> list[StatedAge]:
    """Every age expression that describes the patient now, in text order (once per request)."""
    found: list[StatedAge] | None = ctx.layers.get(_LAYER)
    if found is None:
        found = ctx.layers[_LAYER] = _read_stated_ages(ctx)
    return found


def stated_age_years(ctx: AnalysisContext) -> int | None:
    """The patient's age in completed years as the report first states it, or None.

    For a request without ``birthDate``: guideline and measure rules that depend on age
    use it then (``quality_measures.patient_age``)."""
    for stated in stated_ages(ctx):
        years = stated.years
        if years is not None:
            return years
    return None


def _read_stated_ages(ctx: AnalysisContext) -> list[StatedAge]:
    found: list[StatedAge] = []
    taken: list[tuple[int, int]] = []
    lower = ctx.text.lower()
    for pattern, needs in zip(_AGE_PATTERNS, _AGE_PATTERN_NEEDS):
        if not any(word in lower for word in needs):  # most reports state no age at all
            continue
        for m in pattern.finditer(ctx.text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            if not _describes_patient_now(ctx, m.start(), m.end()):
                continue
            unit = m.group("u") if "u" in m.groupdict() and m.group("u") else "years"
            found.append(StatedAge(m.start(), m.end(), value=_number(m.group("n") or m.groupdict()["n2"]),
                                   unit=unit))
    words = _AGE_WORD.finditer(ctx.text) if any(w in lower for w in _AGE_WORD_NEEDS) else ()
    for m in words:
        if any(s <= m.start() < e for s, e in taken):
            continue
        if not _word_describes_patient(ctx, m.start(), m.end()):
            continue
        found.append(StatedAge(m.start(), m.end(), word=m.group(0).lower()))
    return sorted(found, key=lambda a: a.start)


def _number(text: str) -> float:
    """The age's number, written in digits ("72") or in words ("seventy-two")."""
    if text[0].isdigit():
        return float(text)
    value = word_value(text)
    return float(value) if value is not None else float("nan")


@functools.cache
def _other_person_pattern() -> re.Pattern[str]:
    words = knowledge("quality_sex_terms.json")["otherPersonWords"]
    return phrase_pattern(words)


def _describes_patient_now(ctx: AnalysisContext, start: int, end: int) -> bool:
    text = ctx.text
    s_start, s_end = sentence_bounds(ctx, start)
    if end > s_end:
        return False  # "CT in one year / Old healed rib fractures": two sentences
    section = section_name_at(ctx, start)
    if section == "COMPARISON":
        return False  # "Two-year-old outside MRI": the comparison section dates studies
    lead = text[max(s_start, start - 40):start]
    if _PAST_LEAD.search(lead) or _THRESHOLD.search(lead) or _other_age(text, lead, start):
        return False
    if _OTHER_PATIENT.search(text, s_start, start):
        return False  # "described a different patient, a forty-four-year-old woman"
    others = _other_person_pattern()
    # "mother, 65 years old" / "son (40 yo)": a relative named just before the age.
    if others.search(text, max(s_start, start - 25), start):
        return False
    head = _head_after(text[end:s_end], others)
    if head is not None:
        return head == "patient"
    # No noun after the age ("is seventy years old", "aged 48", "two weeks old."): it
    # describes the sentence's subject, the nearest person or thing named before it.
    # Outside the sections that introduce the patient, a thing counts too ("subdural
    # hematoma, approximately two to three weeks old").
    subject = _subject_before(text[s_start:start], others,
                              things=section not in ("HISTORY", "INDICATION"))
    return subject in (None, "patient")


def _other_age(text: str, lead: str, start: int) -> bool:
    """The age of something else than the person: "Bone age: eleven years"."""
    if text[start:start + 3].lower() == "age":  # the "age 72" pattern starts at "age"
        return bool(_OTHER_AGE_KIND.search(lead))
    return bool(_OTHER_AGE.search(lead))


def _head_after(follow: str, others: re.Pattern[str]) -> str | None:
    """What the words right after an age describe: "patient" ("72-year-old man", "72-year-old
    hip fracture patient"), "other" (a relative, or a thing: "ten-year-old left hip
    prosthesis", "two-year-old outside MRI"), or None when no noun follows within a few words."""
    head = None
    for number, word in enumerate(_WORD_AFTER.findall(follow.split("\n", 1)[0][:60])):
        if number == _MAX_MODIFIERS or word.lower() in _CLAUSE_WORDS or not word[0].isalpha():
            break  # the noun phrase ended: "72-year-old with", "two weeks old."
        if _PATIENT_WORDS.fullmatch(word):
            return "patient"
        if head is None and (others.fullmatch(word) or _THINGS.fullmatch(word)):
            head = "other"
    return head


def _subject_before(lead: str, others: re.Pattern[str], things: bool) -> str | None:
    """The nearest person ("patient"), relative or other patient ("other"), or thing
    ("other", when ``things``) named before an age in its sentence; None if none is."""
    best: tuple[int, str] | None = None
    for kind, rx in (("patient", _PATIENT_WORDS), ("other", others),
                     ("other", _THINGS if things else None)):
        if rx is None:
            continue
        for m in rx.finditer(lead):
            if best is None or m.start() > best[0]:
                best = (m.start(), kind)
    return best[1] if best else None


def _word_describes_patient(ctx: AnalysisContext, start: int, end: int) -> bool:
    """An age word counts only where the report introduces the patient with it."""
    text = ctx.text
    if text[end:end + 2] in ("'s", "’s"):
        return False
    lead = text[max(0, start - 20):start].lower()
    if _POSSESSOR_LEAD.search(lead):
        return False
    section = section_name_at(ctx, start)
    if section not in (None, "HISTORY", "EXAM"):
        return False
    return _describes_patient_now(ctx, start, end)
