"""Which patients a message is about, as cheaply as the reactor thread can tell.

A report and its correction (OBR-25 ``C``) or addendum must reach the EHR in the order the
sender sent them: the result a receiver files last is the one it shows. The analysis
pipeline therefore analyses the reports of one patient one at a time, in arrival order
(:mod:`gateway.pipeline`); this module names the patient without mapping the message.

The key of a patient is an identifier (PID-3.1 of each PID-3 repetition; PID-2, else
PID-4, when PID-3 has none), whoever sent it and whatever authority it names.  Ordering
errs on the side of one key too few, never one too many: a key shared by two patients
(the same number issued by two hospitals, or by two senders) only makes their reports
wait for each other, but two keys for one patient let a correction overtake its report.
And one patient is written in several ways: ``123`` beside ``123^^^HOSP``,
``MRN1^^^GENHOSP^MR`` beside ``MRN1^^^GENHOSP&1.2.3.4&ISO^MR``, a second repetition
added by the correction.  (Which reports are of one patient for the closed-loop reports
is stricter: ``mappings.inbound.patient_identities``.)
"""

from __future__ import annotations

from .decoding import LEADING_PADDING

__all__ = ["patient_keys"]


def patient_keys(text: str) -> tuple[str, ...]:
    """The identifiers of every PID in ``text`` (a decoded HL7 message, segments as
    sent), each once; ``()`` for a message too broken to read.  Never raises."""
    if not text.startswith("MSH"):  # padding before it, as sent ([mllp] map_before_ack "none")
        text = text[LEADING_PADDING.match(text).end():]  # type: ignore[union-attr]
    if not text.startswith("MSH") or len(text) < 8:
        return ()
    fs = text[3]
    encoding = text[4:8].split(fs, 1)[0]  # MSH-2: component, repetition, escape, subcomponent
    cs = encoding[0] if encoding else "^"
    rs = encoding[1] if len(encoding) > 1 else "~"
    if "\n" in text:  # line ends as some engines write them (LF, CRLF)
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    keys: dict[str, None] = {}
    # Only the PID segments are looked into; the report text is never split into fields.
    start = text.find("\rPID" + fs)
    while start >= 0:
        end = text.find("\r", start + 1)
        fields = text[start + 1:end if end >= 0 else len(text)].split(fs, 5)
        for number in (3, 2, 4):  # PID-3; PID-2 or PID-4 name the patient without one
            found = [rep.split(cs, 1)[0].strip()
                     for rep in (fields[number] if len(fields) > number else "").split(rs)]
            # HL7's explicit null ("") is no identifier, as the mapping reads it: PID-2
            # or PID-4 name the patient then, and a "" shared by strangers is no key.
            found = [ident for ident in found if ident and ident != '""']
            keys.update((ident, None) for ident in found)
            if any(found):
                break
        start = text.find("\rPID" + fs, start + 1)
    return tuple(keys)
