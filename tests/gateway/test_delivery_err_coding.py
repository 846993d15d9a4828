"""Which code of a destination's ERR is its HL7 table 0357 code.

ERR-3 (v2.5+) is a CWE: identifier, text, coding system, then an alternate identifier,
text and coding system. A receiver with codes of its own sends its local code first and the
HL7 code as the alternate (or the other way round): the triplet whose coding system is table
0357 says whether a resend can succeed. ERR-1's CE before v2.5 and MSA-6 read the same way.
"""

from __future__ import annotations

import pytest

from test_delivery import (  # noqa: F401 - fixtures
    clock, db_path, first_answered, outbox,
)

FINAL = ": final, a resend gets the same answer"


def reply(code: str, *err_segments: str, version: str = "2.5.1", msa6: str = "") -> bytes:
    msa = f"MSA|{code}|M1" + (f"||||{msa6}" if msa6 else "")
    return ("\r".join([
        f"MSH|^~\\&|PAGER|HOSP|RI-GATEWAY|RIGW|20240115101501||ACK^R01^ACK|A-M1|P|{version}",
        msa, *err_segments]) + "\r").encode()


def answered(outbox, clock, payload: bytes) -> tuple[str, str]:  # noqa: F811
    first_answered(outbox, clock, payload)
    row = outbox.list()[0]
    return row.status, row.last_error


@pytest.mark.parametrize(("cwe", "status", "reason"), [
    # The local code first, the HL7 code as the alternate: the HL7 code decides.
    ("101^Local text^L^204^Unknown key^HL70357", "pending",
     "AE (ERR 204 Unknown key identifier at PID-3)"),
    ("L17^Local text^L^101^Required field missing^HL70357", "dead",
     "AE (ERR 101 Required field missing at PID-3)" + FINAL),
    ("204^Unknown key^HL70357^101^Local text^L", "pending",
     "AE (ERR 204 Unknown key identifier at PID-3)"),
    ("9901^Local text^99LOC^200^Unsupported^HL70357", "dead",
     "AE (ERR 200 Unsupported message type at PID-3)" + FINAL),
    # The spellings of table 0357's name senders use.
    ("X1^Local^L^101^Missing^HL7357", "dead", "AE (ERR 101 Required field missing at PID-3)" + FINAL),
    ("X1^Local^L^101^Missing^0357", "dead", "AE (ERR 101 Required field missing at PID-3)" + FINAL),
    ("X1^Local^L^101^Missing^hl70357", "dead",
     "AE (ERR 101 Required field missing at PID-3)" + FINAL),
    # No coding system named anywhere: the first identifier, as before.
    ("101^Required field missing", "dead", "AE (ERR 101 Required field missing at PID-3)" + FINAL),
    ("101", "dead", "AE (ERR 101 Required field missing at PID-3)" + FINAL),
    # The first identifier names no system, its alternate is a local code: still the first.
    ("101^^^L17^Local text^L", "dead", "AE (ERR 101 Required field missing at PID-3)" + FINAL),
    # A local code alone is no table 0357 code, whatever it looks like: nothing says a resend
    # cannot succeed.
    ("101^Local text^L", "pending", "AE (ERR without a table 0357 code at PID-3)"),
    ("200^Local text^99LOC", "pending", "AE (ERR without a table 0357 code at PID-3)"),
    ("101^Local text^L^L17^Other local text^99LOC", "pending",
     "AE (ERR without a table 0357 code at PID-3)"),
])
def test_the_triplet_coded_in_table_0357_decides(outbox, clock, cwe, status, reason):  # noqa: F811
    assert answered(outbox, clock, reply("AE", f"ERR||PID^1^3|{cwe}|E")) == (status, reason)


def test_a_local_code_beside_a_final_hl7_code_in_another_err_is_still_final(
        outbox, clock):  # noqa: F811
    assert answered(outbox, clock, reply(
        "AE", "ERR||PID^1^3|L17^Local^L|E", "ERR||PID^1^5|101^Missing^HL70357|E")) == (
        "dead", "AE (ERR 101 Required field missing at PID-5)" + FINAL)


@pytest.mark.parametrize(("ce", "status", "reason"), [
    ("L1&Local&L&204&Unknown key&HL70357", "pending",
     "AR (ERR 204 Unknown key identifier at PID-5)"),
    ("L1&Local&L&200&Unsupported&HL70357", "dead",
     "AR (ERR 200 Unsupported message type at PID-5)" + FINAL),
    ("101&Required field missing", "dead", "AR (ERR 101 Required field missing at PID-5)" + FINAL),
    ("101&Local text&L", "pending", "AR (ERR without a table 0357 code at PID-5)"),
])
def test_err_1_before_v2_5_reads_its_ce_the_same_way(outbox, clock, ce, status, reason):  # noqa: F811
    assert answered(outbox, clock, reply("AR", f"ERR|PID^1^5^{ce}", version="2.3")) == (
        status, reason)


@pytest.mark.parametrize(("msa6", "status", "reason"), [
    ("L1^Local^L^200^Unsupported^HL70357", "dead",
     "AR (ERR 200 Unsupported message type)" + FINAL),
    ("200^Local^L", "pending", "AR (no error code)"),
    ("200", "dead", "AR (ERR 200 Unsupported message type)" + FINAL),
])
def test_msa_6_reads_its_ce_the_same_way(outbox, clock, msa6, status, reason):  # noqa: F811
    assert answered(outbox, clock, reply("AR", version="2.3", msa6=msa6)) == (status, reason)

