"""Which stored reports count, for the quality team's reports (:mod:`gateway.reports`).

A stored message holds one report per OBR group, as the inbound mapping reads it
(:class:`StoredReport`, through an injected ``read`` so that this module holds no HL7 field
logic).  Three things decide whether an analysed group still counts:

* **versions**: a report sent again under its accession for the same patient (a
  correction, an addendum; under any one of the accessions of a report filed under
  several orders) replaces the earlier version (:func:`latest_versions`);
* **cancellations**: an order cancelled after its report (a later message for the same
  patient whose group under that accession has result status X, HL7 table 0123 "No
  results available; Order canceled") takes the report with it (:func:`withdrawn`),
  unless a message after the cancellation shows the order standing again (reinstated: any
  other status but Y and Z, ``StoredReport.live``): the latest message decides
  (:class:`Cancelled`);
* **one report under several orders**: the same text under each OBR of a message, for one
  patient, is one report (:meth:`StoredReports.report_of`).

Two reports are of one patient when they share an identifier of one assigning authority
(``mappings.inbound.patient_identities``; ``mappings.authority.same_identity``: an
identifier sent without its authority is the sending facility's).  That match is not an
equality, so reports are filed by identifier in a :class:`ByIdentity` and their
authorities compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mappings.authority import Authority, same_authority, same_identity

from .audit import AuditLog, chunks

__all__ = [
    "ByIdentity", "Cancelled", "Patient", "ReadPatients", "ReadReports", "StoredReport",
    "StoredReports", "UNKNOWN", "add_cancellation", "analysed_under", "cancelled_orders",
    "latest_versions", "same_patient",
    "withdrawn",
]


# Every (identifier, assigning authority) of a patient: two reports sharing one are of one
# patient (mappings.inbound.patient_identities, mappings.authority.same_identity).
Patient = frozenset[tuple[str, Authority]]

T = TypeVar("T")


class ByIdentity(Generic[T]):
    """Values filed under a key and a patient identity, found again by any identity of a
    patient that names the same person (``same_identity``): the identifier is looked up,
    the authorities compared."""

    def __init__(self) -> None:
        self._filed: dict[tuple[Any, str], list[tuple[Authority, T]]] = {}

    def add(self, key: Any, identity: tuple[str, Authority], value: T) -> None:
        self._filed.setdefault((key, identity[0]), []).append((identity[1], value))

    def keys(self) -> set[Any]:
        """Every key something is filed under."""
        return {key for key, _ in self._filed}

    def find(self, key: Any, patient: Iterable[tuple[str, Authority]]) -> list[T]:
        """The values filed under ``key`` and an identity of ``patient``, in filing order
        for each identity (a value filed under two of them comes twice)."""
        return [value for identifier, authority in patient
                for filed, value in self._filed.get((key, identifier), ())
                if same_authority(filed, authority)]


@dataclass(frozen=True)
class StoredReport:
    """What the inbound mapping reads from one OBR group of a stored message."""

    patient: Patient  # the patient's (identifier, assigning authority) pairs; empty: unknown
    accession: str | None
    modality: str | None  # SNOMED CT code of the ordered exam's modality, when known
    description: str | None = None  # what the order says it is ("CT CHEST WO CONTRAST")
    performed: bool = True  # False: its result status says no exam was done (cancelled, ...)
    text_key: str | None = None  # digest of the report text (one report under several orders)
    cancelled: bool = False  # its result status is X: the order was cancelled
    live: bool = False  # its result status says the order stands (not X, Y or Z, nor none)


# read(raw, charset) -> {obr_index: StoredReport}; see the CLI for the mapping behind it.
ReadReports = Callable[[bytes, "str | None"], dict[int, StoredReport]]
# patients(raw, charset) -> {obr_index: Patient}: the same, read at a fraction of the cost.
ReadPatients = Callable[[bytes, "str | None"], dict[int, Patient]]


class Cancelled:
    """Under each (accession, patient identity): the messages cancelling that order, and
    those showing it standing (``StoredReport.live``), filed in arrival order.

    The latest decides: a cancellation followed by a message that shows the order standing
    (the RIS reinstated it: sent it again in progress, scheduled, or with a result) no
    longer counts.  Before, a reinstated order stayed cancelled, and its report withdrawn,
    for good.
    """

    def __init__(self) -> None:
        self._cancelled: ByIdentity[int] = ByIdentity()
        self._live: ByIdentity[int] = ByIdentity()

    def add(self, message_id: int, report: StoredReport) -> None:
        filed = self._cancelled if report.cancelled else self._live if report.live else None
        if filed is not None and report.accession:
            for identity in report.patient:
                filed.add(report.accession, identity, message_id)

    def keys(self) -> set[Any]:
        """The accessions with a cancellation (reinstated or not)."""
        return self._cancelled.keys()

    def find(self, accession: str, patient: Iterable[tuple[str, Authority]]) -> list[int]:
        """The messages cancelling the order of ``accession`` for ``patient`` after the
        last message that showed it standing, in arrival order."""
        patient = tuple(patient)
        standing = max(self._live.find(accession, patient), default=None)
        return [other for other in self._cancelled.find(accession, patient)
                if standing is None or other > standing]

UNKNOWN = StoredReport(frozenset(), None, None)


def latest_versions(audit: AuditLog, recommended: list[Any], reports: StoredReports,
                     until: str | None) -> list[Any]:
    """The inference rows (message id, control id, received at, OBR index, accession, ...)
    without those of a report sent again later.

    A corrected report (OBR-25 ``C``) or an addendum comes as another message with the same
    accession, and usually repeats the recommendation: only the latest analysed version of an
    accession (same patient) is tracked, or one follow-up would count two or more times; a
    report filed under several orders is replaced by a version under any of them.  A
    later version is a message received before ``until`` whose analysis recorded that
    accession (an ``analysed`` event, or inferences): a window that ended before the
    correction came keeps the version it holds, rather than losing the recommendation.
    """
    # Every accession of the recommending messages: a report filed under several orders is
    # replaced by a version sent under any one of them (an addendum under the first order).
    accessions = {row[4] for row in recommended if row[4]} | {
        r.accession for message_id in {row[0] for row in recommended}
        for r in reports.of(message_id).values() if r.accession}
    later: dict[str, list[int]] = {
        accession: [message_id for message_id, _ in found]
        for accession, found in analysed_under(audit, accessions, until).items()}

    def patient(message_id: int, accession: str) -> Patient:
        return next((r.patient for r in reports.of(message_id).values()
                     if r.accession == accession), frozenset())

    def superseded(row: Any) -> bool:
        message_id, accession = row[0], row[4]
        mine = patient(message_id, accession)
        own = {accession} | {r.accession for r in reports.of(message_id).values()
                             if r.accession and same_patient(r.patient, mine)}
        return any(other > message_id and same_patient(patient(other, each), mine)
                   for each in own if each for other in later.get(each, ()))

    return [row for row in recommended if not superseded(row)]


def analysed_under(audit: AuditLog, accessions: set[str], until: str | None
                   ) -> dict[str, list[tuple[int, int | None]]]:
    """{accession: [(message id, OBR index), ...]} of the messages received before
    ``until`` whose analysis recorded one of ``accessions`` (an ``analysed`` event, or
    inferences): the versions of a report, in no particular order."""
    before, bound = ("m.received_at < ?", [until]) if until is not None else ("1", [])
    found: dict[str, dict[tuple[int, int | None], None]] = {}
    for chunk in chunks(sorted(accessions)):
        marks = ", ".join("?" * len(chunk))
        for message_id, obr_index, accession in audit.conn.execute(
                "SELECT i.message_id, i.obr_index, i.accession FROM inferences i "
                f"JOIN messages m ON m.id = i.message_id WHERE i.accession IN ({marks}) "
                f"AND {before} UNION SELECT e.message_id, json_extract(e.fields, '$.obr_index'), "
                "json_extract(e.fields, '$.accession') "
                "FROM events e JOIN messages m ON m.id = e.message_id WHERE e.event = 'analysed' "
                f"AND json_extract(e.fields, '$.accession') IN ({marks}) AND {before}",
                [*chunk, *bound, *chunk, *bound]):
            found.setdefault(accession, {})[(message_id, obr_index)] = None
    return {accession: list(pairs) for accession, pairs in found.items()}


class StoredReports:
    """The mapped OBR groups of stored messages, read once each."""

    def __init__(self, audit: AuditLog, read: ReadReports) -> None:
        self.audit = audit
        self.read = read
        self._cache: dict[int, dict[int, StoredReport]] = {}

    def of(self, message_id: int, raw: bytes | None = None, charset: str | None = None
           ) -> dict[int, StoredReport]:
        if message_id not in self._cache:
            if raw is None:
                row = self.audit.conn.execute("SELECT raw, charset FROM messages WHERE id = ?",
                                              (message_id,)).fetchone()
                raw, charset = row if row else (b"", None)
            try:
                self._cache[message_id] = self.read(raw, charset)
            except Exception:  # noqa: BLE001 - a message that no longer maps: no patient
                self._cache[message_id] = {}
        return self._cache[message_id]

    def report_of(self, message_id: int, obr_index: int) -> Any:
        """Which report of the message an OBR group holds: the first group with the same
        patient and the same report text (one report filed under several orders)."""
        groups = self.of(message_id)
        mine = groups.get(obr_index)
        if mine is None or mine.text_key is None:
            return obr_index
        return min((index for index, other in groups.items()
                    if other.text_key == mine.text_key and other.patient == mine.patient),
                   default=obr_index)


def same_patient(first: Patient, second: Patient) -> bool:
    """Whether two reports' patients share an identity; two unknown ones are alike."""
    return first == second or any(same_identity(mine, theirs)
                                  for mine in first for theirs in second)


def add_cancellation(cancelled: Cancelled, message_id: int, report: StoredReport) -> None:
    """File ``report`` of message ``message_id`` if it cancels its order or shows it
    standing (messages are to be added in arrival order, or at least all of them)."""
    cancelled.add(message_id, report)


def withdrawn(row: Sequence[Any], reports: StoredReports, cancelled: Cancelled) -> bool:
    """Whether the order of an inference row (message id, control id, received at, OBR
    index, accession, ...) was cancelled by a later message for the same patient (HL7 table
    0123 X: "No results available; Order canceled") that no later message reinstated: its
    report went with it."""
    message_id, obr_index, accession = row[0], row[3], row[4]
    patient = reports.of(message_id).get(obr_index, UNKNOWN).patient
    return bool(accession) and any(other > message_id
                                   for other in cancelled.find(accession, patient))


def cancelled_orders(audit: AuditLog, since: str, reports: StoredReports,
                     until: str | None = None) -> Cancelled:
    """The orders cancelled by accepted reports received at or after ``since`` (and before
    ``until``: a window that ended before the cancellation keeps what it held, as it keeps
    the version it holds; see :func:`latest_versions`), and the messages that reinstated
    one after (a status without a result, such as I or S).  A group with result status X
    is not analysed, nor is one without a result, so only the messages with a group that
    left no inference are read (``reports`` is how many groups a message has); the rest,
    nearly every message, are not mapped (a report analysed after a cancellation is a
    later version, which the callers take as such)."""
    cancelled = Cancelled()
    before, bound = ("AND received_at < ? ", [until]) if until is not None else ("", [])
    for message_id, raw, charset in audit.conn.execute(
            f"SELECT id, raw, charset FROM messages m WHERE received_at >= ? {before}"
            "AND ack_code IN ('AA', 'CA') AND message_type LIKE 'ORU%' "
            "AND (status != 'analysed' OR reports IS NULL OR reports > "
            "(SELECT COUNT(DISTINCT i.obr_index) FROM inferences i WHERE i.message_id = m.id)) "
            "ORDER BY id", (since, *bound)):
        for report in reports.of(message_id, raw, charset).values():
            add_cancellation(cancelled, message_id, report)
    return cancelled
