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
by its description), less what a later version withdrew (below).  A version that adds a critical result is paged, with everything it
alerts on.  A message's own earlier alerts never count: ``replay --deliver all`` asks to
page again.  The alert not sent is an ``alert_suppressed`` event of its message
(``destination``, ``route``, ``reason`` ``already_alerted``, ``results``: how many things
it would have paged, ``alerted_by``: the control ids of the messages whose alerts paged
them), which ``audit show`` prints; it holds no patient data.

A result is **withdrawn** from the earlier alerts under an accession by a later message
analysed under it that does not state it (a correction that found no pneumothorax after
all: :func:`withdrawals_op`, recorded in each alert's ``pages`` JSON as ``withdrawn``).  A
version that states it again pages it again: the page before no longer stood for what the
study says, and whoever was told that it was withdrawn must hear it is back.  Any later
message under the accession counts, whatever its patient: a withdrawal wrongly taken costs
one page more, one missed costs a page.

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

from .alerts import paged_keys
from .audit import Op, event_op, has_table
from .routing import ALERTS, PlannedMessage

__all__ = ["patient_digests", "unsent_repeats", "withdrawals_op"]

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
        mine = wanted & (set(record.get("pages", ())) - set(record.get("withdrawn", ())))
        if mine:
            paged |= mine
            earlier.append((int(outbox_id), source))
    return earlier if paged >= wanted else None


# The alerts of earlier messages under an accession (outbox_accession index), any destination.
_UNDER_ACCESSION = (
    "SELECT id, pages FROM outbox WHERE accession = ? AND purpose = 'alerts' "
    "AND escalated_from IS NULL AND pages IS NOT NULL AND message_id < ?")


def withdrawals_op(analysed: Sequence[tuple[str, Any]], message_id: int) -> Op[int]:
    """Record, on the alerts of earlier messages under each accession of ``analysed``
    (``(accession, inferences)`` per analysed OBR group of message ``message_id``), the
    results that this version no longer states; returns how many alerts changed."""
    def op(conn: sqlite3.Connection) -> int:
        if not analysed or not has_table(conn, "outbox"):
            return 0
        changed = 0
        for accession in dict.fromkeys(accession for accession, _ in analysed):
            rows = conn.execute(_UNDER_ACCESSION, (accession, message_id)).fetchall()
            if not rows:
                continue  # the usual case: nothing paged under it, nothing to compare
            try:
                keys = set().union(*(paged_keys(infs) for a, infs in analysed if a == accession))
            except Exception as exc:  # noqa: BLE001 - the analysis must still be recorded
                _log.error("outbox.withdrawals_not_read", message_id=message_id,
                           error=type(exc).__name__)
                continue
            for outbox_id, text in rows:
                record = _pages(text)
                withdrawn = set(record.get("withdrawn", ()))
                gone = set(record.get("pages", ())) - keys - withdrawn
                if not gone:
                    continue
                record["withdrawn"] = sorted(withdrawn | gone)
                conn.execute("UPDATE outbox SET pages = ? WHERE id = ?",
                             (json.dumps(record), outbox_id))
                changed += 1
        return changed

    return op


def _pages(text: str | None) -> dict[str, Any]:
    try:
        record = json.loads(text or "")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
