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
by its description), less what a later version withdrew (below).  A version that adds a
critical result is paged, with everything it alerts on.  A message's own earlier alerts
never count: ``replay --deliver all`` asks to page again.  When those earlier alerts were
delivered, the alert not sent is an ``alert_suppressed`` event of its message
(``destination``, ``route``, ``reason`` ``already_alerted``, ``results``: how many things
it would have paged, ``alerted_by``: the control ids of the messages whose alerts paged
them, ``outbox_ids``: those alerts), which ``audit show`` prints; it holds no patient
data.  When one of them is still pending, it may yet be dead-lettered: the alert is held
instead, and sent if that happens (:mod:`gateway.held_alerts`).

A result is **withdrawn** from the earlier alerts under an accession by a later message
analysed under it that does not state it (a correction that found no pneumothorax after
all: :func:`withdrawals_op`, recorded in each alert's ``pages`` JSON as ``withdrawn``).  A
version that states it again pages it again: the page before no longer stood for what the
study says, and whoever was told that it was withdrawn must hear it is back.  Any later
message under the accession counts, whatever its patient: a withdrawal wrongly taken costs
one page more, one missed costs a page.

:func:`sort_repeats` runs in the transaction that queues the alerts (the outbox hook's
operation), so two versions committed together see each other.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from .alerts import paged_keys
from .audit import Op, event_op, has_table
from .held_alerts import HELD, Cover, cover_of, pages_record
from .routing import ALERTS, PlannedMessage

__all__ = ["Repeats", "patient_digests", "sort_repeats", "withdrawals_op"]

_log = structlog.get_logger("ri_gateway.outbox")


@dataclass(frozen=True)
class Repeats:
    """What :func:`sort_repeats` made of a message's planned messages: those to ``send``,
    and the alerts to ``hold`` behind an earlier one still pending, each with the
    alerts it waits for (``gateway.held_alerts``)."""

    send: list[PlannedMessage]
    hold: list[tuple[PlannedMessage, Cover]]


def patient_digests(identities: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Digests of a patient's (identifier, assigning authority) pairs: enough to tell two
    alerts of one patient apart from two of another, without a second copy of the ids."""
    return tuple(sorted({hashlib.blake2b(f"{ident}\x1f{authority}".encode("utf-8", "replace"),
                                         digest_size=12).hexdigest()
                         for ident, authority in identities}))


def sort_repeats(conn: sqlite3.Connection, planned: Sequence[PlannedMessage], *,
                 control_id: str | None, message_id: int | None) -> Repeats:
    """``planned`` without the alerts that page nothing new for their study: each of those
    whose earlier alerts were delivered recorded as an ``alert_suppressed`` event of the
    message, the others (an earlier alert still pending) to be held."""
    if not any(p.pages for p in planned) or not has_table(conn, "outbox"):
        return Repeats(list(planned), [])  # no alert, or none ever queued: nothing paged before
    send, hold = [], []
    for p in planned:
        cover = _already_paged(conn, p, message_id)
        if cover is None:
            send.append(p)
        elif not cover.delivered:
            hold.append((p, cover))
            _log.info("outbox.alert_held", control_id=control_id, message_id=message_id,
                      destination=p.destination, outbox_ids=cover.fields()["outbox_ids"])
        else:
            fields = cover.fields()
            event_op("alert_suppressed", control_id, message_id, destination=p.destination,
                     route=p.route, reason="already_alerted", results=len(p.pages),
                     **fields)(conn)
            _log.info("outbox.alert_suppressed", control_id=control_id, message_id=message_id,
                      destination=p.destination, alerted_by=fields["alerted_by"])
    return Repeats(send, hold)


def _already_paged(conn: sqlite3.Connection, p: PlannedMessage, message_id: int | None
                   ) -> Cover | None:
    """The standing alerts that paged what ``p`` pages; None when ``p`` pages something
    they did not (or cannot be told apart)."""
    if p.purpose != ALERTS or not p.pages or not p.accession or not p.patients:
        return None
    return cover_of(conn, accession=p.accession, destination=p.destination,
                    patients=p.patients, wanted=p.pages, message_id=message_id)


# The alerts of earlier messages under an accession (outbox_accession index), any destination.
_UNDER_ACCESSION = (
    "SELECT id, pages, status FROM outbox WHERE accession = ? AND purpose = 'alerts' "
    "AND escalated_from IS NULL AND pages IS NOT NULL AND message_id < ?")


def withdrawals_op(analysed: Sequence[tuple[str, Any]], message_id: int,
                   patients: Mapping[str, Iterable[str]] | None = None) -> Op[int]:
    """Record, on the alerts of earlier messages under each accession of ``analysed``
    (``(accession, inferences)`` per analysed OBR group of message ``message_id``), the
    results that this version no longer states; returns how many alerts changed.

    ``patients``: the digests of the message's patient under each accession.  A held alert
    is withdrawn from only by a version of its own patient's study: a withdrawal drops a
    held alert (gateway.held_alerts), and another patient's report under the same
    accession number says nothing of this patient's result."""
    def op(conn: sqlite3.Connection) -> int:
        if not analysed or not has_table(conn, "outbox"):
            return 0
        changed = 0
        for accession in dict.fromkeys(accession for accession, _ in analysed):
            mine = set((patients or {}).get(accession, ()))
            rows = [(outbox_id, text) for outbox_id, text, status in
                    conn.execute(_UNDER_ACCESSION, (accession, message_id))
                    if status != HELD or set(pages_record(text).get("patients", ())) & mine]
            if not rows:
                continue  # the usual case: nothing paged under it, nothing to compare
            try:
                keys = set().union(*(paged_keys(infs) for a, infs in analysed if a == accession))
            except Exception as exc:  # noqa: BLE001 - the analysis must still be recorded
                _log.error("outbox.withdrawals_not_read", message_id=message_id,
                           error=type(exc).__name__)
                continue
            for outbox_id, text in rows:
                record = pages_record(text)
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
