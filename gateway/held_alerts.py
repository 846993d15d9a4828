"""What a study's earlier alerts page, and the alerts held behind one still pending.

An alert that pages nothing new for its study is not sent (:mod:`gateway.repeat_alerts`).
When the earlier alerts that page it were delivered, that is the end of it: the
``alert_suppressed`` event.  But when one of them is still **pending** (a pager that is
down, retried with backoff), it may yet be dead-lettered, and then the result reached
nobody: dropping the later version lost its page for good.  So such an alert is queued
**held** (outbox status ``held``, audit event ``alert_held``): never sent while held,
and settled each time an alert of its study at its destination (or an escalated copy of
one) is delivered or dead-lettered (:func:`settle_in`, in that transaction):

* the earlier alerts that stand now page it, and were delivered: it is suppressed as it
  would have been at once (its row deleted, ``alert_suppressed`` as usual);
* they no longer page it (dead-lettered, copies and all): it is **released**, ``pending``
  like any alert (``alert_released``), delivered, retried, dead-lettered and escalated as
  its route says; the time it was held counts towards ``escalate_after``, as the result
  has waited that long;
* what it pages was withdrawn meanwhile by a later version of the study (a correction
  that no longer states it): it is suppressed, ``reason`` ``withdrawn``;
* otherwise (another earlier alert still pending) it stays held.

Held alerts are settled oldest first, and one released stands for the next: of two
versions held behind one dead-lettered alert, the first goes out and the second waits
for it.  An alert stands while it is pending or delivered, or has an escalated copy
pending or delivered; a held one does not stand.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from .audit import event_op, utc_now

__all__ = ["HELD", "Cover", "cover_of", "pages_record", "settle_in"]

HELD = "held"

_log = structlog.get_logger("ri_gateway.outbox")

# The alerts of other messages under the study's accession to the destination that still
# stand (outbox_accession index), and whether each reached its destination (or a copy did).
_STANDING = (
    "SELECT o.id, o.source_control_id, o.pages, (o.status = 'delivered' OR EXISTS "
    "(SELECT 1 FROM outbox c WHERE c.escalated_from = o.id AND c.status = 'delivered')) "
    "FROM outbox o "
    "WHERE o.accession = ? AND o.destination = ? AND o.purpose = 'alerts' "
    "AND o.escalated_from IS NULL AND o.message_id IS NOT ? AND o.pages IS NOT NULL "
    "AND (o.status IN ('pending', 'delivered') OR EXISTS (SELECT 1 FROM outbox c "
    "WHERE c.escalated_from = o.id AND c.status IN ('pending', 'delivered'))) ORDER BY o.id")


@dataclass(frozen=True)
class Cover:
    """The earlier alerts of a study that page everything an alert would page:
    ``earlier`` (outbox id, source control id), and whether they were ``delivered``
    (else at least one of them is still pending, and the alert is held)."""

    earlier: tuple[tuple[int, str | None], ...]
    delivered: bool

    def fields(self) -> dict[str, Any]:
        """The audit fields naming them (``alerted_by``, ``outbox_ids``)."""
        return {"alerted_by": list(dict.fromkeys(source for _, source in self.earlier)),
                "outbox_ids": [outbox_id for outbox_id, _ in self.earlier]}


def pages_record(text: str | None) -> dict[str, Any]:
    """An alert's ``pages`` JSON (what it pages, its patient digests, what was withdrawn)."""
    try:
        record = json.loads(text or "")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def cover_of(conn: sqlite3.Connection, *, accession: str, destination: str,
             patients: Iterable[str], wanted: Iterable[str], message_id: int | None
             ) -> Cover | None:
    """The standing alerts of other messages of the study (``accession`` and a patient
    digest in common) at ``destination`` that page everything ``wanted``; None when
    something is paged by none of them (or nothing is wanted)."""
    wanted, patients = set(wanted), set(patients)
    if not wanted:
        return None
    paged: set[str] = set()
    reached: set[str] = set()
    earlier, delivered = [], []
    for outbox_id, source, text, was_delivered in conn.execute(
            _STANDING, (accession, destination, message_id)):
        record = pages_record(text)
        if not set(record.get("patients", ())) & patients:
            continue  # another patient's study under the same accession number
        mine = wanted & (set(record.get("pages", ())) - set(record.get("withdrawn", ())))
        if not mine:
            continue
        paged |= mine
        earlier.append((int(outbox_id), source))
        if was_delivered:
            reached |= mine
            delivered.append((int(outbox_id), source))
    if not paged >= wanted:
        return None
    if reached >= wanted:
        return Cover(tuple(delivered), True)  # those that paged it: the pending ones need not
    return Cover(tuple(earlier), False)


def settle_in(conn: sqlite3.Connection, outbox_id: int, now: float) -> set[str]:
    """Settle the alerts held behind alert ``outbox_id`` (or the alert it escalates), which
    was just delivered or dead-lettered, in ``conn``'s open transaction; returns the
    destinations of the alerts released."""
    row = conn.execute(
        "SELECT a.id, a.accession, a.destination FROM outbox o JOIN outbox a "
        "ON a.id = COALESCE(o.escalated_from, o.id) WHERE o.id = ? AND a.purpose = 'alerts' "
        "AND a.accession IS NOT NULL", (outbox_id,)).fetchone()
    if row is None:
        return set()  # not an alert of a study: nothing can be held behind it
    alert, accession, destination = row
    released: set[str] = set()
    for held_id, route, control_id, source, message_id, text in conn.execute(
            "SELECT id, route, control_id, source_control_id, message_id, pages FROM outbox "
            "WHERE accession = ? AND destination = ? AND status = ? ORDER BY id",
            (accession, destination, HELD)).fetchall():
        record = pages_record(text)
        pages = record.get("pages", ())
        wanted = set(pages) - set(record.get("withdrawn", ()))
        fields = {"destination": destination, "route": route}
        if not wanted:
            # A later version no longer states it: paging it now would page what the study
            # no longer says.
            _suppress(conn, held_id, source, message_id, fields, "withdrawn", len(pages),
                      {"alerted_by": [], "outbox_ids": []})
            continue
        cover = cover_of(conn, accession=accession, destination=destination,
                         patients=record.get("patients", ()), wanted=wanted,
                         message_id=message_id)
        if cover is None:
            conn.execute("UPDATE outbox SET status = 'pending', next_attempt_at = ?, "
                         "updated_at = ? WHERE id = ?", (now, now, held_id))
            event_op("alert_released", source, message_id, utc_now(), **fields,
                     purpose="alerts", outbound_control_id=control_id, outbox_id=held_id,
                     reason="earlier_alert_dead_lettered", dead_lettered=[alert])(conn)
            _log.warning("outbox.alert_released", control_id=source, message_id=message_id,
                         destination=destination, outbox_id=held_id)
            released.add(destination)
        elif cover.delivered:
            _suppress(conn, held_id, source, message_id, fields, "already_alerted", len(pages),
                      cover.fields())
    return released


def _suppress(conn: sqlite3.Connection, held_id: int, source: str | None,
              message_id: int | None, fields: dict[str, Any], reason: str, results: int,
              earlier: dict[str, Any]) -> None:
    """A held alert not sent after all: gone from the outbox, as one suppressed at once."""
    conn.execute("DELETE FROM outbox WHERE id = ?", (held_id,))
    event_op("alert_suppressed", source, message_id, utc_now(), **fields, reason=reason,
             results=results, **earlier)(conn)
    _log.info("outbox.alert_suppressed", control_id=source, message_id=message_id,
              destination=fields["destination"], alerted_by=earlier["alerted_by"])
