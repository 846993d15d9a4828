"""The 13 RI inference kinds (ri_contract §5) and the job that carries them (§3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .base import Model, field, required
from .fhir import CodeableConcept, Extension, Observation, Period, Quantity
from .request import RadiologyInsightsData


@dataclass(kw_only=True)
class Inference(Model):
    """Base of every inference; ``kind`` is the tag RI uses to tell them apart."""

    kind: str = ""
    extension: list[Extension] | None = None

    def __post_init__(self) -> None:
        if not self.kind and self.kind_value:
            self.kind = self.kind_value


# --- quality checks (§5.1-5.5) -------------------------------------------------------------

@dataclass(kw_only=True)
class AgeMismatchInference(Inference):
    kind_value = "ageMismatch"


@dataclass(kw_only=True)
class SexMismatchInference(Inference):
    kind_value = "sexMismatch"
    sex_indication: CodeableConcept = required()


@dataclass(kw_only=True)
class LateralityDiscrepancyInference(Inference):
    kind_value = "lateralityDiscrepancy"
    laterality_indication: CodeableConcept | None = None
    discrepancy_type: Literal[
        "orderLateralityMismatch", "textLateralityContradiction", "textLateralityMissing"] = required()


@dataclass(kw_only=True)
class CompleteOrderDiscrepancyInference(Inference):
    kind_value = "completeOrderDiscrepancy"
    order_type: CodeableConcept = required()
    missing_body_parts: list[CodeableConcept] | None = None
    missing_body_part_measurements: list[CodeableConcept] | None = None


@dataclass(kw_only=True)
class LimitedOrderDiscrepancyInference(Inference):
    kind_value = "limitedOrderDiscrepancy"
    order_type: CodeableConcept = required()
    present_body_parts: list[CodeableConcept] | None = None
    present_body_part_measurements: list[CodeableConcept] | None = None


# --- findings and what follows from them (§5.6-5.10) ---------------------------------------

@dataclass(kw_only=True)
class FindingInference(Inference):
    kind_value = "finding"
    finding: Observation = required()


@dataclass(kw_only=True)
class CriticalResult(Model):
    description: str = required()
    finding: Observation | None = None


@dataclass(kw_only=True)
class CriticalResultInference(Inference):
    kind_value = "criticalResult"
    result: CriticalResult = required()


@dataclass(kw_only=True)
class ProcedureRecommendation(Model):
    kind: str = ""
    extension: list[Extension] | None = None

    def __post_init__(self) -> None:
        if not self.kind and self.kind_value:
            self.kind = self.kind_value


@dataclass(kw_only=True)
class GenericProcedureRecommendation(ProcedureRecommendation):
    kind_value = "genericProcedureRecommendation"
    code: CodeableConcept = required()
    description: str | None = None


@dataclass(kw_only=True)
class Contrast(Model):
    code: CodeableConcept = required()
    extension: list[Extension] | None = None


@dataclass(kw_only=True)
class View(Model):
    code: CodeableConcept = required()
    extension: list[Extension] | None = None


@dataclass(kw_only=True)
class ImagingProcedure(Model):
    modality: CodeableConcept = required()
    anatomy: CodeableConcept = required()
    laterality: CodeableConcept | None = None
    contrast: Contrast | None = None
    view: View | None = None


@dataclass(kw_only=True)
class ImagingProcedureRecommendation(ProcedureRecommendation):
    kind_value = "imagingProcedureRecommendation"
    procedure_codes: list[CodeableConcept] | None = None
    imaging_procedures: list[ImagingProcedure] = required()


@dataclass(kw_only=True)
class RecommendationFinding(Model):
    finding: Observation | None = None
    # RI sends ``{}`` here when the finding is not critical (ri_contract §9.10).
    critical_finding: CriticalResult | dict[str, object] | None = None
    recommendation_finding_status: Literal["present", "differential", "ruleOut", "conditional"] = required()
    extension: list[Extension] | None = None


@dataclass(kw_only=True)
class FollowupRecommendationInference(Inference):
    kind_value = "followupRecommendation"
    effective_at: str | None = field(aliases=("effectiveDateTime",))
    effective_period: Period | None = None
    findings: list[RecommendationFinding] | None = None
    is_conditional: bool = False
    is_option: bool = False
    is_guideline: bool = False
    is_hedging: bool = False
    recommended_procedure: ProcedureRecommendation = required()


@dataclass(kw_only=True)
class FollowupCommunicationInference(Inference):
    kind_value = "followupCommunication"
    communicated_at: list[str] | None = field(aliases=("dateTime",))
    recipient: list[Literal["doctor", "nurse", "midwife", "physicianAssistant", "unknown"]] | None = None
    was_acknowledged: bool = False


@dataclass(kw_only=True)
class OrderedProcedureRef(Model):
    code: CodeableConcept | None = None
    description: str | None = None
    extension: list[Extension] | None = None


@dataclass(kw_only=True)
class RadiologyProcedureInference(Inference):
    kind_value = "radiologyProcedure"
    procedure_codes: list[CodeableConcept] | None = None
    imaging_procedures: list[ImagingProcedure] = required()
    ordered_procedure: OrderedProcedureRef = required()


# --- 2024-10-01 additions (§5.11-5.13) -----------------------------------------------------

@dataclass(kw_only=True)
class AssessmentValueRange(Model):
    minimum: str = required()
    maximum: str = required()


@dataclass(kw_only=True)
class ScoringAndAssessmentInference(Inference):
    kind_value = "scoringAndAssessment"
    category: str = required()
    category_description: str = required()
    single_value: str | None = None
    range_value: AssessmentValueRange | None = None


@dataclass(kw_only=True)
class PresentGuidanceInformation(Model):
    present_guidance_item: str = required()
    sizes: list[Observation] | None = None
    maximum_diameter_as_in_text: Quantity | None = None
    present_guidance_values: list[str] | None = None
    extension: list[Extension] | None = None


@dataclass(kw_only=True)
class GuidanceInference(Inference):
    kind_value = "guidance"
    finding: FindingInference = required()
    identifier: CodeableConcept = required()
    present_guidance_information: list[PresentGuidanceInformation] | None = None
    ranking: Literal["high", "low"] = required()
    recommendation_proposals: list[FollowupRecommendationInference] | None = None
    missing_guidance_information: list[str] | None = None


@dataclass(kw_only=True)
class QualityMeasureInference(Inference):
    kind_value = "qualityMeasure"
    quality_measure_denominator: str = required()
    compliance_type: Literal["notEligible", "performanceNotMet", "performanceMet", "denominatorException"] = required()
    quality_criteria: list[str] | None = None


# --- results and the job --------------------------------------------------------------------

@dataclass(kw_only=True)
class PatientResult(Model):
    patient_id: str = required()
    inferences: list[Inference] = required()


@dataclass(kw_only=True)
class InferenceResult(Model):
    patient_results: list[PatientResult] = required()
    model_version: str = required()


@dataclass(kw_only=True)
class ErrorDetail(Model):
    code: str = required()
    message: str = required()
    target: str | None = None
    details: list[ErrorDetail] | None = None


JobStatus = Literal["notStarted", "running", "succeeded", "failed", "canceled"]


@dataclass(kw_only=True)
class RadiologyInsightsJob(Model):
    id: str | None = None
    status: JobStatus = required()
    created_at: str | None = None
    expires_at: str | None = None
    updated_at: str | None = None
    job_data: RadiologyInsightsData | None = None
    result: InferenceResult | None = None
    error: ErrorDetail | None = None
