"""How urgent the sender says an order is: STAT, ASAP or routine.

HL7 v2 has carried the priority of an order in several places over its versions; a message
may use any of them, and senders fill in whichever their version knows:

* ``TQ1-9`` Priority (v2.5 and later), a CWE whose first component is the code;
* ``OBR-27`` and ``ORC-7`` Quantity/Timing (TQ, before v2.5, kept for compatibility),
  component 6;
* ``OBR-5`` Priority (withdrawn from v2.5 on, still sent by older systems).

Codes of HL7 table 0027: ``S`` stat, ``A`` ASAP, ``R`` routine, ``P`` preop, ``C`` callback,
``T`` timing critical, ``PRN``.  Only STAT and ASAP change anything here: they are the
reports a radiologist's critical result is most likely to be in (emergency and inpatient
work) and the ones to analyse first when analysis has a backlog.
"""

from __future__ import annotations

from .decoding import LEADING_PADDING

__all__ = ["ASAP", "OTHER", "STAT", "urgency"]

STAT, ASAP, OTHER = 0, 1, 2
_RANKS = {"S": STAT, "STAT": STAT, "A": ASAP, "ASAP": ASAP}
_HEADS = ("TQ1", "OBR", "ORC")


def urgency(text: str) -> int:
    """The most urgent priority of any order in ``text`` (a decoded HL7 message):
    :data:`STAT`, :data:`ASAP`, or :data:`OTHER` (routine, another code, or none given).
    Never raises: a message too broken to read is :data:`OTHER`."""
    if not text.startswith("MSH"):  # padding before it, as sent ([mllp] map_before_ack "none")
        text = text[LEADING_PADDING.match(text).end():]  # type: ignore[union-attr]
    if not text.startswith("MSH") or len(text) < 8:
        return OTHER
    fs, component, repetition = text[3], text[4], text[5]
    best = OTHER
    if "\n" in text:  # line ends as some engines write them (LF, CRLF)
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    # This runs for every accepted message, on the reactor thread: the segments are only
    # split, and only the order segments looked into.
    for segment in text.split("\r"):
        if not segment.startswith(_HEADS):
            segment = segment.lstrip(" \t")  # an indented segment is one (decoding)
            if not segment.startswith(_HEADS):
                continue
        tag = segment[:3]
        if segment[3:4] != fs:
            continue
        if tag == "TQ1":  # TQ1-9 repeats
            values = [_first(rep, component) for rep in _field(segment, fs, 9).split(repetition)]
        elif tag == "OBR":
            values = [_first(_field(segment, fs, 5), component)]
            values += [_component(rep, component, 6)
                       for rep in _field(segment, fs, 27).split(repetition)]
        else:
            values = [_component(rep, component, 6)
                      for rep in _field(segment, fs, 7).split(repetition)]
        for value in values:
            best = min(best, _RANKS.get(value.strip().upper(), OTHER))
        if best == STAT:
            break
    return best


def _field(segment: str, fs: str, number: int) -> str:
    fields = segment.split(fs, number + 1)
    return fields[number] if len(fields) > number else ""


def _first(value: str, component: str) -> str:
    return value.split(component, 1)[0]


def _component(value: str, component: str, number: int) -> str:
    parts = value.split(component)
    return parts[number - 1] if len(parts) >= number else ""
