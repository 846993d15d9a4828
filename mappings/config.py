"""Mapping configuration: which HL7 fields feed which RI fields.

``MappingConfig()`` holds the embedded defaults; ``MappingConfig.from_dict(d)`` reads the
``[mappings]`` table of a TOML file (``config/mappings.toml`` documents every key), merging
the code tables with the defaults and rejecting unknown keys and bad values with a
``MappingConfigError`` that names the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .decoding import charset_codec
from .errors import MappingConfigError

ValidationLevel = str  # "none" | "lenient" | "strict"
VALIDATION_LEVELS = ("none", "lenient", "strict")
ACCESSION_SOURCES = ("OBR-18", "OBR-19", "OBR-20", "OBR-3", "OBR-2", "ORC-3", "ORC-2")
CREATED_AT_SOURCES = ("OBR-7", "OBR-22", "OBR-8", "OBX-14", "MSH-7")
ENCOUNTER_ID_SOURCES = ("PV1-19", "PID-18", "accession", "filler_order", "placer_order", "control_id")
NTE_MODES = ("none", "obx", "all")
ENCOUNTER_CLASSES = ("inpatient", "ambulatory", "observation", "emergency", "virtual", "healthHome")
SEXES = ("female", "male", "unspecified")

# HL7 table 0001 (F, M, O, U, A, N) plus local variants: full words, German W (weiblich),
# ISO/IEC 5218 digits (1 male, 2 female, 0 not known, 9 not applicable).
DEFAULT_SEX_MAP: Mapping[str, str] = {
    "F": "female", "M": "male", "O": "unspecified", "U": "unspecified", "A": "unspecified",
    "N": "unspecified", "FEMALE": "female", "MALE": "male", "W": "female", "FEM": "female",
    "UNK": "unspecified", "UNKNOWN": "unspecified", "OTHER": "unspecified", "X": "unspecified",
    "1": "male", "2": "female", "0": "unspecified", "9": "unspecified",
}

# HL7 table 0004 patient class (E, I, O, R; B, C, N, P, U have no RI class) plus the FHIR
# v3-ActCode encounter codes and common local spellings.
DEFAULT_ENCOUNTER_CLASS_MAP: Mapping[str, str] = {
    "I": "inpatient", "O": "ambulatory", "E": "emergency", "R": "ambulatory",
    "IP": "inpatient", "INPATIENT": "inpatient", "OP": "ambulatory", "OUTPATIENT": "ambulatory",
    "ER": "emergency", "ED": "emergency", "EMERGENCY": "emergency",
    "OBS": "observation", "OBSERVATION": "observation",
    "IMP": "inpatient", "AMB": "ambulatory", "EMER": "emergency", "OBSENC": "observation",
    "VR": "virtual", "HH": "healthHome",
}

# OBR-4 / OBX-3 coding system (table 0396 and common variants) -> URI.
DEFAULT_CODING_SYSTEMS: Mapping[str, str] = {
    "LN": "http://loinc.org", "LOINC": "http://loinc.org",
    "C4": "http://www.ama-assn.org/go/cpt", "C5": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt", "CPT4": "http://www.ama-assn.org/go/cpt",
    "CPT-4": "http://www.ama-assn.org/go/cpt",
    "SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct", "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct", "SNM3": "http://snomed.info/sct",
    "RADLEX": "http://radlex.org", "RID": "http://radlex.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "HCPCS": "urn:oid:2.16.840.1.113883.6.285", "HCPT": "urn:oid:2.16.840.1.113883.6.285",
}

# OBR-24 diagnostic service section (table 0074) -> modality hint.
DEFAULT_MODALITY_SECTIONS: Mapping[str, str] = {
    "CT": "CT", "CTH": "CT", "MR": "MR", "MRI": "MR", "NMR": "MR", "US": "US", "OUS": "US",
    "VUS": "US", "CUS": "US", "RUS": "US", "NMS": "NM", "NM": "NM", "RX": "XR", "XR": "XR",
    "CR": "XR", "DX": "XR", "XRC": "RF", "RF": "RF", "MG": "MG", "MAM": "MG", "PT": "PT",
    "PET": "PT",
}

# OBX-3 sub-identifiers (&GDT ...), LOINC report section codes (Regenstrief, "LOINC
# Radiology Studies" 2015, and DICOM PS3.20 CDA imaging report sections), DICOM CID
# 7001/7002 section codes and plain section words -> the heading written into the text.
DEFAULT_SECTION_HEADINGS: Mapping[str, str] = {
    "GDT": "FINDINGS:", "IMP": "IMPRESSION:", "ADT": "ADDENDUM:", "REC": "RECOMMENDATION:",
    "18785-6": "INDICATION:", "55108-5": "CLINICAL PRESENTATION:", "55111-9": "PROCEDURE:",
    "11329-0": "HISTORY:", "18782-3": "FINDINGS:", "55107-7": "ADDENDUM:",
    "55109-3": "COMPLICATIONS:", "55114-3": "PRIOR PROCEDURES:", "19005-8": "IMPRESSION:",
    "18834-2": "COMPARISON:", "18783-1": "RECOMMENDATION:", "55112-7": "SUMMARY:",
    "55110-1": "CONCLUSION:", "55752-0": "CLINICAL INFORMATION:", "59768-2": "INDICATION:",
    "121060": "HISTORY:", "121064": "PROCEDURE:", "121065": "PROCEDURE:",
    "121070": "FINDINGS:", "121071": "FINDINGS:", "121072": "IMPRESSION:", "121073": "IMPRESSION:",
    "121074": "RECOMMENDATION:", "121075": "RECOMMENDATION:", "121076": "CONCLUSION:",
    "121077": "CONCLUSION:", "121078": "ADDENDUM:", "121109": "INDICATION:",
    "FINDINGS": "FINDINGS:", "IMPRESSION": "IMPRESSION:", "IMPRESSIONS": "IMPRESSION:",
    "ADDENDUM": "ADDENDUM:", "RECOMMENDATION": "RECOMMENDATION:", "RECOMMENDATIONS": "RECOMMENDATION:",
    "HISTORY": "HISTORY:", "INDICATION": "INDICATION:", "INDICATIONS": "INDICATION:",
    "TECHNIQUE": "TECHNIQUE:", "COMPARISON": "COMPARISON:", "CONCLUSION": "CONCLUSION:",
    "CONCLUSIONS": "CONCLUSION:",
}

# OBX-3 identifiers whose values are identifiers, never report text: DICOM Study Instance
# UID (DCM 113014), and the text-only identifiers IHE RAD senders use for series/SOP UIDs.
DEFAULT_EXCLUDED_OBSERVATIONS: tuple[str, ...] = (
    "113014", "112002", "SERIES INSTANCE UID", "SR INSTANCE UID", "SOP INSTANCE UID",
    "STUDY INSTANCE UID",
)


@dataclass(frozen=True)
class MappingConfig:
    """Every choice the ORU^R01 -> RI mapping makes (defaults documented in mappings.toml)."""

    patient_id_types: tuple[str, ...] = ("MR", "MRN", "PI", "PT")
    patient_id_authority: str | None = None
    sex_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEX_MAP))
    encounter_class_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ENCOUNTER_CLASS_MAP))
    encounter_id_sources: tuple[str, ...] = ("PV1-19", "PID-18", "accession", "control_id")
    encounter_period_from_observation: bool = True
    accession_sources: tuple[str, ...] = ("OBR-18", "OBR-3", "ORC-3")
    created_at_sources: tuple[str, ...] = ("OBR-7", "OBR-22", "MSH-7")
    coding_systems: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CODING_SYSTEMS))
    modality_sections: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODALITY_SECTIONS))
    section_headings: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SECTION_HEADINGS))
    excluded_observations: tuple[str, ...] = DEFAULT_EXCLUDED_OBSERVATIONS
    analyse_statuses: tuple[str, ...] = ("F", "C")
    missing_status: str | None = "F"
    nte: str = "none"
    document_language: str = "en"
    clinical_type: str = "radiologyReport"
    specialty_type: str = "radiology"
    use_procedure_table: bool = True
    validation: ValidationLevel = "none"
    validation_by_facility: Mapping[str, str] = field(default_factory=dict)
    default_charset: str = "utf-8"

    def validation_for(self, sending_facility: str) -> str:
        """The hl7apy validation level for a sending facility (MSH-4, first component)."""
        return self.validation_by_facility.get(sending_facility, self.validation)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MappingConfig:
        """Build from a TOML table; raises MappingConfigError naming the bad key."""
        if not isinstance(d, Mapping):
            raise MappingConfigError("mappings", "expected a table")
        defaults = cls()
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in d.items():
            if key not in known:
                raise MappingConfigError(f"mappings.{key}", "unknown key")
            values[key] = _convert(key, value, getattr(defaults, key))
        config = dataclasses.replace(defaults, **values)
        config._check()
        return config

    def _check(self) -> None:
        _choices("validation", [self.validation], VALIDATION_LEVELS)
        _choices("validation_by_facility", list(self.validation_by_facility.values()), VALIDATION_LEVELS)
        _choices("accession_sources", list(self.accession_sources), ACCESSION_SOURCES)
        _choices("created_at_sources", list(self.created_at_sources), CREATED_AT_SOURCES)
        _choices("encounter_id_sources", list(self.encounter_id_sources), ENCOUNTER_ID_SOURCES)
        _choices("nte", [self.nte], NTE_MODES)
        _choices("sex_map", list(self.sex_map.values()), SEXES)
        _choices("encounter_class_map", list(self.encounter_class_map.values()), ENCOUNTER_CLASSES)
        if not self.accession_sources:
            raise MappingConfigError("mappings.accession_sources", "must name at least one field")
        if not self.created_at_sources:
            raise MappingConfigError("mappings.created_at_sources", "must name at least one field")
        if charset_codec(self.default_charset) is None:
            raise MappingConfigError("mappings.default_charset", f"unknown charset {self.default_charset!r}")


def _choices(key: str, values: list[str], allowed: tuple[str, ...]) -> None:
    for value in values:
        if value not in allowed:
            raise MappingConfigError(f"mappings.{key}", f"{value!r} is not one of {', '.join(allowed)}")


def _convert(key: str, value: Any, default: Any) -> Any:
    name = f"mappings.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise MappingConfigError(name, "expected true or false")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MappingConfigError(name, "expected a list of strings")
        return tuple(v.strip().upper() if key in _UPPER_LISTS else v.strip() for v in value)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise MappingConfigError(name, "expected a table of strings")
        merged = {} if key == "validation_by_facility" else dict(default)
        for k, v in value.items():
            merged[str(k).strip().upper() if key in _UPPER_KEYS else str(k)] = v
        return merged
    if key in ("missing_status", "patient_id_authority"):
        if value in ("", None):
            return None
        if not isinstance(value, str):
            raise MappingConfigError(name, "expected a string")
        return value.strip().upper() if key == "missing_status" else value
    if not isinstance(value, str):
        raise MappingConfigError(name, "expected a string")
    return value.strip()


_UPPER_LISTS = {"patient_id_types", "analyse_statuses", "excluded_observations"}
_UPPER_KEYS = {"sex_map", "encounter_class_map", "coding_systems", "modality_sections", "section_headings"}
