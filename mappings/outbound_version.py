"""The fields a declared outbound version has withdrawn, left out of the copied segments.

Outbound messages are written to v2.5.1 and may declare a later version in MSH-12
(``[outbound] version``). The segments they copy from the inbound message (PID, PD1, PV1,
PV2, ORC, OBR) keep every field the sender filled, and v2.7 withdrew some of them (OBR-5
priority, OBR-6 requested date/time, ORC-7 quantity/timing, PID-2/4 patient ids, PID-19
SSN, PD1-4, PV1-40, ...): sent under MSH-12 2.7 or later, the message no longer
validated against the version it declared. Those fields are left empty for such a version.

Which fields are withdrawn is read from hl7apy's tables of the declared version (fields
of type ``WD`` or with no repetition allowed; 2.7.1 as 2.7, as the inbound validation
reads it), once per version. v2.5 to v2.6 withdrew none of the copied fields, so the
default version never loads hl7apy's tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from .validation import reference_version

COPIED_SEGMENTS = ("PID", "PD1", "PV1", "PV2", "ORC", "OBR")
# The first version that withdrew fields of the copied segments.
_FIRST_WITHDRAWING = (2, 7)


@lru_cache(maxsize=16)
def withdrawn_fields(version: str) -> Mapping[str, frozenset[int]]:
    """Segment name -> the numbers of its fields ``version`` has withdrawn."""
    if tuple(int(p) for p in version.split(".")[:2]) < _FIRST_WITHDRAWING:
        return {}
    from hl7apy import load_reference

    withdrawn: dict[str, frozenset[int]] = {}
    for name in COPIED_SEGMENTS:
        _kind, children = load_reference(name, "Segment", reference_version(version))[:2]
        numbers = frozenset(
            int(child[0].rsplit("_", 1)[1]) for child in children
            if child[2][1] == 0 or (child[1][0] == "leaf" and child[1][2] == "WD"))
        if numbers:
            withdrawn[name] = numbers
    return withdrawn
