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

An escalated copy of an alert (``escalated_from``) is that alert, not another one: an
alert counts as delivered when it or a copy was, and as dead-lettered when it and every
copy were.

A report's critical results can be **withdrawn** (``withdrawn``): ``corrected`` when a
later version of it (a message received before the window's end, analysed under one of
its accessions for the same patient) states none, ``cancelled`` when its order was
cancelled after it (result status X, as in follow-up tracking, with ``read``) and not
reinstated since (a later message showing the order standing: the latest decides).  A withdrawn
report is nobody's to chase (it is not ``unconfirmed``); a report that was alerted and
then withdrawn is the one whose clinician may need telling.  A later version that keeps
some of the critical results withdraws the others (``withdrawn_results``).  A window
that ended before the correction or the cancellation came keeps what it held.
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
from .report_versions import (
    UNKNOWN, ByIdentity, ReadReports, StoredReports, analysed_under, cancelled_orders,
    same_patient,
)
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
    withdrawn: str | None = None  # "corrected" | "cancelled": no critical result stands
    withdrawn_by: str | None = None  # control id of the correction or the cancellation
    withdrawn_results: tuple[str, ...] = ()  # results a later version no longer states

    @property
    def unconfirmed(self) -> bool:
        """Neither a delivered alert nor a documented communication, for a critical result
        that still stands."""
        return self.status != "alerted" and not self.communicated and self.withdrawn is None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "received_at": self.received_at,
            "control_id": self.control_id, "accessions": list(self.accessions),
            "results": list(self.results), "communicated": self.communicated,
            "alerts": self.alerts, "delivered": self.delivered, "dead_lettered": self.dead,
            "first_delivered_at": self.first_delivered_at,
            "seconds_to_alert": self.seconds_to_alert, "unconfirmed": self.unconfirmed,
            "versions": list(self.versions), "withdrawn": self.withdrawn,
            "withdrawn_by": self.withdrawn_by, "withdrawn_results": list(self.withdrawn_results),
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
    withdrawn: int = 0


def critical_results(audit: AuditLog, window: Window = Window(), *,
                     patients: ReadPatients | None = None,
                     read: ReadReports | None = None) -> list[CriticalReport]:
    """The messages received in ``window`` with critical results, oldest first; with
    ``patients`` (how a stored message's patients are read), a message sent again under
    the accession of an earlier one for the same patient is one line with it, and one
    whose later version states no critical result is withdrawn; with ``read`` (how a
    stored message is mapped), one whose order was cancelled after it is withdrawn."""
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
    withdrawals = _withdrawals(audit, found, versions, window, patients, read)
    out = []
    for message_id, later in versions.items():
        entry = found[message_id]
        latest = set(found[later[-1]]["results"])
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
            else None, tuple(found[version]["control_id"] for version in later),
            *withdrawals.get(message_id, (None, None)),
            tuple(description for key, description in entry["results"].items()
                  if message_id in withdrawals or key not in latest)))
    return out


def _withdrawals(audit: AuditLog, found: dict[int, dict[str, Any]],
                 versions: dict[int, list[int]], window: Window,
                 patients: ReadPatients | None, read: ReadReports | None
                 ) -> dict[int, tuple[str, str | None]]:
    """{first version: (how, control id of the message)} of the reports whose critical
    results were withdrawn, before the window's end, by a later version that states none
    (with ``patients``) or by the cancellation of their order (with ``read``) that no
    later message reinstated: when both, the later of the two, as the latest message of the
    study decides (a correction after a cancellation reports on an order that stands
    again; a cancellation after a correction withdraws what was left)."""
    by: dict[int, tuple[int, str]] = {}
    if patients is not None:
        latest = {head: later[-1] for head, later in versions.items()}
        accessions = {a for last in latest.values() for a in found[last]["orders"].values()}
        under = analysed_under(audit, accessions, window.until)
        read_patients = _PatientsOf(audit, patients)
        for head, last in latest.items():
            # Only a report with a later message under its accession is read again.
            for other, other_index, obr_index in sorted(
                    (other, other_index, obr_index)
                    for obr_index, accession in found[last]["orders"].items()
                    for other, other_index in under.get(accession, ())
                    # A version with critical results is one of the report's own lines.
                    if other > last and other not in found and other_index is not None):
                if same_patient(read_patients.of(other).get(other_index, frozenset()),
                                read_patients.of(last).get(obr_index, frozenset())):
                    by[head] = (other, "corrected")
                    break
    if read is not None and found:
        reports = StoredReports(audit, read)
        cancelled = cancelled_orders(audit, min(e["received_at"] for e in found.values()),
                                     reports, window.until)
        accessions = cancelled.keys()
        for head, later in versions.items():
            last = later[-1]
            orders = found[last]["orders"]
            # Read (mapped whole) only when each of its orders has a cancellation: a
            # report stands while one of them does, and nearly every report has none.
            if not orders or not accessions.issuperset(orders.values()):
                continue
            # A report filed under several orders stands while one of them does.
            firsts = [min((other for other in cancelled.find(
                               accession, reports.of(last).get(obr_index, UNKNOWN).patient)
                           if other > last), default=None)
                      for obr_index, accession in orders.items()]
            if firsts and None not in firsts:
                when = max(f for f in firsts if f is not None)
                if head not in by or when > by[head][0]:
                    by[head] = (when, "cancelled")
    if not by:
        return {}
    control_ids = dict(audit.conn.execute(
        f"SELECT id, control_id FROM messages WHERE id IN ({', '.join('?' * len(by))})",
        [other for other, _ in by.values()]).fetchall())
    return {head: (how, control_ids.get(other)) for head, (other, how) in by.items()}


class _PatientsOf:
    """The patients of stored messages by OBR group, read once each."""

    def __init__(self, audit: AuditLog, patients: ReadPatients) -> None:
        self.audit, self.patients = audit, patients
        self._cache: dict[int, dict[int, Any]] = {}

    def of(self, message_id: int) -> dict[int, Any]:
        if message_id not in self._cache:
            row = self.audit.conn.execute("SELECT raw, charset FROM messages WHERE id = ?",
                                          (message_id,)).fetchone()
            try:
                self._cache[message_id] = self.patients(bytes(row[0]), row[1]) if row else {}
            except Exception:  # noqa: BLE001 - a message that no longer reads: no patient
                self._cache[message_id] = {}
        return self._cache[message_id]


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
        # Every identity is filed, also one that found its head: the match is not
        # transitive, and a later version may match only this one (GENHOSP, then
        # GENHOSP&1.2.3&ISO, then &1.2.3&ISO).
        for accession, identity in keys:
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
        _percentile(delays, 0.9), delays[-1] if delays else None,
        sum(r.withdrawn is not None for r in reports))


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
    """(status, first delivered_at) of each alert queued for these messages that carries
    a critical result, its escalated copies taken with it: delivered when it or a copy
    was, dead when it and every copy were, pending otherwise."""
    chains: dict[int, dict[int, list[tuple[str, float | None]]]] = {}
    if not has_table(audit.conn, "outbox"):
        return {}  # outbound never configured: nothing was ever queued
    # An outbox from before escalation (read-only here: nothing adds the column) has none.
    escalation = "escalated_from" if any(
        row[1] == "escalated_from" for row in audit.conn.execute("PRAGMA table_info(outbox)")
    ) else "NULL"
    for chunk in chunks(sorted(messages)):
        for outbox_id, escalated_from, message_id, payload, status, delivered_at in (
                audit.conn.execute(
                    f"SELECT id, {escalation}, message_id, payload, status, delivered_at "
                    "FROM outbox WHERE purpose = 'alerts' "
                    f"AND message_id IN ({', '.join('?' * len(chunk))})", chunk)):
            if not carries_critical_result(bytes(payload)):
                continue  # an alert on other things (scores, laterality) for this report
            alert = escalated_from if escalated_from is not None else outbox_id
            chains.setdefault(message_id, {}).setdefault(alert, []).append(
                (status, delivered_at))
    found: dict[int, list[tuple[str, float | None]]] = {}
    for message_id, alerts in chains.items():
        for members in alerts.values():
            delivered = [at for status, at in members if status == "delivered"]
            if delivered:
                found.setdefault(message_id, []).append(
                    ("delivered", min((at for at in delivered if at is not None), default=None)))
            else:
                dead = all(status == "dead" for status, _ in members)
                found.setdefault(message_id, []).append(("dead" if dead else "pending", None))
    return found


def _epoch(received_at: str) -> float | None:
    try:
        when = dt.datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None

