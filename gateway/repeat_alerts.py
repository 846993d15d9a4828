"""One page per result per study: an alert is not sent again for what an earlier version of
its report already paged.

A report reaches the gateway more than once: the radiologist corrects it (OBR-25 ``C``) or
adds an addendum and the critical result stays, an interface engine resends it under a new
MSH-10 after a timeout.  Each version paged the on-call radiologist again for a result
already paged, and pagers that page for nothing new get muted.  So an alert
(``gateway.routing.PlannedMessage`` with ``pages``, ``accession`` and ``patients``) is not
queued when the alerts already queued for other messages

* to the same destination,
* under the same accession, for the same patient (an identifier with its assigning
  authority in common, compared as digests: ``mappings.inbound.patient_identities``),
* that still stand: pending, delivered, or escalated with a copy pending or delivered
  (an alert that was dead-lettered, copies and all, reached nobody and does not count),

page between them everything it pages (``gateway.alerts.paged_keys``: a critical result
by its description).  A version that adds a critical result is paged, with everything it
alerts on.  A message's own earlier alerts never count: ``replay --deliver all`` asks to
page again.  The alert not sent is an ``alert_suppressed`` event of its message
(``destination``, ``route``, ``reason`` ``already_alerted``, ``results``: how many things
it would have paged, ``alerted_by``: the control ids of the messages whose alerts paged
them), which ``audit show`` prints; it holds no patient data.

:func:`unsent_repeats` runs in the transaction that queues the alerts (the outbox hook's
operation), so two versions committed together see each other.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from .audit import event_op, has_table
from .routing import ALERTS, PlannedMessage

__all__ = ["patient_digests", "unsent_repeats"]

_log = structlog.get_logger("ri_gateway.outbox")

# The alerts of other messages under the study's accession to the destination that still
# stand (outbox_accession index).
_STANDING = (
    "SELECT o.id, o.source_control_id, o.pages FROM outbox o "
    "WHERE o.accession = ? AND o.destination = ? AND o.purpose = 'alerts' "
    "AND o.escalated_from IS NULL AND o.message_id IS NOT ? AND o.pages IS NOT NULL "
    "AND (o.status IN ('pending', 'delivered') OR EXISTS (SELECT 1 FROM outbox c "
    "WHERE c.escalated_from = o.id AND c.status IN ('pending', 'delivered'))) ORDER BY o.id")


def patient_digests(identities: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Digests of a patient's (identifier, assigning authority) pairs: enough to tell two
    alerts of one patient apart from two of another, without a second copy of the ids."""
    return tuple(sorted({hashlib.blake2b(f"{ident}\x1f{authority}".encode("utf-8", "replace"),
                                         digest_size=12).hexdigest()
                         for ident, authority in identities}))


def unsent_repeats(conn: sqlite3.Connection, planned: Sequence[PlannedMessage], *,
                   control_id: str | None, message_id: int | None) -> list[PlannedMessage]:
    """``planned`` without the alerts that page nothing new for their study, each of those
    recorded as an ``alert_suppressed`` event of the message."""
    if not any(p.pages for p in planned) or not has_table(conn, "outbox"):
        return list(planned)  # no alert, or none ever queued: nothing paged before
    kept = []
    for p in planned:
        earlier = _already_paged(conn, p, message_id)
        if earlier is None:
            kept.append(p)
            continue
        alerted_by = list(dict.fromkeys(source for _, source in earlier))
        event_op("alert_suppressed", control_id, message_id, destination=p.destination,
                 route=p.route, reason="already_alerted", results=len(p.pages),
                 alerted_by=alerted_by, outbox_ids=[outbox_id for outbox_id, _ in earlier]
                 )(conn)
        _log.info("outbox.alert_suppressed", control_id=control_id, message_id=message_id,
                  destination=p.destination, alerted_by=alerted_by)
    return kept


def _already_paged(conn: sqlite3.Connection, p: PlannedMessage, message_id: int | None
                   ) -> list[tuple[int, str | None]] | None:
    """The (outbox id, source control id) of the standing alerts that paged what ``p``
    pages; None when ``p`` pages something they did not (or cannot be told apart)."""
    if p.purpose != ALERTS or not p.pages or not p.accession or not p.patients:
        return None
    wanted, paged = set(p.pages), set()
    earlier = []
    for outbox_id, source, text in conn.execute(_STANDING,
                                                (p.accession, p.destination, message_id)):
        record = _pages(text)
        if not set(record.get("patients", ())) & set(p.patients):
            continue  # another patient's study under the same accession number
        mine = wanted & set(record.get("pages", ()))
        if mine:
            paged |= mine
            earlier.append((int(outbox_id), source))
    return earlier if paged >= wanted else None


def _pages(text: str | None) -> dict[str, Any]:
    try:
        record = json.loads(text or "")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
