"""One OBX group per RI inference: the coded main OBX and the OBXs that qualify it.

Each inference becomes a group of OBX segments sharing one OBX-4 sub-id. The first OBX of
the group is the inference itself (OBX-3 = the identifier configured for its kind); the
others qualify it (anatomy, laterality, sizes, score value, evidence, source reference).
Values are already escaped here; ``outbound.py`` numbers the segments and adds OBX-11.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ri_engine.models import (
    AgeMismatchInference, CodeableConcept, CompleteOrderDiscrepancyInference,
    CriticalResultInference, FindingInference, FollowupCommunicationInference,
    FollowupRecommendationInference, GenericProcedureRecommendation, GuidanceInference,
    ImagingProcedureRecommendation, Inference, LateralityDiscrepancyInference,
    LimitedOrderDiscrepancyInference, Observation, QualityMeasureInference,
    RadiologyProcedureInference, ScoringAndAssessmentInference, SexMismatchInference,
)

from .outbound_fields import (
    REPETITION_SEP, components, cwe, cwe_from_codings, escape, hl7_from_iso, local_cwe, number,
    units,
)

# Observation component codes (RI finding components, ri_contract §5.6).
SUBJECT_OF_INFORMATION = "131195008"
ANATOMY = "722871000000108"
LATERALITY = "45651917"
SIZE = "246115007"
BODY_STRUCTURE = "123037004"
# Interpretations that mean "not there / normal": the finding is written with flag N.
NEGATING_INTERPRETATIONS = frozenset({
    "260413007",  # NONE
    "260385009",  # NEGATIVE
    "2667000",    # ABSENT
    "17621005",   # NORMAL
    "723506003",  # RESOLVED
    "441889009",  # DENIED
    "385434005",  # IMPROBABLE DIAGNOSIS
})

CRITICAL, ABNORMAL, NORMAL = "AA", "A", "N"
YES = ("Y", "Yes", "HL70136")
NO = ("N", "No", "HL70136")

_HUMAN = {
    "orderLateralityMismatch": "Order laterality mismatch",
    "textLateralityContradiction": "Text laterality contradiction",
    "textLateralityMissing": "Text laterality missing",
    "notEligible": "Not eligible",
    "performanceNotMet": "Performance not met",
    "performanceMet": "Performance met",
    "denominatorException": "Denominator exception",
    "doctor": "Doctor", "nurse": "Nurse", "midwife": "Midwife",
    "physicianAssistant": "Physician assistant", "unknown": "Unknown",
}


@dataclass(frozen=True)
class Obx:
    """One OBX before numbering: fields 2, 3, 5, 6, 8, 14 and 17, escaped."""

    value_type: str
    identifier: str
    value: str
    units: str = ""
    flag: str = ""
    observed_at: str = ""
    method: str = ""


Identifier = Callable[[str], str]  # identifier key -> encoded CWE for OBX-3


def _components(obs: Observation | None, code: str) -> list:  # type: ignore[type-arg]
    if obs is None:
        return []
    return [c for c in obs.component or []
            if any(cd.code == code for cd in (c.code.coding or []))]


def _first_concept(obs: Observation | None, code: str) -> CodeableConcept | None:
    for comp in _components(obs, code):
        if comp.value_codeable_concept is not None:
            return comp.value_codeable_concept
    return None


def finding_flag(obs: Observation) -> str:
    codes = {cd.code for cc in obs.interpretation or [] for cd in cc.coding or []}
    if codes & NEGATING_INTERPRETATIONS:
        return NORMAL
    if obs.code and any(cd.code == BODY_STRUCTURE for cd in obs.code.coding or []):
        return NORMAL
    return ABNORMAL


def _qualifiers(obs: Observation | None, ident: Identifier, *, interpretation: bool) -> list[Obx]:
    """Anatomy, laterality, size and (optionally) interpretation OBXs of a finding."""
    if obs is None:
        return []
    rows: list[Obx] = []
    if interpretation and obs.interpretation:
        reps = REPETITION_SEP.join(cwe(cc) for cc in obs.interpretation)
        rows.append(Obx("CWE", ident("interpretation"), reps))
    anatomy = _first_concept(obs, ANATOMY)
    if anatomy is not None:
        rows.append(Obx("CWE", ident("anatomy"), cwe(anatomy)))
    side = _first_concept(obs, LATERALITY)
    if side is not None:
        rows.append(Obx("CWE", ident("laterality"), cwe(side)))
    for comp in _components(obs, SIZE):
        q, r = comp.value_quantity, comp.value_range
        if q is not None and q.value is not None:
            if q.comparator:
                rows.append(Obx("SN", ident("size"), components(escape(q.comparator), number(q.value)),
                                units(q)))
            else:
                rows.append(Obx("NM", ident("size"), number(q.value), units(q)))
        elif r is not None and r.low and r.high and r.low.value is not None and r.high.value is not None:
            rows.append(Obx("SN", ident("size"),
                            components("", number(r.low.value), "-", number(r.high.value)), units(r.low)))
    return rows


def _subject(obs: Observation | None) -> CodeableConcept | None:
    subject = _first_concept(obs, SUBJECT_OF_INFORMATION)
    if subject is None and obs is not None:
        # A body-structure finding ("uterus is unremarkable") is about its anatomy.
        subject = _first_concept(obs, ANATOMY) or obs.code
    return subject


def _local(code: str, system: str) -> str:
    return local_cwe(code, _HUMAN.get(code, code), system)


def inference_rows(inf: Inference, ident: Identifier, local_system: str) -> list[Obx]:
    """The OBX rows of one inference: main OBX first (without evidence/source rows)."""
    main = ident(inf.kind)
    if isinstance(inf, FindingInference):
        obs = inf.finding
        return [Obx("CWE", main, cwe(_subject(obs)), flag=finding_flag(obs)),
                *_qualifiers(obs, ident, interpretation=True)]
    if isinstance(inf, CriticalResultInference):
        subject = _subject(inf.result.finding) if inf.result.finding else None
        codings = (subject.coding or []) if subject is not None else []
        return [Obx("CWE", main, cwe_from_codings(codings, inf.result.description), flag=CRITICAL),
                *_qualifiers(inf.result.finding, ident, interpretation=False)]
    if isinstance(inf, FollowupRecommendationInference):
        return _recommendation_rows(inf, ident)
    if isinstance(inf, FollowupCommunicationInference):
        recipients = REPETITION_SEP.join(_local(r, local_system) for r in inf.recipient or [])
        when = hl7_from_iso((inf.communicated_at or [None])[0])
        ack = YES if inf.was_acknowledged else NO
        return [Obx("CWE", main, recipients, observed_at=when),
                Obx("CWE", ident("acknowledged"), local_cwe(*ack))]
    if isinstance(inf, RadiologyProcedureInference):
        value = cwe((inf.procedure_codes or [None])[0]) if inf.procedure_codes else ""
        rows = []
        for proc in inf.imaging_procedures:
            value = value or cwe(proc.modality)
            rows.append(Obx("CWE", ident("modality"), cwe(proc.modality)))
            rows.append(Obx("CWE", ident("anatomy"), cwe(proc.anatomy)))
        return [Obx("CWE", main, value), *rows]
    if isinstance(inf, ScoringAndAssessmentInference):
        if inf.single_value is not None:
            value = escape(inf.single_value)
        elif inf.range_value is not None:
            value = escape(f"{inf.range_value.minimum}-{inf.range_value.maximum}")
        else:
            value = ""
        rows = [Obx("CWE", main, local_cwe(inf.category, inf.category_description, local_system))]
        if value:
            rows.append(Obx("ST", ident("score_value"), value))
        return rows
    if isinstance(inf, GuidanceInference):
        return [Obx("CWE", main, cwe(inf.identifier)),
                Obx("ST", ident("ranking"), escape(inf.ranking))]
    if isinstance(inf, QualityMeasureInference):
        return [Obx("CWE", main, _local(inf.compliance_type, local_system)),
                Obx("ST", ident("measure_denominator"), escape(inf.quality_measure_denominator))]
    if isinstance(inf, AgeMismatchInference):
        return [Obx("CWE", main, local_cwe(*YES), flag=ABNORMAL)]
    if isinstance(inf, SexMismatchInference):
        return [Obx("CWE", main, cwe(inf.sex_indication), flag=ABNORMAL)]
    if isinstance(inf, LateralityDiscrepancyInference):
        rows = [Obx("CWE", main, _local(inf.discrepancy_type, local_system), flag=ABNORMAL)]
        if inf.laterality_indication is not None:
            rows.append(Obx("CWE", ident("laterality"), cwe(inf.laterality_indication)))
        return rows
    if isinstance(inf, CompleteOrderDiscrepancyInference):
        return [Obx("CWE", main, cwe(inf.order_type), flag=ABNORMAL),
                *_parts(ident("missing_body_part"), inf.missing_body_parts),
                *_parts(ident("missing_measurement"), inf.missing_body_part_measurements)]
    if isinstance(inf, LimitedOrderDiscrepancyInference):
        return [Obx("CWE", main, cwe(inf.order_type), flag=ABNORMAL),
                *_parts(ident("present_body_part"), inf.present_body_parts),
                *_parts(ident("present_measurement"), inf.present_body_part_measurements)]
    # A kind this version does not know: keep it visible rather than drop it.
    return [Obx("ST", main, escape(inf.kind))]


def _parts(identifier: str, concepts: list[CodeableConcept] | None) -> list[Obx]:
    if not concepts:
        return []
    return [Obx("CWE", identifier, REPETITION_SEP.join(cwe(c) for c in concepts))]


def _recommendation_rows(inf: FollowupRecommendationInference, ident: Identifier) -> list[Obx]:
    proc = inf.recommended_procedure
    rows: list[Obx] = []
    if isinstance(proc, ImagingProcedureRecommendation) and proc.imaging_procedures:
        first = proc.imaging_procedures[0]
        rows.append(Obx("CWE", ident(inf.kind), cwe(first.modality), flag=ABNORMAL))
        rows.append(Obx("CWE", ident("anatomy"), cwe(first.anatomy)))
        if first.laterality is not None:
            rows.append(Obx("CWE", ident("laterality"), cwe(first.laterality)))
    elif isinstance(proc, GenericProcedureRecommendation):
        rows.append(Obx("CWE", ident(inf.kind), cwe(proc.code, proc.description), flag=ABNORMAL))
    else:
        rows.append(Obx("CWE", ident(inf.kind), "", flag=ABNORMAL))
    if inf.effective_at:
        rows.append(Obx("DTM", ident("due"), hl7_from_iso(inf.effective_at)))
    elif inf.effective_period is not None:
        period = inf.effective_period
        rows.append(Obx("DR", ident("due"),
                        components(hl7_from_iso(period.start), hl7_from_iso(period.end))))
    return rows


DEFAULT_IDENTIFIERS: Mapping[str, tuple[str, str]] = {
    # inference kinds: the main OBX of each group
    "ageMismatch": ("RI-AGE", "Age mismatch"),
    "sexMismatch": ("RI-SEX", "Sex mismatch"),
    "lateralityDiscrepancy": ("RI-LATD", "Laterality discrepancy"),
    "completeOrderDiscrepancy": ("RI-CORD", "Complete order discrepancy"),
    "limitedOrderDiscrepancy": ("RI-LORD", "Limited order discrepancy"),
    "finding": ("RI-FIND", "Finding"),
    "criticalResult": ("RI-CRIT", "Critical result"),
    "followupRecommendation": ("RI-FUREC", "Follow-up recommendation"),
    "followupCommunication": ("RI-COMM", "Follow-up communication"),
    "radiologyProcedure": ("RI-PROC", "Radiology procedure"),
    "scoringAndAssessment": ("RI-SCORE", "Scoring and assessment"),
    "guidance": ("RI-GUID", "Guidance"),
    "qualityMeasure": ("RI-QM", "Quality measure"),
    # qualifying OBXs inside a group
    "evidence": ("RI-EVID", "Evidence"),
    "source": ("RI-SRC", "Source observation"),
    "interpretation": ("RI-INTERP", "Interpretation"),
    "anatomy": ("RI-ANAT", "Anatomy"),
    "laterality": ("RI-SIDE", "Laterality"),
    "size": ("RI-SIZE", "Size"),
    "modality": ("RI-MOD", "Modality"),
    "score_value": ("RI-SCOREVAL", "Score value"),
    "ranking": ("RI-RANK", "Guidance ranking"),
    "measure_denominator": ("RI-QMDEN", "Quality measure denominator"),
    "due": ("RI-DUE", "Follow-up due"),
    "acknowledged": ("RI-COMMACK", "Communication acknowledged"),
    "missing_body_part": ("RI-MISSPART", "Missing body part"),
    "missing_measurement": ("RI-MISSMEAS", "Missing body part measurement"),
    "present_body_part": ("RI-PRESPART", "Present body part"),
    "present_measurement": ("RI-PRESMEAS", "Present body part measurement"),
    # alerts
    "communicated": ("COMMUNICATED", "Already communicated"),
}
