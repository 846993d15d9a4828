"""An older version of a report's result is not sent after a later version's.

A report reaches the gateway more than once: the radiologist corrects it (OBR-25 ``C``) or
adds an addendum, an interface engine resends it.  Delivery to a destination is first in,
first out, so the EHR gets the versions in the order they came, and files the last one it
gets as the current result.  Two things sent an older version after a later one: ``outbox
retry --dead`` re-queueing a version dead-lettered before its correction was delivered,
and ``replay`` of an older version.  So a result message (``purpose`` ``results``) is
**superseded** when a result of a later version of its report (another message received
after it: a higher ``message_id``, under the same accession, for the same patient: an
identifier with its assigning authority in common, compared as digests,
``gateway.repeat_alerts.patient_digests``) to the same destination stands, delivered or
still pending.

* :func:`unsent_superseded` (the outbox hook, in the transaction that would queue them)
  leaves such results out and records each as a ``result_superseded`` event of its message
  (``destination``, ``route``, ``reason`` ``later_version``, ``superseded_by``: the control
  ids of the later versions, ``outbox_ids``: their results); it holds no patient data;
* :func:`later_version` tells ``outbox retry`` which dead result to keep dead (``--dead``)
  or to warn about (named by its id).

Results record their study (``accession``, and the patients' digests in ``pages``) on their
outbox row; a result queued before they did, or a later version whose row was purged
(``outbox purge --delivered``), is not recognised.  Alerts follow their own rules
(:mod:`gateway.repeat_alerts`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from .audit import event_op, has_table

if TYPE_CHECKING:  # the outbox (and its CLI) reads rows without loading the router
    from .routing import PlannedMessage

__all__ = ["LaterVersion", "later_version", "unsent_superseded"]

_log = structlog.get_logger("ri_gateway.outbox")

RESULTS = "results"  # the purpose of a result message (gateway.routing.RESULTS)

# The results of later messages under the accession to the destination that stand
# (outbox_accession index).
_LATER = (
    "SELECT id, source_control_id, status, pages FROM outbox WHERE accession = ? "
    "AND destination = ? AND purpose = 'results' AND message_id > ? "
    "AND status IN ('pending', 'delivered') ORDER BY id")

# (outbox id, source control id, status) of a later version's result.
LaterVersion = tuple[int, "str | None", str]


def unsent_superseded(conn: sqlite3.Connection, planned: Sequence[PlannedMessage], *,
                      control_id: str | None, message_id: int | None) -> list[PlannedMessage]:
    """``planned`` without the results that a later version of their report superseded at
    their destination, each of those recorded as a ``result_superseded`` event."""
    if message_id is None or not has_table(conn, "outbox"):
        return list(planned)
    kept = []
    for p in planned:
        later = (_later(conn, p.accession, p.patients, p.destination, message_id)
                 if p.purpose == RESULTS else [])
        if not later:
            kept.append(p)
            continue
        superseded_by = list(dict.fromkeys(source for _, source, _ in later))
        event_op("result_superseded", control_id, message_id, destination=p.destination,
                 route=p.route, reason="later_version", superseded_by=superseded_by,
                 outbox_ids=[outbox_id for outbox_id, _, _ in later])(conn)
        _log.info("outbox.result_superseded", control_id=control_id, message_id=message_id,
                  destination=p.destination, superseded_by=superseded_by)
    return kept


def later_version(conn: sqlite3.Connection, outbox_id: int) -> LaterVersion | None:
    """The standing result of a later version of the report whose result outbox row
    ``outbox_id`` is (the first delivered one, else the first pending), or None."""
    row = conn.execute("SELECT purpose, destination, message_id, accession, pages FROM outbox "
                       "WHERE id = ?", (outbox_id,)).fetchone()
    if row is None or row[0] != RESULTS or row[2] is None:
        return None
    _, destination, message_id, accession, pages = row
    later = _later(conn, accession, _patients(pages), destination, message_id)
    return next((found for found in later if found[2] == "delivered"),
                later[0] if later else None)


def _later(conn: sqlite3.Connection, accession: str | None, patients: Sequence[str],
           destination: str, message_id: int) -> list[LaterVersion]:
    if not accession or not patients:
        return []  # no study to tell its versions by
    return [(int(outbox_id), source, status) for outbox_id, source, status, pages
            in conn.execute(_LATER, (accession, destination, message_id))
            if set(_patients(pages)) & set(patients)]


def _patients(text: Any) -> tuple[str, ...]:
    try:
        record = json.loads(text or "")
    except ValueError:
        return ()
    patients = record.get("patients", ()) if isinstance(record, dict) else ()
    return tuple(p for p in patients if isinstance(p, str)) if isinstance(patients, list) else ()
