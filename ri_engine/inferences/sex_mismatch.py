"""sexMismatch: the report implies a sex other than ``details.sex``.

Three kinds of mention imply a sex (terms in ``knowledge/quality_sex_terms.json``):

- explicit words for the patient: man, woman, male, female, boy, girl, gentleman, lady,
  and "M"/"F" written right after an age ("43 yo M", "45M with chest pain");
- pronouns he/his/him, she/her/hers, only where they refer to the patient: the sentence
  names the patient first, or the pronoun sits in the history/indication section, and no
  other person (a doctor, a relative) is named before it in the sentence. Pronouns
  repeat through a report, so all of them together yield at most one inference;
- sex-specific anatomy (prostate, testes, uterus, ovaries, cervix, ...), conditions
  (pregnancy, ectopic pregnancy, testicular torsion, gynecomastia, ...) and the removal of
  a sex-specific organ ("status post prostatectomy", "hysterectomy"): the organ is gone,
  but it was there.

A mention does not count when its clause denies it ("no gestational sac"), when it is
documented as absent or removed ("status post hysterectomy, uterus absent": the uterus
does not count, the hysterectomy does), or when it
belongs to someone else ("her husband", "male fetus", "family history of prostate
cancer", "status post prostatectomy in her brother"). Procedure words joined into one
operation ("TAH-BSO", "hysterectomy with bilateral salpingo-oophorectomy") are one
mention. A term in its other sense is none ("status post TAH placement": a total artificial
heart; "gestational age by LMP": the dating of a pregnancy, the mother's in a newborn's
report; ``otherSenses``). Each remaining mention whose sex differs from ``details.sex`` gives one
inference (RI: one per triggering mention) with the SNOMED sex indication; evidence
tokens sit on both the indication and the inference. Nothing is produced when the
patient's sex is missing or ``unspecified``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..context import AnalysisContext
from ..models import Inference, SexMismatchInference
from .age_mismatch import COMPACT_AGE_SEX, SLASH_AGE_SEX
from .quality_text import (
    coded, is_negated, knowledge, occurs, phrase_pattern, section_name_at, sentence_bounds,
    token_evidence,
)

_NEXT_WORD = re.compile(r"[\s,-]*([A-Za-z]+)")
_PATIENT = re.compile(r"\b(?:patient|pt)\b", re.IGNORECASE)
# "prostatectomy in her brother", "ovarian cancer of his mother": the person a mention
# belongs to named right after it or its noun ("cancer"); a possessive and one adjective
# may come before the person.
_OWNER_AFTER = re.compile(
    r"(?:[ \t]+(?!(?:in|of)\b)[A-Za-z]+){0,2}?[ \t]+(?:in|of)[ \t]+"
    r"(?:(?:his|her|their|the|a|an)[ \t]+)?(?:(?:patient|pt)['’]s[ \t]+)?"
    r"(?:[A-Za-z]+[ \t]+)?([A-Za-z]+)(?![A-Za-z'])", re.IGNORECASE)
# "TAH-BSO", "hysterectomy with bilateral salpingo-oophorectomy": one operation named by
# two procedure words is one mention (RI: one inference per triggering mention).
_ONE_OPERATION = re.compile(
    r"[ \t]*(?:[-/+&,]|and|with|plus)[ \t]*(?:(?:bilateral|left|right|unilateral|total|"
    r"partial|laparoscopic)[ \t]+)*", re.IGNORECASE)
_AGE_LETTER = re.compile(
    r"\b\d{1,3}\s*(?:yo|y/o|y\.o\.|-?\s*years?\s*-?\s*old|-?\s*yr\s*-?\s*old)\s+(?P<s>[MF])\b")


@dataclass(frozen=True)
class _Mention:
    sex: str
    start: int
    end: int
    pronoun: bool = False
    procedure: bool = False


@dataclass(frozen=True)
class _Terms:
    words: dict[str, re.Pattern[str]]
    pronouns: dict[str, re.Pattern[str]]
    specific: tuple[tuple[str, re.Pattern[str]], ...]
    procedures: tuple[tuple[str, re.Pattern[str]], ...]
    surgery: re.Pattern[str]
    others: re.Pattern[str]
    indication: dict[str, dict[str, str]]
    # matched text (lower case) -> (report, after, before): its other sense (otherSenses)
    other_senses: dict[str, tuple[re.Pattern[str] | None, re.Pattern[str] | None,
                                  re.Pattern[str] | None]]


@functools.cache
def _terms() -> _Terms:
    data = knowledge("quality_sex_terms.json")
    words = {sex: phrase_pattern([w for w in ws if len(w) > 1])
             for sex, ws in data["explicitWords"].items()}
    pronouns = {sex: phrase_pattern(ws) for sex, ws in data["pronouns"].items()}
    specific = tuple((entry["sex"], phrase_pattern(entry["patterns"]))
                     for entry in data["anatomy"] + data["conditions"])
    procedures = tuple((entry["sex"], phrase_pattern(entry["patterns"])) for entry in data["procedures"])
    other_senses = {
        text: (phrase_pattern(sense["report"]) if "report" in sense else None,
               re.compile(r"[ \t]+(?:%s)\b" % "|".join(map(re.escape, sense["after"])),
                          re.IGNORECASE) if "after" in sense else None,
               re.compile(r"\b(?:%s)[ \t]+$" % "|".join(map(re.escape, sense["before"])),
                          re.IGNORECASE) if "before" in sense else None)
        for text, sense in data["otherSenses"].items() if text != "note"}
    return _Terms(words, pronouns, specific, procedures, phrase_pattern(data["surgeryCues"]),
                  phrase_pattern(data["otherPersonWords"]), data["sexIndication"], other_senses)


def _other_sense(text: str, terms: _Terms, start: int, end: int) -> bool:
    """The match is a term in its other sense: "TAH" of a total artificial heart, "by LMP"
    dating a pregnancy (``otherSenses``)."""
    sense = terms.other_senses.get(" ".join(text[start:end].lower().split()))
    if sense is None:
        return False
    report, after, before = sense
    return bool((report is not None and report.search(text))
                or (after is not None and after.match(text, end))
                or (before is not None and before.search(text, max(0, start - 20), start)))


def infer(ctx: AnalysisContext) -> list[Inference]:
    details = ctx.patient.details
    sex = details.sex if details else None
    if sex not in ("male", "female"):
        return []
    terms = _terms()
    inferences: list[Inference] = []
    pronoun_seen = False
    for mention in _mentions(ctx, terms):
        if mention.sex == sex:
            continue
        if mention.pronoun:
            if pronoun_seen:
                continue
            pronoun_seen = True
        span = (mention.start, mention.end)
        inferences.append(SexMismatchInference(
            sex_indication=coded(terms.indication[mention.sex], ctx, (span,)),
            extension=token_evidence(ctx, span) or None,
        ))
    return inferences


def _mentions(ctx: AnalysisContext, terms: _Terms) -> list[_Mention]:
    text = ctx.text
    found: dict[tuple[int, int], _Mention] = {}
    generic: dict[tuple[int, int], bool] = {}  # per paragraph
    for sex, pattern in terms.words.items():
        for m in pattern.finditer(text):
            if _generic_rule(text, terms, m.start(), generic):
                continue
            if not _other_person(ctx, terms, m.start(), m.end()):
                found[(m.start(), m.end())] = _Mention(sex, m.start(), m.end())
    for pattern in (_AGE_LETTER, COMPACT_AGE_SEX, SLASH_AGE_SEX):
        for m in pattern.finditer(text):
            group = "s" if m.group("s") else "s2"
            sex = "male" if m.group(group) == "M" else "female"
            found[m.span(group)] = _Mention(sex, *m.span(group))
    # The mentions by start offset. Mentions are short phrases, so only those starting at most
    # the longest one's length before a match can hold it, and only those starting inside it
    # can be held by it: looking at those alone, rather than at every mention for each match,
    # keeps a report that names thousands linear.
    ends_at: dict[int, list[int]] = {}
    for s, e in found:
        ends_at.setdefault(s, []).append(e)
    longest = max((e - s for s, e in found), default=0)

    def starting(lo: int, hi: int) -> list[tuple[int, int]]:
        return [(s, e) for s in range(max(lo, 0), hi + 1) for e in ends_at.get(s, ())]

    surgery: dict[tuple[int, int], bool] = {}  # per sentence
    specific = [(sex, pattern, False) for sex, pattern in terms.specific]
    specific += [(sex, pattern, True) for sex, pattern in terms.procedures]
    for sex, pattern, procedure in specific:
        for m in pattern.finditer(text):
            key = (m.start(), m.end())
            # "ectopic pregnancy" and "pregnancy" overlap: keep the longer phrase only.
            if any(s <= m.start() and m.end() <= e and (s, e) != key
                   for s, e in starting(m.start() - longest, m.start())):
                continue
            if is_negated(ctx, m.start(), m.end()) or (
                    not procedure and _removed(ctx, terms, m.start(), surgery)):
                continue
            if _other_sense(text, terms, m.start(), m.end()):
                continue
            if _other_person(ctx, terms, m.start(), m.end()):
                continue
            for s, e in starting(m.start(), m.end()):
                if e <= m.end():
                    del found[(s, e)]
                    ends_at[s].remove(e)
            found[key] = _Mention(sex, m.start(), m.end(), procedure=procedure)
            ends_at.setdefault(key[0], []).append(key[1])
            longest = max(longest, key[1] - key[0])
    for sex, pattern in terms.pronouns.items():
        for m in pattern.finditer(text):
            if _pronoun_is_patient(ctx, terms, m.start()):
                found[(m.start(), m.end())] = _Mention(sex, m.start(), m.end(), pronoun=True)
    return _one_per_operation(text, sorted(found.values(), key=lambda x: x.start))


def _one_per_operation(text: str, mentions: list[_Mention]) -> list[_Mention]:
    """Procedure words of one sex joined only by "-", "/", "with", "and" ("TAH-BSO") name
    one operation: they become one mention spanning them."""
    out: list[_Mention] = []
    for mention in mentions:
        last = out[-1] if out else None
        if (last is not None and mention.procedure and last.procedure and last.sex == mention.sex
                and last.end <= mention.start
                and _ONE_OPERATION.fullmatch(text, last.end, mention.start)):
            out[-1] = _Mention(last.sex, last.start, mention.end, procedure=True)
            continue
        out.append(mention)
    return out


def _generic_rule(text: str, terms: _Terms, offset: int,
                  paragraphs: dict[tuple[int, int], bool]) -> bool:
    """Both sexes named in one paragraph: a guideline or table ("Female >5cm, Male <60
    years"), not a description of the patient."""
    start = max(text.rfind("\n\n", 0, offset), text.rfind("\r\n\r\n", 0, offset), 0)
    ends = [i for i in (text.find("\n\n", offset), text.find("\r\n\r\n", offset)) if i >= 0]
    end = min(ends) if ends else len(text)
    if (start, end) not in paragraphs:  # once per paragraph, however many mentions it holds
        paragraphs[(start, end)] = all(p.search(text, start, end) for p in terms.words.values())
    return paragraphs[(start, end)]


def _other_person(ctx: AnalysisContext, terms: _Terms, start: int, end: int) -> bool:
    """The mention belongs to a relative, a fetus or a clinician, not the patient."""
    s_start, s_end = sentence_bounds(ctx, start)
    text = ctx.text
    after = _NEXT_WORD.match(text, end, s_end)  # not a slice: the sentence can be long
    if after and terms.others.fullmatch(after.group(1)):
        return True
    owner = _OWNER_AFTER.match(text, end, s_end)
    if owner and terms.others.fullmatch(owner.group(1)):
        return True
    before = text[max(s_start, start - 30):start]
    return bool(terms.others.search(before))


def _removed(ctx: AnalysisContext, terms: _Terms, start: int,
             surgery: dict[tuple[int, int], bool]) -> bool:
    """The organ is named in the sentence of its removal."""
    bounds = sentence_bounds(ctx, start)
    if bounds not in surgery:  # once per sentence, however many mentions it holds
        surgery[bounds] = bool(terms.surgery.search(ctx.text, *bounds))
    return surgery[bounds]


def _pronoun_is_patient(ctx: AnalysisContext, terms: _Terms, start: int) -> bool:
    s_start, _ = sentence_bounds(ctx, start)
    if occurs(terms.others, ctx.text, s_start, start):
        return False
    if occurs(_PATIENT, ctx.text, s_start, start):
        return True
    return section_name_at(ctx, start) == "HISTORY"
