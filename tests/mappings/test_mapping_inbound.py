"""map_oru: every mapped field, per HL7 version, and the AE reasons."""

from __future__ import annotations

import pytest
from oru_builder import obx, oru, segment

from mappings.config import MappingConfig
from mappings.datatypes import Person
from mappings.errors import ContentError, UnsupportedMessage
from mappings.authority import Authority
from mappings.inbound import map_oru, patient_identities
from mappings.procedures import ProcedureInfo

VERSIONS = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8"]


def one(text: str, config: MappingConfig | None = None):
    (report,) = map_oru(text, config)
    return report


def patient(report):
    return report.request.patients[0]


def document(report):
    return patient(report).patient_documents[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_full_request_per_version(version: str) -> None:
    report = one(oru(version=version, body=[obx(1, "FINDINGS: clear lungs."), obx(2, "IMPRESSION: normal.")]))
    assert report.request.to_json() == {
        "patients": [{
            "id": "MRN123",
            "details": {"sex": "female", "birthDate": "1960-02-15"},
            "encounters": [{"id": "VISIT42", "period": {"start": "2024-03-01T08:00:00",
                                                        "end": "2024-03-02T10:00:00"}, "class": "inpatient"}],
            "patientDocuments": [{
                "type": "note", "clinicalType": "radiologyReport", "id": "ACC1", "language": "en",
                "createdAt": "2024-03-01T11:30:00",
                "authors": [{"id": "5678", "fullName": "RITA READER"}],
                "specialtyType": "radiology",
                "administrativeMetadata": {
                    "orderedProcedures": [{
                        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "71046",
                                             "display": "XR CHEST 2 VIEWS"}]},
                        "description": "XR CHEST 2 VIEWS"}],
                    "encounterId": "VISIT42"},
                "content": {"sourceType": "inline", "value": "FINDINGS: clear lungs.\nIMPRESSION: normal."},
            }],
        }],
    }
    assert (report.accession, report.placer_order, report.filler_order, report.result_status) == \
        ("ACC1", "PLC1", "FIL1", "F")
    assert (report.analyse, report.skip_reason, report.modality_hint, report.obr_index) == (True, None, "XR", 1)
    assert report.ordering_provider == Person("1234", "SMITH", "JOHN", "A", "DR", "", "1234^SMITH^JOHN^A^^DR")
    assert report.procedure == ProcedureInfo("XR", "chest", None, None,
                                             "table:CPT code set (AMA), Radiology section descriptor")
    assert (report.control_id, report.sending_facility, report.warnings) == ("MSG0001", "GENERAL HOSPITAL", ())


@pytest.mark.parametrize(("pid3", "config", "expected"), [
    ("555^^^HOSP^PI~MRN123^^^HOSP^MR", MappingConfig(), "MRN123"),
    ("555^^^HOSP^PI~MRN123^^^HOSP^MR", MappingConfig(patient_id_types=("PI",)), "555"),
    ("X1^^^A~X2^^^B", MappingConfig(), "X1"),
    ("X1^^^A^MR~X2^^^B^MR", MappingConfig(patient_id_authority="B"), "X2"),
    ("\"\"~X9^^^A^PT", MappingConfig(), "X9"),
])
def test_patient_identifier_choice(pid3: str, config: MappingConfig, expected: str) -> None:
    assert patient(one(oru(pid={3: pid3}), config)).id == expected


def _hd(namespace: str, universal_id: str = "", universal_id_type: str = "") -> Authority:
    return Authority(namespace, universal_id, universal_id_type)


FACILITY = _hd("GENERAL HOSPITAL")  # MSH-4 of oru(): the authority of a bare identifier


@pytest.mark.parametrize(("pid3", "config", "expected"), [
    ("555^^^HOSP^PI~MRN123^^^HOSP^MR", MappingConfig(),
     {("555", _hd("HOSP")), ("MRN123", _hd("HOSP"))}),
    # An authority's universal id (an OID) is kept: PIX-style feeds give no namespace.
    ("X1^^^A&1.2.3&ISO^MR~X2^^^B^MR", MappingConfig(),
     {("X1", _hd("A", "1.2.3", "ISO")), ("X2", _hd("B"))}),
    ("X1^^^&1.2.3&ISO^MR~X1^^^&9.8.7&iso^MR", MappingConfig(),
     {("X1", _hd("", "1.2.3", "ISO")), ("X1", _hd("", "9.8.7", "ISO"))}),
    ("X1^^^A^MR~X2^^^B^MR", MappingConfig(patient_id_authority="B"), {("X2", _hd("B"))}),
    # Without an assigning authority, the sending facility issued the number.
    ("X1~\"\"", MappingConfig(), {("X1", FACILITY)}),
])
def test_patient_identities_are_every_identifier_with_its_authority(
        pid3: str, config: MappingConfig, expected: set[tuple[str, Authority]]) -> None:
    second_patient = [segment("PID", {1: "2", 3: "MRN777^^^B^MR"}),
                      segment("OBR", {1: "2", 3: "FIL2", 4: "71250^CT CHEST^C4", 7: "20240301113000"}),
                      obx(1, "Normal.")]
    text = oru(pid={3: pid3}, extra_groups=[second_patient])
    assert [r.obr_index for r in map_oru(text, config)] == [1, 2]
    assert patient_identities(text, config) == {1: expected, 2: {("MRN777", _hd("B"))}}
    # Without PID-3, the identifier the mapping falls back to.
    assert patient_identities(oru(pid={2: "EXT7", 3: ""})) == {1: {("EXT7", FACILITY)}}
    assert patient_identities(oru(pid={3: ""})) == {}  # no identifier: left out, not an error
    with pytest.raises(UnsupportedMessage):
        patient_identities(oru().replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"))
    # MSH-4 as an HD with its universal id; no MSH-4 at all: an unknown authority.
    hd_facility = oru(pid={3: "X1"}).replace("|GENERAL HOSPITAL|", "|GH^2.16.840.1^ISO|", 1)
    assert patient_identities(hd_facility) == {1: {("X1", _hd("GH", "2.16.840.1", "ISO"))}}
    no_facility = oru(pid={3: "X1"}).replace("|GENERAL HOSPITAL|", "||", 1)
    assert patient_identities(no_facility) == {1: {("X1", _hd(""))}}


def test_an_ampersand_in_an_authority_name_is_part_of_the_name_not_a_separator() -> None:
    # "BARNES&JEWISH" is sent escaped (\\T\\): it was split into a namespace and a
    # universal id, and so no longer matched the same hospital named by its OID alone,
    # nor MSH-4 (which was not unescaped at all) for an identifier sent without one.
    from mappings.authority import same_identity

    def identities(pid3: str, facility: str = "GENERAL HOSPITAL") -> set:
        text = oru(pid={3: pid3}).replace("|GENERAL HOSPITAL|", f"|{facility}|", 1)
        return set(patient_identities(text)[1])

    named = identities("X1^^^BARNES\\T\\JEWISH&1.2.3&ISO^MR")
    assert named == {("X1", _hd("BARNES&JEWISH", "1.2.3", "ISO"))}
    by_oid = identities("X1^^^&1.2.3&ISO^MR")
    bare = identities("X1", facility="BARNES\\T\\JEWISH")
    assert bare == {("X1", _hd("BARNES&JEWISH"))}
    for one_way, other_way in ((named, by_oid), (named, bare)):
        assert same_identity(next(iter(one_way)), next(iter(other_way)))
    # An identifier choice by authority reads the name the same way.
    config = MappingConfig(patient_id_authority="BARNES&JEWISH")
    text = oru(pid={3: "X1^^^EAST^MR~X2^^^BARNES\\T\\JEWISH^MR"})
    assert patient(one(text, config)).id == "X2"
    assert set(patient_identities(text, config)[1]) == {("X2", _hd("BARNES&JEWISH"))}


def test_an_msh4_written_with_subcomponents_is_read_as_its_hd() -> None:
    # Some senders write MSH-4 as CX-4 is written (GENHOSP&1.2.3&ISO): read as one name,
    # the same hospital's identifiers sent without an authority matched nothing.
    text = oru(pid={3: "X1"}).replace("|GENERAL HOSPITAL|", "|GENHOSP&1.2.3&ISO|", 1)
    assert patient_identities(text) == {1: {("X1", _hd("GENHOSP", "1.2.3", "ISO"))}}


def test_an_indented_order_group_is_its_own_report() -> None:
    from mappings.decoding import decode_message
    from mappings.inbound import check_oru

    second = [" " + segment("OBR", {1: "2", 3: "FIL2", 4: "71250^CT CHEST^C4", 7: "20240301113000"}),
              " " + obx(1, "Large right pneumothorax.")]
    text = decode_message(oru(extra_groups=[second]).encode()).text
    reports = map_oru(text)
    assert check_oru(text) == len(reports) == 2
    assert "pneumothorax" in reports[1].document_text and "pneumothorax" not in reports[0].document_text


def test_patient_identifier_falls_back_to_pid2_then_fails() -> None:
    assert patient(one(oru(pid={2: "EXT7", 3: ""}))).id == "EXT7"
    with pytest.raises(ContentError) as info:
        map_oru(oru(pid={3: ""}))
    assert (info.value.err_code, info.value.location) == ("101", "PID-3")


@pytest.mark.parametrize(("pid7", "expected", "warned"), [
    ("19600215", "1960-02-15", False),
    ("196002151230", "1960-02-15", False),
    ("19600215235959+0200", "1960-02-15", False),
    ("19600215000000.123-0500", "1960-02-15", False),
    ("196002", "1960-02", False),
    ("1960", "1960", False),
    ("19600230", None, True),
    ("19610229", None, True),
    ("196203520", None, True),
    ("Feb 15 1960", None, True),
    ("", None, False),
])
def test_birth_date(pid7: str, expected: str | None, warned: bool) -> None:
    report = one(oru(pid={7: pid7}))
    details = patient(report).details
    assert (details.birth_date if details else None) == expected
    assert ("PID-7 is not a valid date" in report.warnings) is warned


@pytest.mark.parametrize(("pid8", "expected"), [
    ("F", "female"), ("M", "male"), ("O", "unspecified"), ("U", "unspecified"), ("A", "unspecified"),
    ("N", "unspecified"), ("f", "female"), ("FEMALE", "female"), ("Male", "male"), ("W", "female"),
    ("2", "female"), ("1", "male"), ("Q", "unspecified"), ("", None),
])
def test_sex(pid8: str, expected: str | None) -> None:
    details = patient(one(oru(pid={8: pid8, 7: ""}))).details
    assert (details.sex if details else None) == expected


def test_sex_local_variant_configured() -> None:
    config = MappingConfig.from_dict({"sex_map": {"k": "female"}})
    assert patient(one(oru(pid={8: "K"}), config)).details.sex == "female"


@pytest.mark.parametrize(("pv1_2", "expected"), [
    ("I", "inpatient"), ("O", "ambulatory"), ("E", "emergency"), ("R", "ambulatory"),
    ("OBS", "observation"), ("VR", "virtual"), ("HH", "healthHome"), ("P", None), ("", None),
])
def test_encounter_class(pv1_2: str, expected: str | None) -> None:
    assert patient(one(oru(pv1={2: pv1_2}))).encounters[0].class_ == expected


def test_encounter_without_pv1_uses_account_then_accession_and_observation_time() -> None:
    enc = patient(one(oru(with_pv1=False))).encounters[0]
    assert enc.to_json() == {"id": "ACCT9", "period": {"start": "2024-03-01T11:30:00"}}
    enc = patient(one(oru(with_pv1=False, pid={18: ""}))).encounters[0]
    assert enc.id == "ACC1"
    config = MappingConfig(encounter_id_sources=("control_id",), encounter_period_from_observation=False)
    assert patient(one(oru(with_pv1=False), config)).encounters[0].to_json() == {"id": "MSG0001"}


def test_visit_number_component_and_time_zone() -> None:
    enc = patient(one(oru(pv1={19: "V77^^^HOSP^VN", 44: "202403010800+0100", 45: ""}))).encounters[0]
    assert enc.to_json() == {"id": "V77", "period": {"start": "2024-03-01T08:00:00+01:00"}, "class": "inpatient"}


@pytest.mark.parametrize(("obr4", "coding"), [
    ("24627-2^CT CHEST^LN", [{"system": "http://loinc.org", "code": "24627-2", "display": "CT CHEST"}]),
    ("70460^CT HEAD W CONTRAST^CPT", [{"system": "http://www.ama-assn.org/go/cpt", "code": "70460",
                                       "display": "CT HEAD W CONTRAST"}]),
    ("CTH1^CT HEAD^L", [{"code": "CTH1", "display": "CT HEAD"}]),
    ("CTH1^CT HEAD^L^70450^CT head wo^C4", [
        {"code": "CTH1", "display": "CT HEAD"},
        {"system": "http://www.ama-assn.org/go/cpt", "code": "70450", "display": "CT head wo"}]),
    ("70553^MRI W/&W/O CONTRAST^CPT", [{"system": "http://www.ama-assn.org/go/cpt", "code": "70553",
                                        "display": "MRI W/&W/O CONTRAST"}]),
    ("70553^MRI W\\T\\WO^CPT", [{"system": "http://www.ama-assn.org/go/cpt", "code": "70553",
                                 "display": "MRI W&WO"}]),
])
def test_ordered_procedure_coding(obr4: str, coding: list[dict]) -> None:
    (procedure,) = document(one(oru(obr={4: obr4}))).administrative_metadata.ordered_procedures
    assert procedure.code.to_json() == {"coding": coding}
    assert procedure.description == coding[0]["display"]


def test_local_coding_system_configured() -> None:
    config = MappingConfig.from_dict({"coding_systems": {"L": "http://hospital.example/ris"}})
    (procedure,) = document(one(oru(obr={4: "CTH1^CT HEAD^L"}), config)).administrative_metadata.ordered_procedures
    assert procedure.code.coding[0].system == "http://hospital.example/ris"


def test_empty_obr4_is_a_warning_not_an_error() -> None:
    report = one(oru(obr={4: ""}))
    assert document(report).administrative_metadata.ordered_procedures is None
    assert report.warnings == ("OBR-4 universal service identifier is empty",)


@pytest.mark.parametrize(("obr", "config", "expected"), [
    ({}, MappingConfig(), "ACC1"),
    ({18: ""}, MappingConfig(), "FIL1"),
    ({18: "", 3: ""}, MappingConfig(), "FIL1"),  # ORC-3
    ({}, MappingConfig(accession_sources=("ORC-3", "OBR-18")), "FIL1"),
    ({18: "", 3: ""}, MappingConfig(accession_sources=("OBR-18",)), None),
])
def test_accession_choice(obr: dict, config: MappingConfig, expected: str | None) -> None:
    assert one(oru(obr=obr), config).accession == expected


def test_document_id_without_accession_or_orders() -> None:
    text = oru(obr={2: "", 3: "", 18: ""}).replace("ORC|RE|PLC1|FIL1", "ORC|RE")
    report = one(text)
    assert (report.accession, document(report).id) == (None, "MSG0001-1")


@pytest.mark.parametrize(("obr", "config", "expected"), [
    ({}, MappingConfig(), "2024-03-01T11:30:00"),
    ({}, MappingConfig(created_at_sources=("OBR-22", "OBR-7")), "2024-03-01T12:00:00"),
    ({7: "202403011130-0500"}, MappingConfig(), "2024-03-01T11:30:00-05:00"),
    ({7: "20240301"}, MappingConfig(), "2024-03-01T00:00:00"),
    ({7: "", 22: ""}, MappingConfig(), "2024-03-01T12:00:00"),  # MSH-7
])
def test_created_at(obr: dict, config: MappingConfig, expected: str) -> None:
    assert document(one(oru(obr=obr), config)).created_at == expected


def test_created_at_missing_everywhere() -> None:
    with pytest.raises(ContentError) as info:
        map_oru(oru(obr={7: "", 22: ""}), MappingConfig(created_at_sources=("OBR-7",)))
    assert (info.value.err_code, info.value.location) == ("101", "OBR-7")


@pytest.mark.parametrize(("obr", "expected"), [
    ({24: "CT"}, "CT"), ({24: "NMR"}, "MR"), ({24: "US"}, "US"), ({24: "RAD"}, "XR"),
    ({24: "", 4: "CTH1^CT HEAD^L"}, None),
])
def test_modality_hint(obr: dict, expected: str | None) -> None:
    assert one(oru(obr=obr)).modality_hint == expected


def test_authors_and_ordering_provider_fallback() -> None:
    report = one(oru(obr={16: "", 32: "11&ONE&ANN~22&TWO&BOB^20240301"}))
    assert [a.to_json() for a in document(report).authors] == [
        {"id": "11", "fullName": "ANN ONE"}, {"id": "22", "fullName": "BOB TWO"}]
    assert report.ordering_provider is None
    text = oru(obr={16: ""}).replace("ORC|RE|PLC1|FIL1", "ORC|RE|PLC1|FIL1|||||||||99^ORDER^OLLIE")
    assert one(text).ordering_provider == Person("99", "ORDER", "OLLIE", raw="99^ORDER^OLLIE")


@pytest.mark.parametrize(("obr25", "obx11", "config", "status", "analyse", "reason"), [
    ("F", "F", MappingConfig(), "F", True, None),
    ("C", "C", MappingConfig(), "C", True, None),
    ("P", "P", MappingConfig(), "P", False, "result status P is not analysed"),
    ("", "P", MappingConfig(), "P", False, "result status P is not analysed"),
    ("", "", MappingConfig(), "F", True, None),
    ("", "", MappingConfig(missing_status=None), None, False, "result status (none) is not analysed"),
    ("P", "P", MappingConfig(analyse_statuses=("F", "C", "P")), "P", True, None),
])
def test_result_status(obr25, obx11, config, status, analyse, reason) -> None:
    report = one(oru(obr={25: obr25}, body=[obx(1, "text", status=obx11)]), config)
    assert (report.result_status, report.analyse, report.skip_reason) == (status, analyse, reason)


@pytest.mark.parametrize(("obr4", "obr15", "expected"), [
    ("26688-1^US BREAST - LEFT LIMITED^LN", "", ProcedureInfo(
        "US", "breast", "left", None, "table:ri_contract.md / ri_doc_samples.json (RI documentation examples)")),
    ("XRKNEE^XR KNEE RT 3 VIEWS^L", "", ProcedureInfo(None, None, "right", None, "order")),
    ("XRHAND^XR HAND^L", "^^^HAND^L", ProcedureInfo(None, "HAND", None, None, "order")),
    ("XRHAND^XR HAND^L", "", None),
])
def test_procedure_laterality_and_body_site(obr4: str, obr15: str, expected) -> None:
    assert one(oru(obr={4: obr4, 15: obr15})).procedure == expected


def test_multiple_order_groups_one_request_each() -> None:
    second = [segment("ORC", {1: "RE", 2: "PLC2", 3: "FIL2"}),
              segment("OBR", {1: "2", 2: "PLC2", 3: "FIL2", 4: "74177^CT ABD PELVIS W^C4", 7: "20240301120000",
                              18: "ACC2", 25: "F"}),
              obx(1, "Second report.")]
    third = [segment("OBR", {1: "3", 3: "FIL3", 4: "71045^XR CHEST^C4", 7: "20240301120000", 25: "F"})]
    reports = map_oru(oru(extra_groups=[second, third]))
    assert [(r.obr_index, r.accession, r.analyse, r.skip_reason, r.document_text) for r in reports] == [
        (1, "ACC1", True, None, "No acute disease."),
        (2, "ACC2", True, None, "Second report."),
        (3, "FIL3", False, "no report text", ""),
    ]
    assert reports[1].procedure.modality == "CT"


@pytest.mark.parametrize(("text", "code", "location"), [
    (oru(with_pid=False), "100", "PID"),
    ("\r".join(oru().split("\r")[:3]), "100", "OBR"),
    (oru(body=[]), "101", "OBX-5"),
    (oru(body=[obx(1, "4.5", "NM")]), "101", "OBX-5"),
    (oru(body=[obx(1, "", "TX"), obx(2, "  ", "TX")]), "101", "OBX-5"),
])
def test_content_errors(text: str, code: str, location: str) -> None:
    with pytest.raises(ContentError) as info:
        map_oru(text)
    assert (info.value.err_code, info.value.location) == (code, location)


def test_non_oru_is_unsupported() -> None:
    with pytest.raises(UnsupportedMessage) as info:
        map_oru(oru().replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"))
    assert info.value.err_code == "200"


def test_oru_without_trigger_maps() -> None:
    assert one(oru(version="2.3").replace("ORU^R01^ORU_R01", "ORU")).document_text == "No acute disease."


def test_batch_envelope_and_second_message_ignored() -> None:
    text = "BHS|^~\\&|X\r" + oru() + "\r" + oru(body=[obx(1, "other message")]) + "\rBTS|2"
    assert one(text).document_text == "No acute disease."


def test_validation_levels() -> None:
    valid = oru()
    assert one(valid, MappingConfig(validation="strict")).warnings == ()
    broken = valid.replace("OBX|1|TX|", "OBX|A1|TX|")  # OBX-1 is SI: digits only
    assert one(broken).warnings == ()  # no hl7apy on the default path
    assert one(broken, MappingConfig(validation="lenient")).warnings == ()
    with pytest.raises(ContentError) as info:
        map_oru(broken, MappingConfig(validation_by_facility={"GENERAL HOSPITAL": "strict"}))
    assert (info.value.err_code, info.value.location, info.value.message) == (
        "102", "OBX-1", "OBX-1 does not validate against HL7 v2.5.1 (ValueError)")
    assert one(broken, MappingConfig(validation_by_facility={"OTHER": "strict"})).warnings == ()


def test_lenient_validation_problem_is_a_warning() -> None:
    report = one(oru(version="2.9"), MappingConfig(validation="lenient"))
    assert report.warnings == ("message does not validate against its HL7 structure (UnsupportedVersion)",)
    assert report.analyse is True
