"""Which patients a message is about, as cheaply as the reactor thread can tell.

A report and its correction (OBR-25 ``C``) or addendum must reach the EHR in the order the
sender sent them: the result a receiver files last is the one it shows. The analysis
pipeline therefore analyses the reports of one patient one at a time, in arrival order
(:mod:`gateway.pipeline`); this module names the patient without mapping the message.

The key of a patient is the sender (MSH-3, MSH-4) and the PID-3 field as sent (every
repetition): a correction repeats the patient identifiers of the report it corrects. Two
keys for one patient (a PID-3 changed between the report and its correction) are only
not ordered; one key for two patients only makes their reports wait for each other.
"""

from __future__ import annotations

from .decoding import LEADING_PADDING

__all__ = ["patient_keys"]


def patient_keys(text: str) -> tuple[tuple[str, str, str], ...]:
    """``(MSH-3, MSH-4, PID-3)`` of every PID with a PID-3 in ``text`` (a decoded HL7
    message, segments as sent), each once; ``()`` for a message too broken to read.
    Never raises."""
    if not text.startswith("MSH"):  # padding before it, as sent ([mllp] map_before_ack "none")
        text = text[LEADING_PADDING.match(text).end():]  # type: ignore[union-attr]
    if not text.startswith("MSH") or len(text) < 8:
        return ()
    fs = text[3]
    if "\n" in text:  # line ends as some engines write them (LF, CRLF)
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    msh = text.split("\r", 1)[0].split(fs, 5)
    sender = (msh[2].strip() if len(msh) > 2 else "", msh[3].strip() if len(msh) > 3 else "")
    keys: list[tuple[str, str, str]] = []
    # Only the PID segments are looked into; the report text is never split into fields.
    start = text.find("\rPID" + fs)
    while start >= 0:
        end = text.find("\r", start + 1)
        segment = text[start + 1:end if end >= 0 else len(text)]
        fields = segment.split(fs, 4)
        pid3 = fields[3].strip() if len(fields) > 3 else ""
        if pid3 and (*sender, pid3) not in keys:
            keys.append((*sender, pid3))
        start = text.find("\rPID" + fs, start + 1)
    return tuple(keys)
