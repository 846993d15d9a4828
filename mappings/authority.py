"""Which assigning authority issued a patient identifier, and when two are the same one.

An identifier (PID-3, a CX) names its patient only together with the authority that
issued it (CX-4, an HD: namespace id, universal id, universal id type): hospital A's
MRN 123 and hospital B's MRN 123 are two people.  Senders write one authority in
several ways, and an interface analyst reads them as one:

* ``GENHOSP`` and ``GENHOSP&1.2.3.4&ISO``: the namespace ids match and one side gives no
  universal id: the same authority.
* ``GENHOSP&1.2.3.4&ISO`` and ``&1.2.3.4&ISO`` (IHE PIX names an authority by its OID
  alone): the universal ids match: the same authority.
* ``GENHOSP&1.2.3.4&ISO`` and ``GENHOSP&5.6.7.8&ISO``: when both give a universal id it
  decides (with its type, when both give one): two authorities.
* No authority at all (``123``): the sending facility's (MSH-4, also an HD), the
  hospital whose system sent the number; :func:`identifier_authority` gives that
  default.  An authority with neither id (no CX-4 and no MSH-4) is unknown and matches
  only another unknown one.

The match is not transitive (``GENHOSP`` matches two authorities that differ from each
other), so identities are compared with :func:`same_identity`, never used alone as keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Authority", "UNKNOWN_AUTHORITY", "authority_of", "identifier_authority",
           "same_authority", "same_identity"]


class Authority(NamedTuple):
    """An HD: namespace id, universal id, universal id type (each ``""`` when absent)."""

    namespace: str
    universal_id: str
    universal_id_type: str


UNKNOWN_AUTHORITY = Authority("", "", "")


def authority_of(hd: str, separator: str,
                 unescape: Callable[[str], str] | None = None) -> Authority:
    """The HD ``hd`` whose parts are split by ``separator`` (the subcomponent separator
    in CX-4, the component separator in MSH-4).  ``unescape``: each part is read from the
    HL7 text as sent, after the split (an escaped ``&`` is part of a name, not a separator)."""
    parts = [(unescape(part) if unescape else part).strip()
             for part in hd.split(separator)[:3]] + ["", ""]
    return Authority(parts[0], parts[1], parts[2].upper() if parts[1] else "")


def identifier_authority(assigned: Authority, sending_facility: Authority) -> Authority:
    """Who issued an identifier: its own assigning authority, else the sending facility."""
    return assigned if assigned.namespace or assigned.universal_id else sending_facility


def same_authority(first: Authority, second: Authority) -> bool:
    """Whether two HDs name one assigning authority (module docstring)."""
    if first.universal_id and second.universal_id:
        types = first.universal_id_type, second.universal_id_type
        return first.universal_id == second.universal_id and (
            not all(types) or types[0] == types[1])
    if first.namespace or second.namespace:
        return first.namespace == second.namespace
    # No namespace on either side, and at most one universal id: unknown matches unknown.
    return not (first.universal_id or second.universal_id)


def same_identity(first: tuple[str, Authority], second: tuple[str, Authority]) -> bool:
    """Whether two (identifier, authority) pairs name one patient."""
    return first[0] == second[0] and same_authority(first[1], second[1])
