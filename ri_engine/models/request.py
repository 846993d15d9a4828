"""The RI request: ``jobData = {patients: [PatientRecord], configuration}`` (ri_contract §2).

Dates stay strings as sent: RI accepts forms like ``2014-2-20T00:00:00`` and the
engine parses them leniently where it needs a date.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .base import Model, field, required
from .fhir import CodeableConcept, Extension, Period

Sex = Literal["female", "male", "unspecified"]
EncounterClass = Literal["inpatient", "ambulatory", "observation", "emergency", "virtual", "healthHome"]

INFERENCE_TYPES = (
    "ageMismatch", "lateralityDiscrepancy", "sexMismatch", "completeOrderDiscrepancy",
    "limitedOrderDiscrepancy", "finding", "criticalResult", "followupRecommendation",
    "followupCommunication", "radiologyProcedure", "scoringAndAssessment", "guidance",
    "qualityMeasure",
)
# Accepted in inferenceTypes and silently ignored, as RI does (ri_contract §5.14).
IGNORED_INFERENCE_TYPES = ("criticalRecommendation",)

QUALITY_MEASURE_TYPES = (
    "mips76", "mips147", "mips195", "mips360", "mips364", "mips405", "mips406", "mips436",
    "mips145", "acrad36", "acrad37", "acrad38", "acrad39", "acrad40", "acrad41", "acrad42",
    "mednax55", "msn13", "msn15", "qmm26", "qmm17", "qmm18", "qmm19",
)

LOCALES = ("en-CA", "en-US", "en-AU", "en-DE", "en-IE", "en-NZ", "en-GB")


@dataclass(kw_only=True)
class PatientDetails(Model):
    sex: Sex | None = None
    birth_date: str | None = None
    clinical_info: list[dict[str, Any]] | None = None


@dataclass(kw_only=True)
class PatientEncounter(Model):
    id: str = required()
    period: Period | None = None
    class_: EncounterClass | None = field(json="class")


@dataclass(kw_only=True)
class DocumentAuthor(Model):
    id: str | None = None
    full_name: str | None = field(aliases=("name",))


@dataclass(kw_only=True)
class OrderedProcedure(Model):
    code: CodeableConcept | None = None
    description: str | None = None
    extension: list[Extension] | None = None


@dataclass(kw_only=True)
class DocumentAdministrativeMetadata(Model):
    ordered_procedures: list[OrderedProcedure] | None = None
    encounter_id: str | None = None


@dataclass(kw_only=True)
class DocumentContent(Model):
    source_type: Literal["inline", "reference"] = "inline"
    value: str = required()


@dataclass(kw_only=True)
class PatientDocument(Model):
    type: str = "note"
    clinical_type: str | None = None
    id: str = required()
    language: str | None = None
    created_at: str | None = field(aliases=("createdDateTime",))
    authors: list[DocumentAuthor] | None = None
    specialty_type: str | None = None
    administrative_metadata: DocumentAdministrativeMetadata | None = None
    content: DocumentContent = required()


@dataclass(kw_only=True)
class PatientRecord(Model):
    id: str = required()
    details: PatientDetails | None = field(aliases=("info",))
    encounters: list[PatientEncounter] | None = None
    patient_documents: list[PatientDocument] | None = None


@dataclass(kw_only=True)
class FollowupRecommendationOptions(Model):
    include_recommendations_with_no_specified_modality: bool | None = None
    include_recommendations_in_references: bool | None = None
    provide_focused_sentence_evidence: bool | None = None


@dataclass(kw_only=True)
class FindingOptions(Model):
    provide_focused_sentence_evidence: bool | None = None


@dataclass(kw_only=True)
class GuidanceOptions(Model):
    show_guidance_in_history: bool = required()


@dataclass(kw_only=True)
class QualityMeasureOptions(Model):
    measure_types: list[str] = required()


@dataclass(kw_only=True)
class InferenceOptions(Model):
    # RI's documentation spells several keys with a capital first letter; both are accepted.
    followup_recommendation_options: FollowupRecommendationOptions | None = field(
        aliases=("FollowupRecommendationOptions",))
    finding_options: FindingOptions | None = field(aliases=("FindingOptions",))
    guidance_options: GuidanceOptions | None = field(aliases=("GuidanceOptions",))
    quality_measure_options: QualityMeasureOptions | None = field(aliases=("QualityMeasureOptions",))


@dataclass(kw_only=True)
class ModelConfiguration(Model):
    verbose: bool | None = None
    include_evidence: bool | None = None
    inference_types: list[str] | None = None
    inference_options: InferenceOptions | None = None
    locale: str | None = None


@dataclass(kw_only=True)
class RadiologyInsightsData(Model):
    """What RI calls ``jobData``: the patients and the model configuration."""

    patients: list[PatientRecord] = required()
    configuration: ModelConfiguration | None = None

    @classmethod
    def from_request_json(cls, data: Any) -> RadiologyInsightsData:
        """Read a request given either as ``{"jobData": ...}`` or bare."""
        if isinstance(data, dict) and "jobData" in data:
            return cls.from_json(data["jobData"], "jobData")
        return cls.from_json(data)
