"""Reports over the audit log for quality teams: quality measures and follow-up tracking.

Both read the inferences of each message's latest analysis (``inferences`` table) for the
messages received in a window, so a replayed message counts once.

**Quality measures** (:func:`quality_summary`): the ``qualityMeasure`` inferences counted
per denominator and compliance type, those of a report sent again under its accession
counted once (its latest version, as for follow-ups).  The performance rate is
met / (met + not met), as MIPS computes it (denominator exceptions and not-eligible reports
are out of it); the engine already mirrors the inverse measures (MIPS 405, 406), so higher
is better for all.

**Follow-up tracking** (:func:`followups`): closing the loop on each imaging follow-up
recommendation.  A recommendation is

* ``completed`` once a later report for the same patient (another accession, received at
  or after the recommending one, of an exam that was done: ``StoredReport.performed``) is
  of an exam of the recommended modality and body region:
  the modality of its order (the procedure table or OBR-24), or one its
  ``radiologyProcedure`` inference names (CT and CT angiography count as one modality, as
  do PET and PET/CT; a recommendation that names no modality is met by any imaging exam);
  regions (``ri_engine.body_regions``: head, neck, chest, breast, abdomen, pelvis, spine,
  the extremities) from the anatomy codes and procedure names of both sides and the
  order's text; a side whose region is not known does not constrain the match;
* otherwise ``overdue`` when its due date (``effectiveAt``, or the end of
  ``effectivePeriod``; a month or year alone means its last day) is before ``as_of``,
  ``open`` when it is not, and ``undated`` when the report gives no time.

A completed recommendation with a due date also has a ``timing``: ``on_time`` when the
exam that completed it was received within ``tolerance_days`` of the recommended time
(from the first day of ``effectivePeriod`` or of a partial ``effectiveAt`` to the due
date), ``early`` or ``late`` otherwise (an exam a week after a 12-month recommendation
completes it, but it is probably not the follow-up that was asked for).  Of several
later exams that qualify, the first that is not early completes it, else the first.

Recommendations of a consultation or a management procedure, and those quoted from a
guideline (``isGuideline``), are not tracked; one a report states twice is one follow-up,
as is one of a report filed under several orders of a message (its text under each OBR).
A report sent again under its accession (a correction, an addendum; under any one of the
accessions of a report filed under several orders) replaces the earlier version: only the
latest one is tracked.
Two reports are of one patient when they share an identifier with its assigning authority
(``mappings.inbound.patient_identities``: any PID-3 repetition, read from the stored
message): the same number issued by two hospitals is two patients.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ri_engine.body_regions import regions_of_codes, regions_of_text, regions_overlap

from .audit import AuditLog, chunks

__all__ = [
    "COMPLIANCE_TYPES", "FollowUp", "MeasureSummary", "Patient", "ReadPatients", "StoredReport",
    "Window", "followups", "kind_in", "quality_summary",
]

COMPLIANCE_TYPES = ("performanceMet", "performanceNotMet", "denominatorException",
                    "notEligible")

_SNOMED = "http://snomed.info/sct"
_ANY_IMAGING = "363680008"  # RADIOGRAPHIC IMAGING PROCEDURE: the recommendation names none
_NOT_A_FOLLOW_UP = "266750002"  # NO FOLLOW-UP ARRANGED
# Modality codes that answer for each other (ri_contract §5.8 codes).
_SAME_MODALITY = {"418272005": "77477000",  # CT angiography -> CT
                  "450436003": "82918005"}  # PET/CT -> PET


@dataclass
class MeasureSummary:
    denominator: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COMPLIANCE_TYPES, 0))

    @property
    def rate(self) -> float | None:
        """Performance met / (met + not met); None when neither occurred."""
        met, not_met = self.counts["performanceMet"], self.counts["performanceNotMet"]
        return met / (met + not_met) if met + not_met else None


@dataclass(frozen=True)
class Window:
    """Messages received in [since, until): ``received_at`` strings of the audit log."""

    since: str | None = None
    until: str | None = None

    def sql(self, column: str = "m.received_at") -> tuple[str, list[str]]:
        where, params = [], []
        if self.since is not None:
            where.append(f"{column} >= ?")
            params.append(self.since)
        if self.until is not None:
            where.append(f"{column} < ?")
            params.append(self.until)
        return (" AND ".join(where) or "1"), params


def quality_summary(audit: AuditLog, window: Window = Window(), *,
                    read: ReadReports | None = None) -> list[MeasureSummary]:
    """Per denominator (alphabetical), how many reports had each compliance type.  With
    ``read`` (see :func:`followups`), a report sent again under its accession (a
    correction, an addendum) counts once, as its latest version, as in follow-up tracking."""
    where, params = window.sql()
    rows = audit.conn.execute(
        "SELECT m.id, m.control_id, m.received_at, i.obr_index, i.accession, i.json "
        "FROM inferences i JOIN messages m ON m.id = i.message_id "
        f"WHERE i.kind = 'qualityMeasure' AND {where} ORDER BY m.id, i.id", params).fetchall()
    if read is not None and rows:
        rows = _latest_versions(audit, rows, _Reports(audit, read), window.until)
    found: dict[str, MeasureSummary] = {}
    for *_, text in rows:
        inference = json.loads(text)
        denominator = inference.get("qualityMeasureDenominator") or "(none)"
        summary = found.setdefault(denominator, MeasureSummary(denominator))
        compliance = inference.get("complianceType")
        if compliance in summary.counts:
            summary.counts[compliance] += 1
    return [found[name] for name in sorted(found)]


@dataclass(frozen=True)
class Exam:
    """A report that can complete a recommendation."""

    message_id: int
    control_id: str | None
    received_at: str
    accession: str | None
    modalities: frozenset[str]
    regions: frozenset[str] | None  # body regions (ri_engine.body_regions); None: unknown


@dataclass(frozen=True)
class FollowUp:
    """One tracked recommendation and where it stands."""

    message_id: int
    control_id: str | None
    received_at: str
    accession: str | None
    modalities: tuple[str, ...]  # display names of the recommended modalities
    due: dt.date | None
    conditional: bool
    hedging: bool
    communicated: bool  # the recommending report documents a communication
    status: str  # completed | overdue | open | undated
    completed_by: Exam | None = None
    timing: str | None = None  # completed with a due date: early | on_time | late

    def as_json(self) -> dict[str, Any]:
        done = self.completed_by
        return {
            "status": self.status, "due": self.due.isoformat() if self.due else None,
            "control_id": self.control_id, "accession": self.accession,
            "received_at": self.received_at, "modalities": list(self.modalities),
            "conditional": self.conditional, "hedging": self.hedging,
            "communicated": self.communicated,
            "completed_by": None if done is None else {
                "control_id": done.control_id, "accession": done.accession,
                "received_at": done.received_at},
            "timing": self.timing,
        }


# Every (identifier, assigning authority) of a patient: two reports sharing one are of one
# patient (mappings.inbound.patient_identities).
Patient = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class StoredReport:
    """What the inbound mapping reads from one OBR group of a stored message."""

    patient: Patient  # the patient's (identifier, assigning authority) pairs; empty: unknown
    accession: str | None
    modality: str | None  # SNOMED CT code of the ordered exam's modality, when known
    description: str | None = None  # what the order says it is ("CT CHEST WO CONTRAST")
    performed: bool = True  # False: its result status says no exam was done (cancelled, ...)


# read(raw, charset) -> {obr_index: StoredReport}; see the CLI for the mapping behind it.
ReadReports = Callable[[bytes, "str | None"], dict[int, StoredReport]]
# patients(raw, charset) -> {obr_index: Patient}: the same, read at a fraction of the cost.
ReadPatients = Callable[[bytes, "str | None"], dict[int, Patient]]


def followups(audit: AuditLog, window: Window = Window(), *, as_of: dt.date,
              read: ReadReports, patients: ReadPatients | None = None,
              tolerance_days: int = 30) -> list[FollowUp]:
    """Every tracked recommendation in reports received in ``window``, oldest first.

    ``read`` maps a stored message (injected, so that this module holds no HL7 field
    logic).  The exams that can complete a recommendation are the accepted reports
    received since the first recommendation: their modality is the ordered exam's
    (``StoredReport.modality``) and any their ``radiologyProcedure`` inferences name.  With
    ``patients``, those reports are read in full only when they are of a patient with a
    recommendation (a busy feed holds far more reports than follow-ups).
    """
    where, params = window.sql()
    recommended = audit.conn.execute(
        "SELECT m.id, m.control_id, m.received_at, i.obr_index, i.accession, i.json "
        "FROM inferences i JOIN messages m ON m.id = i.message_id "
        f"WHERE i.kind = 'followupRecommendation' AND {where} ORDER BY m.id, i.id",
        params).fetchall()
    if not recommended:
        return []
    reports = _Reports(audit, read)
    recommended = _latest_versions(audit, recommended, reports, window.until)
    if not recommended:
        return []
    communicated = kind_in(audit, "followupCommunication", {row[0] for row in recommended})
    wanted = {identity for row in recommended
              for identity in reports.of(row[0]).get(row[3], _UNKNOWN).patient}
    exams = _exams_by_patient(audit, min(row[2] for row in recommended), reports, wanted,
                              patients)
    tracked: list[FollowUp] = []
    # A report often says its recommendation twice (findings and impression), and the engine
    # gives one inference per statement: one follow-up per report, modality, region and due
    # date, firm (not conditional, not hedged) if any of its statements is. A report filed
    # under several orders of one message (CT chest, abdomen and pelvis read together, its
    # text under each OBR) is one report too: per patient, not per order group, or each
    # order counted the recommendation again (as its alert is sent once, gateway.outbox_service).
    same: dict[tuple[Any, ...], int] = {}
    for message_id, control_id, received_at, obr_index, accession, text in recommended:
        inference = json.loads(text)
        codes = _recommended_modalities(inference)
        if codes is None or inference.get("isGuideline"):
            continue
        regions = _regions(inference.get("recommendedProcedure") or {})
        patient = reports.of(message_id).get(obr_index, _UNKNOWN).patient
        # A later message under any accession of this one is a version of it, not its exam;
        # without an accession nothing names a version (the exam without one is an exam).
        own = {a for a in (accession, *(r.accession for r in reports.of(message_id).values()
                                        if r.patient & patient)) if a}
        candidates = [exam for exam in _exams_of(exams, patient)
                      if exam.received_at >= received_at and exam.message_id != message_id
                      and exam.accession not in own and _answers(codes, exam.modalities)
                      and regions_overlap(regions, exam.regions)] if patient else []
        due, opens = _due(inference), _opens(inference)
        # The first exam not early is the follow-up (a CT a week after a 6-month
        # recommendation, for something else, is not); with none, the first exam.
        done = next((exam for exam in candidates
                     if _timing(exam, opens, due, tolerance_days) != "early"),
                    candidates[0] if candidates else None)
        if done is not None:
            status = "completed"
        elif due is None:
            status = "undated"
        else:
            status = "overdue" if due < as_of else "open"
        item = FollowUp(
            message_id, control_id, received_at, accession, tuple(codes.values()), due,
            bool(inference.get("isConditional")), bool(inference.get("isHedging")),
            (message_id, obr_index) in communicated, status, done,
            _timing(done, opens, due, tolerance_days))
        key = (message_id, patient or obr_index, frozenset(codes), regions, due)
        if key in same:
            first = tracked[same[key]]
            tracked[same[key]] = replace(first, conditional=first.conditional and item.conditional,
                                         hedging=first.hedging and item.hedging,
                                         communicated=first.communicated or item.communicated)
            continue
        same[key] = len(tracked)
        tracked.append(item)
    return tracked


_UNKNOWN = StoredReport(frozenset(), None, None)


def _latest_versions(audit: AuditLog, recommended: list[Any], reports: _Reports,
                     until: str | None) -> list[Any]:
    """The recommendation rows without those of a report sent again later.

    A corrected report (OBR-25 ``C``) or an addendum comes as another message with the same
    accession, and usually repeats the recommendation: only the latest analysed version of an
    accession (same patient) is tracked, or one follow-up would count two or more times; a
    report filed under several orders is replaced by a version under any of them.  A
    later version is a message received before ``until`` whose analysis recorded that
    accession (an ``analysed`` event, or inferences): a window that ended before the
    correction came keeps the version it holds, rather than losing the recommendation.
    """
    before, bound = Window(until=until).sql()
    # Every accession of the recommending messages: a report filed under several orders is
    # replaced by a version sent under any one of them (an addendum under the first order).
    accessions = {row[4] for row in recommended if row[4]} | {
        r.accession for message_id in {row[0] for row in recommended}
        for r in reports.of(message_id).values() if r.accession}
    later: dict[str, list[int]] = {}
    for chunk in chunks(sorted(accessions)):
        marks = ", ".join("?" * len(chunk))
        for message_id, accession in audit.conn.execute(
                "SELECT i.message_id, i.accession FROM inferences i "
                f"JOIN messages m ON m.id = i.message_id WHERE i.accession IN ({marks}) "
                f"AND {before} UNION SELECT e.message_id, json_extract(e.fields, '$.accession') "
                "FROM events e JOIN messages m ON m.id = e.message_id WHERE e.event = 'analysed' "
                f"AND json_extract(e.fields, '$.accession') IN ({marks}) AND {before}",
                [*chunk, *bound, *chunk, *bound]):
            later.setdefault(accession, []).append(message_id)

    def patient(message_id: int, accession: str) -> Patient:
        return next((r.patient for r in reports.of(message_id).values()
                     if r.accession == accession), frozenset())

    def superseded(row: Any) -> bool:
        message_id, accession = row[0], row[4]
        mine = patient(message_id, accession)
        own = {accession} | {r.accession for r in reports.of(message_id).values()
                             if r.accession and _same_patient(r.patient, mine)}
        return any(other > message_id and _same_patient(patient(other, each), mine)
                   for each in own if each for other in later.get(each, ()))

    return [row for row in recommended if not superseded(row)]


class _Reports:
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


def kind_in(audit: AuditLog, kind: str, message_ids: Iterable[int]
             ) -> dict[tuple[int, int], list[str]]:
    """The inferences of ``kind`` of these messages, by (message id, OBR index)."""
    found: dict[tuple[int, int], list[str]] = {}
    for chunk in chunks(sorted(message_ids)):
        for message_id, obr_index, text in audit.conn.execute(
                "SELECT message_id, obr_index, json FROM inferences WHERE kind = ? "
                f"AND message_id IN ({', '.join('?' * len(chunk))})", [kind, *chunk]):
            found.setdefault((message_id, obr_index), []).append(text)
    return found


def _same_patient(first: Patient, second: Patient) -> bool:
    return bool(first & second) or first == second  # two unknown ones alike, as before


def _exams_of(exams: dict[tuple[str, str], list[Exam]], patient: Patient) -> list[Exam]:
    """The exams filed under any of the patient's identifiers, each once, in arrival order."""
    found = {exam: None for identity in patient for exam in exams.get(identity, ())}
    return sorted(found, key=lambda exam: (exam.received_at, exam.message_id))


def _exams_by_patient(audit: AuditLog, since: str, reports: _Reports,
                      wanted: set[tuple[str, str]], patients: ReadPatients | None
                      ) -> dict[tuple[str, str], list[Exam]]:
    """Accepted reports received at or after ``since``, with their modalities, under each
    identifier of their patient (with ``patients``, only the reports of a patient with an
    identifier in ``wanted`` are mapped)."""
    rows = audit.conn.execute(
        "SELECT id, control_id, received_at, raw, charset FROM messages "
        "WHERE received_at >= ? AND ack_code IN ('AA', 'CA') AND message_type LIKE 'ORU%' "
        "ORDER BY received_at, id", (since,)).fetchall()
    described = kind_in(audit, "radiologyProcedure", [row[0] for row in rows])
    by_patient: dict[tuple[str, str], list[Exam]] = {}
    for message_id, control_id, received_at, raw, charset in rows:
        if patients is not None and not _any_of(wanted, patients, raw, charset):
            continue
        for obr_index, report in reports.of(message_id, raw, charset).items():
            codes = {report.modality} if report.modality else set()
            regions = regions_of_text(report.description)
            for text in described.get((message_id, obr_index), []):
                procedure = json.loads(text)
                codes.update(_codes(imaging.get("modality")
                                    for imaging in procedure.get("imagingProcedures", [])))
                regions = _union(regions, _regions(procedure))
            modalities = frozenset(_canonical(code) for code in codes)
            if modalities and report.performed:
                exam = Exam(message_id, control_id, received_at, report.accession, modalities,
                            regions)
                for identity in report.patient:
                    by_patient.setdefault(identity, []).append(exam)
    return by_patient


def _any_of(wanted: set[tuple[str, str]], patients: ReadPatients, raw: bytes,
            charset: str | None) -> bool:
    try:
        return any(not wanted.isdisjoint(patient) for patient in patients(raw, charset).values())
    except Exception:  # noqa: BLE001 - a message that no longer reads is nobody's exam
        return False


def _recommended_modalities(inference: dict[str, Any]) -> dict[str, str] | None:
    """{code: display} of an imaging recommendation; None when it is not one to track."""
    procedure = inference.get("recommendedProcedure") or {}
    if procedure.get("kind") != "imagingProcedureRecommendation":
        return None
    found = {}
    for imaging in procedure.get("imagingProcedures", []):
        for coding in (imaging.get("modality") or {}).get("coding", []):
            if coding.get("system") == _SNOMED and coding.get("code"):
                found[_canonical(coding["code"])] = coding.get("display") or coding["code"]
    found.pop(_NOT_A_FOLLOW_UP, None)
    return found or None


def _regions(procedure: dict[str, Any]) -> frozenset[str] | None:
    """The body regions of an imaging procedure (recommended or performed): its anatomy
    codes and the words of its LOINC procedure codes; None when neither names one."""
    regions = regions_of_codes(_codes(imaging.get("anatomy")
                                      for imaging in procedure.get("imagingProcedures", [])))
    for concept in procedure.get("procedureCodes", []):
        for coding in concept.get("coding", []):
            regions = _union(regions, regions_of_text(coding.get("display")))
    return regions


def _union(first: frozenset[str] | None, second: frozenset[str] | None) -> frozenset[str] | None:
    return second if first is None else first if second is None else first | second


def _codes(concepts: Iterable[dict[str, Any] | None]) -> list[str]:
    return [coding["code"] for concept in concepts if concept
            for coding in concept.get("coding", [])
            if coding.get("system") == _SNOMED and coding.get("code")]


def _canonical(code: str) -> str:
    return _SAME_MODALITY.get(code, code)


def _answers(recommended: dict[str, str], performed: frozenset[str]) -> bool:
    if _ANY_IMAGING in recommended:
        return bool(performed - {_NOT_A_FOLLOW_UP})
    return bool(recommended.keys() & performed)


def _timing(done: Exam | None, opens: dt.date | None, due: dt.date | None,
            tolerance_days: int) -> str | None:
    """early | on_time | late: ``done`` against the recommended time, from ``opens`` (the
    first day it stands for: a period's start, a month's first day) to ``due``, widened
    by ``tolerance_days`` on both sides."""
    if done is None or due is None:
        return None
    try:
        received = dt.date.fromisoformat(done.received_at[:10])
    except ValueError:
        return None
    if (received - (opens or due)).days < -tolerance_days:
        return "early"
    return "late" if (received - due).days > tolerance_days else "on_time"


def _due(inference: dict[str, Any]) -> dt.date | None:
    period = inference.get("effectivePeriod") or {}
    return _last_day(inference.get("effectiveAt") or period.get("end") or period.get("start"))


def _opens(inference: dict[str, Any]) -> dt.date | None:
    """The first day of the recommended time (``_due`` is its last)."""
    period = inference.get("effectivePeriod") or {}
    return _first_day(inference.get("effectiveAt") or period.get("start") or period.get("end"))


def _first_day(value: Any) -> dt.date | None:
    """The first day a (possibly partial) FHIR date or date-time stands for."""
    if not isinstance(value, str):
        return None
    parts = value[:10].split("-")
    try:
        return dt.date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1,
                       int(parts[2]) if len(parts) > 2 else 1)
    except ValueError:
        return None


def _last_day(value: Any) -> dt.date | None:
    """The last day a (possibly partial) FHIR date or date-time stands for."""
    if not isinstance(value, str):
        return None
    parts = value[:10].split("-")
    try:
        year = int(parts[0])
        if len(parts) == 1:
            return dt.date(year, 12, 31)
        month = int(parts[1])
        if len(parts) == 2:
            return dt.date(year, month, calendar.monthrange(year, month)[1])
        return dt.date(year, month, int(parts[2]))
    except (ValueError, IndexError):
        return None
