"""What a destination's ACK means for delivery: delivered, worth another attempt, or final.

The acknowledgement code alone does not say whether a resend can succeed. HL7 table 0008's
AR ("application reject") covers an unsupported message type as much as a receiver that is
stopping or failing (our own listener answers AR 207 while it stops, and expects the message
again); AE covers a field the receiver will never accept as much as an error inside it. The
error code says which (HL7 table 0357, read by ``mappings.ack.parse_ack`` from ERR-3 since
v2.5, ERR-1's fourth component before, and MSA-6 in older versions), so it decides,
whatever MSA-1 is. Each of those is a CE/CWE that may carry two codes, the identifier and an
alternate identifier, each with its coding system: the one coded ``HL70357`` (or ``HL7357``,
``0357``) is the table's, whichever place it takes; with no coding system named, the first
identifier; a code of the receiver's own alone (``L``, ``99xxx``) is no table 0357 code
(``mappings.ack.table_0357_code``):

Final: dead-lettered at once (then ``escalate_to``, as any dead-lettered alert):

* 100 segment sequence error, 101 required field missing, 102 data type error, 103 table
  value not found, 104 value too long, 198 non-conformant cardinality, 199 other HL7 error:
  the content. Every resend is answered the same, and it held every later message to the
  destination (delivery per destination is in order) for all of ``max_attempts``.
* 200 unsupported message type, 201 event code, 202 processing id, 203 version id: what
  the destination accepts does not change from one attempt to the next.
* 205 duplicate key identifier: the destination holds a record with this key, and a resend
  meets the same one. Not counted as delivered: what it holds may be another message with
  the same key (a corrected result), and an alert taken for delivered that was not reaches
  no one. Dead-lettered, it is visible, escalates, and ``outbox retry`` sends it again.

Retried with backoff, up to ``max_attempts``:

* 204 unknown key identifier: the patient or order may not have reached the destination
  yet (a result racing its order).
* 206 application record locked: the record is busy now.
* 207 application internal error: the receiver's own failure (or it is stopping).
* no code, 0, a code not in the table, or a local code only: nothing says a resend cannot
  succeed.

Errors of severity W (warning) or I (information) in ERR-4 do not count. When several
errors count and one of them is final, the answer is final: the content error comes back
whatever else went wrong. Source of the codes and their meanings: HL7 Terminology, code
system ``v2-0357`` (``mappings.errors.ERROR_TEXTS``).

The reason recorded (``Refusal.error``: the outbox's last error, the audit event, the log
line) names the ACK code, each error code with the table's meaning and its location
(``PID-5``), never the destination's own text (ERR-8, MSA-3): receivers often quote the value
they refused, and the outbox, the audit events and the logs carry no message content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mappings.ack import AckError, AckInfo
from mappings.errors import ERROR_TEXTS

__all__ = ["ACCEPTED", "FINAL_CODES", "Refusal", "refusal"]

ACCEPTED = ("AA", "CA")
FINAL_CODES = frozenset({"100", "101", "102", "103", "104", "198", "199",
                         "200", "201", "202", "203", "205"})
_NOT_ERRORS = ("W", "I")  # ERR-4 severities that do not refuse the message
_SHOWN = 3  # errors named in the reason; the rest are counted
_CODE = re.compile(r"[A-Za-z0-9]{1,16}")


@dataclass(frozen=True)
class Refusal:
    """An ACK that did not accept the message: why (safe to log) and whether it is final."""

    error: str
    final: bool


def refusal(info: AckInfo) -> Refusal | None:
    """None for AA/CA; otherwise what the ACK's error codes say (module docstring)."""
    if info.code in ACCEPTED:
        return None
    counted = [e for e in info.errors if e.severity not in _NOT_ERRORS]
    final = [e for e in counted if e.code in FINAL_CODES]
    shown = final or counted
    if shown:
        detail = "; ".join(_describe(e) for e in shown[:_SHOWN])
        if len(shown) > _SHOWN:
            detail += f"; {len(shown) - _SHOWN} more"
    else:
        detail = "only warnings" if info.errors else "no error code"
    if final:
        return Refusal(f"{info.code} ({detail}): final, a resend gets the same answer", True)
    return Refusal(f"{info.code} ({detail})", False)


def _describe(error: AckError) -> str:
    if not error.code:
        # Only a code of the receiver's own (its coding system L or 99xxx): what it means
        # is the receiver's, and it is not repeated either.
        text = "ERR without a table 0357 code"
    elif not _CODE.fullmatch(error.code):
        # Not a code at all (a receiver that wrote text there): it could be anything, a
        # quoted value included, so it is not repeated.
        text = "ERR with an unreadable code"
    else:
        text = f"ERR {error.code}"
        if error.code in ERROR_TEXTS:
            text += f" {ERROR_TEXTS[error.code]}"
    # The location is safe: parse_ack keeps only a segment id and numbers.
    return text + (f" at {error.location}" if error.location else "")
