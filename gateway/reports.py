"""Reports over the audit log for quality teams: quality measures and follow-up tracking.

Both read the inferences of each message's latest analysis (``inferences`` table) for the
messages received in a window, so a replayed message counts once; which stored reports
still count (versions, cancelled orders, one report under several orders) is
:mod:`gateway.report_versions`.

**Quality measures** (:func:`quality_summary`): the ``qualityMeasure`` inferences counted
per denominator and compliance type, those of a report sent again under its accession
counted once (its latest version, as for follow-ups), and a report filed under several
orders of a message (its text under each OBR, evaluated once per order) counted once,
and those of an order cancelled after its report not at all.
The performance rate is met / (met + not met), as MIPS computes it (denominator exceptions
and not-eligible reports are out of it); the engine already mirrors the inverse measures
(MIPS 405, 406), so higher is better for all.

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
exam that completed it was received (its local day, :mod:`gateway.local_time`) within
``tolerance_days`` of the recommended time (from the first day of ``effectivePeriod`` or
of a partial ``effectiveAt`` to the due date), ``early`` or ``late`` otherwise (an exam a
week after a 12-month recommendation completes it, but it is probably not the follow-up
that was asked for).  Of several later exams that qualify, the first that is not early completes it, else the first.

Recommendations of a consultation or a management procedure, those quoted from a
guideline (``isGuideline``), and those of an order cancelled after the report (a later
message for the same patient whose group under that accession has result status X,
``StoredReport.cancelled``) are not tracked; one a report states twice is one follow-up,
as is one of a report filed under several orders of a message (its text under each OBR).
A report sent again under its accession (a correction, an addendum; under any one of the
accessions of a report filed under several orders) replaces the earlier version: only the
latest one is tracked.
Two reports are of one patient when they share an identifier of one assigning authority
(``mappings.inbound.patient_identities``: any PID-3 repetition, read from the stored
message; ``mappings.authority``): the same number issued by two hospitals is two patients,
and so is a number sent without its authority by two facilities (MSH-4).
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
from .local_time import local_date
from .report_versions import (
    UNKNOWN, ByIdentity, Cancelled, Patient, ReadPatients, ReadReports, StoredReport,
    StoredReports, add_cancellation, cancelled_orders, latest_versions, same_patient, withdrawn,
)

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
    correction, an addendum) counts once, as its latest version, as in follow-up tracking,
    a report filed under several orders of a message (the same text under each OBR, for
    one patient) counts once: eligible if any order is, and of differing eligible
    outcomes the first of not met, met, exception; and the measures of an order cancelled
    after its report (result status X, as in follow-up tracking) do not count."""
    where, params = window.sql()
    rows = audit.conn.execute(
        "SELECT m.id, m.control_id, m.received_at, i.obr_index, i.accession, i.json "
        "FROM inferences i JOIN messages m ON m.id = i.message_id "
        f"WHERE i.kind = 'qualityMeasure' AND {where} ORDER BY m.id, i.id", params).fetchall()
    # (message, report, denominator) -> compliance: a report filed under several orders
    # (its text under each OBR) is one report, evaluated once per order, and was counted
    # once per order. Without ``read``, each order group is its own report.
    outcomes: dict[tuple[int, Any, str], str | None] = {}
    unit: Callable[[int, int], Any] = lambda message_id, obr_index: obr_index
    if read is not None and rows:
        reports = StoredReports(audit, read)
        rows = latest_versions(audit, rows, reports, window.until)
        if rows:
            cancelled = cancelled_orders(audit, min(row[2] for row in rows), reports,
                                         window.until)
            rows = [row for row in rows if not withdrawn(row, reports, cancelled)]
        unit = reports.report_of
    for message_id, _, _, obr_index, _, text in rows:
        inference = json.loads(text)
        key = (message_id, unit(message_id, obr_index),
               inference.get("qualityMeasureDenominator") or "(none)")
        compliance, known = inference.get("complianceType"), outcomes.setdefault(key, None)
        if compliance in _PRECEDENCE and (
                known is None or _PRECEDENCE[compliance] < _PRECEDENCE[known]):
            outcomes[key] = compliance
    found: dict[str, MeasureSummary] = {}
    for (_, _, denominator), compliance in outcomes.items():
        summary = found.setdefault(denominator, MeasureSummary(denominator))
        if compliance is not None:
            summary.counts[compliance] += 1
    return [found[name] for name in sorted(found)]


# One report evaluated under several orders can be eligible under one order and not under
# another (a chest CT's nodule measure under the abdomen's order): the report is eligible,
# and of two eligible outcomes the one that shows a gap is kept rather than hidden.
_PRECEDENCE = {"performanceNotMet": 0, "performanceMet": 1, "denominatorException": 2,
               "notEligible": 3}


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
    reports = StoredReports(audit, read)
    recommended = latest_versions(audit, recommended, reports, window.until)
    if not recommended:
        return []
    communicated = kind_in(audit, "followupCommunication", {row[0] for row in recommended})
    wanted: ByIdentity[bool] = ByIdentity()
    for row in recommended:
        for identity in reports.of(row[0]).get(row[3], UNKNOWN).patient:
            wanted.add(None, identity, True)
    exams, cancelled = _exams_by_patient(audit, min(row[2] for row in recommended), reports,
                                         wanted, patients)
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
        patient = reports.of(message_id).get(obr_index, UNKNOWN).patient
        if withdrawn((message_id, control_id, received_at, obr_index, accession), reports,
                      cancelled):
            # The recommendation went with its cancelled order, and stayed open, then
            # overdue, with nobody to act on it.
            continue
        # A later message under any accession of this one is a version of it, not its exam;
        # without an accession nothing names a version (the exam without one is an exam).
        own = {a for a in (accession, *(r.accession for r in reports.of(message_id).values()
                                        if same_patient(r.patient, patient))) if a}
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


def _exams_of(exams: ByIdentity[Exam], patient: Patient) -> list[Exam]:
    """The exams filed under any of the patient's identifiers, each once, in arrival order."""
    found = dict.fromkeys(exams.find(None, patient))
    return sorted(found, key=lambda exam: (exam.received_at, exam.message_id))


def _exams_by_patient(audit: AuditLog, since: str, reports: StoredReports,
                      wanted: ByIdentity[bool], patients: ReadPatients | None
                      ) -> tuple[ByIdentity[Exam], Cancelled]:
    """Accepted reports received at or after ``since``, with their modalities, under each
    identifier of their patient (with ``patients``, only the reports of a patient with an
    identity in ``wanted`` are mapped); and the messages cancelling an order, under each
    (accession, identifier) of the order."""
    rows = audit.conn.execute(
        "SELECT id, control_id, received_at, raw, charset FROM messages "
        "WHERE received_at >= ? AND ack_code IN ('AA', 'CA') AND message_type LIKE 'ORU%' "
        "ORDER BY received_at, id", (since,)).fetchall()
    described = kind_in(audit, "radiologyProcedure", [row[0] for row in rows])
    by_patient: ByIdentity[Exam] = ByIdentity()
    cancelled = Cancelled()
    for message_id, control_id, received_at, raw, charset in rows:
        if patients is not None and not _any_of(wanted, patients, raw, charset):
            continue
        for obr_index, report in reports.of(message_id, raw, charset).items():
            add_cancellation(cancelled, message_id, report)
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
                    by_patient.add(None, identity, exam)
    return by_patient, cancelled


def _any_of(wanted: ByIdentity[bool], patients: ReadPatients, raw: bytes,
            charset: str | None) -> bool:
    try:
        return any(wanted.find(None, patient) for patient in patients(raw, charset).values())
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
        # The local day of the exam, as the due date is a day of the hospital's calendar:
        # an evening exam west of Greenwich is on its UTC date's eve.
        received = local_date(done.received_at)
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
