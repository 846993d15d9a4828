"""RI request and response models, camelCase on the wire (``to_json``/``from_json``)."""

from __future__ import annotations

from .base import Model, ModelError
from .fhir import (
    DERIVATION_REFERENCE, LOINC, RADLEX, SNOMED, CodeableConcept, Coding, Extension,
    Observation, ObservationComponent, Period, Quantity, Range, Reference, concept, coding,
    document_reference, document_token, token_extension, token_spans,
)
from .inferences import (
    AgeMismatchInference, AssessmentValueRange, CompleteOrderDiscrepancyInference, Contrast,
    CriticalResult, CriticalResultInference, ErrorDetail, FindingInference,
    FollowupCommunicationInference, FollowupRecommendationInference,
    GenericProcedureRecommendation, GuidanceInference, ImagingProcedure,
    ImagingProcedureRecommendation, Inference, InferenceResult, LateralityDiscrepancyInference,
    LimitedOrderDiscrepancyInference, OrderedProcedureRef, PatientResult,
    PresentGuidanceInformation, ProcedureRecommendation, QualityMeasureInference,
    RadiologyInsightsJob, RadiologyProcedureInference, RecommendationFinding,
    ScoringAndAssessmentInference, SexMismatchInference, View,
)
from .request import (
    INFERENCE_TYPES, LOCALES, QUALITY_MEASURE_TYPES, DocumentAdministrativeMetadata,
    DocumentAuthor, DocumentContent, FindingOptions, FollowupRecommendationOptions,
    GuidanceOptions, InferenceOptions, ModelConfiguration, OrderedProcedure, PatientDetails,
    PatientDocument, PatientEncounter, PatientRecord, QualityMeasureOptions,
    RadiologyInsightsData,
)

__all__ = sorted([
    "AgeMismatchInference", "AssessmentValueRange", "CodeableConcept", "Coding",
    "CompleteOrderDiscrepancyInference", "Contrast", "CriticalResult", "CriticalResultInference",
    "DERIVATION_REFERENCE", "DocumentAdministrativeMetadata", "DocumentAuthor", "DocumentContent",
    "ErrorDetail", "Extension", "FindingInference", "FindingOptions",
    "FollowupCommunicationInference", "FollowupRecommendationInference",
    "FollowupRecommendationOptions", "GenericProcedureRecommendation", "GuidanceInference",
    "GuidanceOptions", "INFERENCE_TYPES", "ImagingProcedure", "ImagingProcedureRecommendation",
    "Inference", "InferenceOptions", "InferenceResult", "LOCALES", "LOINC",
    "LateralityDiscrepancyInference", "LimitedOrderDiscrepancyInference", "Model", "ModelError",
    "ModelConfiguration", "Observation", "ObservationComponent", "OrderedProcedure",
    "OrderedProcedureRef", "PatientDetails", "PatientDocument", "PatientEncounter",
    "PatientRecord", "PatientResult", "Period", "PresentGuidanceInformation",
    "ProcedureRecommendation", "QUALITY_MEASURE_TYPES", "QualityMeasureInference",
    "QualityMeasureOptions", "Quantity", "RADLEX", "RadiologyInsightsData",
    "RadiologyInsightsJob", "RadiologyProcedureInference", "Range", "RecommendationFinding",
    "Reference", "SNOMED", "ScoringAndAssessmentInference", "SexMismatchInference", "View",
    "coding", "concept", "document_reference", "document_token", "token_extension", "token_spans",
])
