"""Closing the loop on critical results: was each one alerted, how fast, and was it documented.

:func:`critical_results` reads the audit log: every accepted message received in a window
whose latest analysis found a ``criticalResult`` (``inferences`` table, so a replayed
message counts once), with the alerts the outbox holds for it (``outbox`` rows of purpose
``alerts``).  A report is

* ``alerted`` when at least one of its alerts was delivered (the peer answered AA/CA); the
  time to alert is from the message's arrival to that first delivery, and so includes the
  analysis (and ``[analysis] quiet_period`` while messages keep arriving) and the retries;
* ``pending`` when none was delivered yet and one is still being tried;
* ``failed`` when every alert was dead-lettered;
* ``not_alerted`` when no alert was queued for it (no alert route matched, or none alerting
  on critical results was configured then).

Only alerts that carry a critical result count (an OBX flagged ``AA``, which an alert
holds for a critical result and nothing else): an alert of a route on BI-RADS scores does
not page a critical result, and one that pages several routes' findings at once counts,
whatever route its outbox row names, whatever the configuration says today.  The unit is
the report: a message with several order groups has one line, its alerts taken
together.  A report sent again (a correction, an addendum, an interface engine's resend
under a new MSH-10) is one line with its earlier versions when ``patients`` is given: a
later message with critical results under an accession of an earlier one, for the same
patient (``gateway.reports.Patient``).  Its alerts are taken together, and the time to alert
runs from the first version's arrival; ``versions`` names the control ids, oldest first.
``communicated`` says whether the report itself documents that the result was
communicated (a ``followupCommunication`` inference): a result that is neither alerted nor
documented as communicated is the one somebody has to chase.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from mappings.outbound import carries_critical_result

from .alerts import label_key
from .audit import AuditLog, chunks, has_table, utc_now
from .report_versions import ByIdentity
from .reports import ReadPatients, Window, kind_in

__all__ = ["STATUSES", "CriticalReport", "CriticalSummary", "critical_results", "summarise"]

STATUSES = ("alerted", "pending", "failed", "not_alerted")


@dataclass(frozen=True)
class CriticalReport:
    """A message with critical results and how they were communicated."""

    message_id: int
    control_id: str | None
    received_at: str
    accessions: tuple[str, ...]
    results: tuple[str, ...]  # critical-result descriptions, each once, in report order
    communicated: bool  # the report documents a communication
    status: str  # one of STATUSES
    alerts: int  # alerts queued for it (routes alerting on critical results)
    delivered: int
    dead: int
    first_delivered_at: str | None  # UTC ISO 8601, ms
    seconds_to_alert: float | None
    versions: tuple[str | None, ...] = ()  # control ids of the messages, oldest first

    @property
    def unconfirmed(self) -> bool:
        """Neither a delivered alert nor a documented communication."""
        return self.status != "alerted" and not self.communicated

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "received_at": self.received_at,
            "control_id": self.control_id, "accessions": list(self.accessions),
            "results": list(self.results), "communicated": self.communicated,
            "alerts": self.alerts, "delivered": self.delivered, "dead_lettered": self.dead,
            "first_delivered_at": self.first_delivered_at,
            "seconds_to_alert": self.seconds_to_alert, "unconfirmed": self.unconfirmed,
            "versions": list(self.versions),
        }


@dataclass(frozen=True)
class CriticalSummary:
    reports: int
    counts: dict[str, int]
    communicated: int
    unconfirmed: int
    median_seconds: float | None
    p90_seconds: float | None
    max_seconds: float | None


def critical_results(audit: AuditLog, window: Window = Window(), *,
                     patients: ReadPatients | None = None) -> list[CriticalReport]:
    """The messages received in ``window`` with critical results, oldest first; with
    ``patients`` (how a stored message's patients are read), a message sent again under
    the accession of an earlier one for the same patient is one line with it."""
    where, params = window.sql()
    found: dict[int, dict[str, Any]] = {}
    for message_id, control_id, received_at, obr_index, accession, text in audit.conn.execute(
            "SELECT m.id, m.control_id, m.received_at, i.obr_index, i.accession, i.json "
            "FROM inferences i JOIN messages m ON m.id = i.message_id "
            f"WHERE i.kind = 'criticalResult' AND {where} ORDER BY m.received_at, m.id, i.id",
            params):
        entry = found.setdefault(message_id, {"control_id": control_id,
                                              "received_at": received_at, "orders": {},
                                              "accessions": {}, "results": {}})
        if accession:
            entry["accessions"][accession] = None
            entry["orders"][obr_index] = accession
        description = _description(text)
        if description:
            # Findings and impression usually both state it: one result, as the alert does.
            entry["results"].setdefault(label_key(description), description)
    if not found:
        return []
    communicated = {message_id for message_id, _
                    in kind_in(audit, "followupCommunication", found)}
    alerts = _alerts(audit, found)
    versions = _versions(audit, found, patients) if patients is not None else {
        message_id: [message_id] for message_id in found}
    out = []
    for message_id, later in versions.items():
        entry = found[message_id]
        for other in later[1:]:
            entry["accessions"].update(found[other]["accessions"])
            for key, description in found[other]["results"].items():
                entry["results"].setdefault(key, description)
        rows = [row for version in later for row in alerts.get(version, [])]
        delivered = sorted(at for status, at in rows if status == "delivered" and at is not None)
        dead = sum(1 for status, _ in rows if status == "dead")
        if delivered:
            status = "alerted"
        elif not rows:
            status = "not_alerted"
        elif dead == len(rows):
            status = "failed"
        else:
            status = "pending"
        first = delivered[0] if delivered else None
        received = _epoch(entry["received_at"])
        out.append(CriticalReport(
            message_id, entry["control_id"], entry["received_at"],
            tuple(entry["accessions"]), tuple(entry["results"].values()),
            any(version in communicated for version in later), status, len(rows),
            len(delivered), dead,
            utc_now(dt.datetime.fromtimestamp(first, dt.timezone.utc)) if first is not None
            else None,
            round(max(0.0, first - received), 1) if first is not None and received is not None
            else None, tuple(found[version]["control_id"] for version in later)))
    return out


def _versions(audit: AuditLog, found: dict[int, dict[str, Any]], patients: ReadPatients
              ) -> dict[int, list[int]]:
    """{first version: every version, oldest first} of the messages ``found`` (in arrival
    order): a message is a later version of the earliest one that shares one of its
    (accession, patient identifier) pairs.  Only the messages under an accession another
    one of them has too are read for their patients: most have no other version."""
    seen: dict[str, int] = {}
    for entry in found.values():
        for accession in set(entry["orders"].values()):
            seen[accession] = seen.get(accession, 0) + 1
    shared = [message_id for message_id, entry in found.items()
              if any(seen[accession] > 1 for accession in entry["orders"].values())]
    identities: dict[int, dict[int, Any]] = {}
    for chunk in chunks(shared):
        for message_id, raw, charset in audit.conn.execute(
                "SELECT id, raw, charset FROM messages "
                f"WHERE id IN ({', '.join('?' * len(chunk))})", chunk):
            try:
                identities[message_id] = patients(bytes(raw), charset)
            except Exception:  # noqa: BLE001 - a message that no longer reads is its own report
                identities[message_id] = {}
    order = {message_id: n for n, message_id in enumerate(found)}
    first_of: ByIdentity[int] = ByIdentity()  # under (accession, identity): its first version
    versions: dict[int, list[int]] = {}
    for message_id, entry in found.items():
        mine = identities.get(message_id, {})
        keys = [(accession, identity) for obr_index, accession in entry["orders"].items()
                for identity in mine.get(obr_index, ())]
        head = min((first for accession, identity in keys
                    for first in first_of.find(accession, (identity,))),
                   key=order.__getitem__, default=message_id)
        versions.setdefault(head, []).append(message_id)
        for accession, identity in keys:
            if not first_of.find(accession, (identity,)):
                first_of.add(accession, identity, head)
    return versions


def summarise(reports: list[CriticalReport]) -> CriticalSummary:
    counts = dict.fromkeys(STATUSES, 0)
    for report in reports:
        counts[report.status] += 1
    delays = sorted(r.seconds_to_alert for r in reports if r.seconds_to_alert is not None)
    return CriticalSummary(
        len(reports), counts, sum(r.communicated for r in reports),
        sum(r.unconfirmed for r in reports),
        round(statistics.median(delays), 1) if delays else None,
        _percentile(delays, 0.9), delays[-1] if delays else None)


def _percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``p`` of them at or below."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * p // 1))  # ceil
    return ordered[int(rank) - 1]


def _description(text: str) -> str | None:
    try:
        inference = json.loads(text)
    except ValueError:
        return None
    result = inference.get("result") if isinstance(inference, dict) else None
    description = result.get("description") if isinstance(result, dict) else None
    return description if isinstance(description, str) and description.strip() else None


def _alerts(audit: AuditLog, messages: Collection[int]
            ) -> dict[int, list[tuple[str, float | None]]]:
    """(status, delivered_at) of each alert queued for these messages that carries a
    critical result."""
    found: dict[int, list[tuple[str, float | None]]] = {}
    if not has_table(audit.conn, "outbox"):
        return found  # outbound never configured: nothing was ever queued
    for chunk in chunks(sorted(messages)):
        for message_id, payload, status, delivered_at in audit.conn.execute(
                "SELECT message_id, payload, status, delivered_at FROM outbox "
                f"WHERE purpose = 'alerts' AND message_id IN ({', '.join('?' * len(chunk))})",
                chunk):
            if not carries_critical_result(bytes(payload)):
                continue  # an alert on other things (scores, laterality) for this report
            found.setdefault(message_id, []).append((status, delivered_at))
    return found


def _epoch(received_at: str) -> float | None:
    try:
        when = dt.datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None

