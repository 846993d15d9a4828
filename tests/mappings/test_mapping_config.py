"""MappingConfig.from_dict, the documented TOML file and the procedure table data."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from mappings.config import MappingConfig
from mappings.errors import MappingConfigError
from mappings.procedures import describe_procedure, procedure_table

TOML = Path(__file__).resolve().parents[2] / "config" / "mappings.toml"


def test_documented_file_equals_embedded_defaults() -> None:
    data = tomllib.loads(TOML.read_text(encoding="utf-8"))
    assert MappingConfig.from_dict(data["mappings"]) == MappingConfig()


def test_documented_file_names_every_key() -> None:
    text = TOML.read_text(encoding="utf-8")
    missing = [name for name in MappingConfig.__dataclass_fields__ if name not in text]
    assert missing == []


def test_values_are_read_and_tables_merged() -> None:
    config = MappingConfig.from_dict({
        "patient_id_types": ["pi", "mr"], "analyse_statuses": ["f", "c", "p"], "missing_status": "",
        "accession_sources": ["ORC-3"], "nte": "all", "validation": "lenient",
        "sex_map": {"k": "female"}, "validation_by_facility": {"HOSP": "strict"},
        "encounter_period_from_observation": False, "default_charset": "8859/1",
    })
    assert (config.patient_id_types, config.analyse_statuses, config.missing_status) == (("PI", "MR"), ("F", "C", "P"), None)
    assert (config.accession_sources, config.nte, config.validation) == (("ORC-3",), "all", "lenient")
    assert config.sex_map["K"] == "female" and config.sex_map["F"] == "female"
    assert (config.validation_for("HOSP"), config.validation_for("OTHER")) == ("strict", "lenient")
    assert config.encounter_period_from_observation is False


@pytest.mark.parametrize(("data", "key"), [
    ({"nope": 1}, "mappings.nope"),
    ({"validation": "paranoid"}, "mappings.validation"),
    ({"validation_by_facility": {"H": "maybe"}}, "mappings.validation_by_facility"),
    ({"accession_sources": ["OBR-99"]}, "mappings.accession_sources"),
    ({"accession_sources": []}, "mappings.accession_sources"),
    ({"created_at_sources": ["PID-7"]}, "mappings.created_at_sources"),
    ({"encounter_id_sources": ["PV1-50"]}, "mappings.encounter_id_sources"),
    ({"nte": "some"}, "mappings.nte"),
    ({"sex_map": {"X": "other"}}, "mappings.sex_map"),
    ({"sex_map": {"X": 1}}, "mappings.sex_map"),
    ({"encounter_class_map": {"B": "hospital"}}, "mappings.encounter_class_map"),
    ({"patient_id_types": "MR"}, "mappings.patient_id_types"),
    ({"use_procedure_table": "yes"}, "mappings.use_procedure_table"),
    ({"document_language": 5}, "mappings.document_language"),
    ({"default_charset": "klingon-8"}, "mappings.default_charset"),
])
def test_bad_values_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        MappingConfig.from_dict(data)
    assert info.value.key == key


def test_not_a_table() -> None:
    with pytest.raises(MappingConfigError):
        MappingConfig.from_dict(["x"])  # type: ignore[arg-type]


def test_procedure_table_rows_are_complete_and_sourced() -> None:
    data = json.loads(resources.files("mappings").joinpath("procedures.json").read_text(encoding="utf-8"))
    rows = data["procedures"]
    assert len(rows) == len(procedure_table())  # (system, code) pairs are unique
    modalities = {row["modality"] for row in rows}
    assert modalities == {"CT", "MR", "US", "XR", "NM", "MG", "RF", "PT"}
    for row in rows:
        assert row["system"] in ("LOINC", "CPT") and row["code"] and row["display"] and row["source"]
        assert row["laterality"] in (None, "left", "right", "bilateral", "unilateral")
        assert row["contrast"] in (None, "with", "without", "without_then_with")


def test_procedure_lookup_and_disabled_table() -> None:
    info = describe_procedure("http://www.ama-assn.org/go/cpt", "74177", "CT ABD/PELVIS W LEFT")
    assert (info.modality, info.body_part, info.laterality, info.contrast) == ("CT", "abdomen and pelvis", "left", "with")
    assert describe_procedure("http://www.ama-assn.org/go/cpt", "74177", "CT", use_table=False) is None
    assert describe_procedure("http://loinc.org", "74177", "CT") is None
