"""Outbound ORU^R01 result and alert messages built from RI inferences (synthetic data)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import hl7
import pytest

from mappings.outbound import (
    Addressing, OutboundConfigError, OutboundFormat, OutboundMappingError, build_alert_oru,
    build_result_oru,
)
from mappings.outbound_copy import order_group
from ri_engine.models import (
    RADLEX, SNOMED, CodeableConcept, CriticalResult, CriticalResultInference, DocumentContent,
    FindingInference, FollowupCommunicationInference, FollowupRecommendationInference,
    ImagingProcedure, ImagingProcedureRecommendation, LOINC, Observation, ObservationComponent,
    PatientDocument, PatientRecord, Quantity, RadiologyInsightsData, RadiologyProcedureInference,
    OrderedProcedureRef, ScoringAndAssessmentInference, AssessmentValueRange, concept, coding,
    token_extension,
)

NOW = dt.datetime(2024, 1, 15, 10, 20, 0)
TEXT = "FINDINGS: Large right pneumothorax, 2.5 cm.\nIMPRESSION: Large right pneumothorax."
INBOUND = "\r".join([
    "MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115101500||ORU^R01|MSG0001|P|2.5.1",
    "PID|1||MRN123^^^HOSP^MR||DOE^JANE||19700101|F",
    "PV1|1|E|ED^1^2",
    "ORC|RE|PLC100|FIL200",
    "OBR|1|PLC100|FIL200|71045^XR CHEST 1V^C4|||20240115100000|||||||||1234^WELBY^MARCUS^^^DR||ACC999|||||||F|||||||5678&READER&RITA",
    "OBX|1|TX|18782-3^Findings^LN||FINDINGS: Large right pneumothorax, 2.5 cm.||||||F",
    "OBX|2|TX|19005-8^Impression^LN||IMPRESSION: Large right pneumothorax.||||||F",
    "",
])
HEAD = [
    "PID|1||MRN123^^^HOSP^MR||DOE^JANE||19700101|F",
    "PV1|1|E|ED^1^2",
    "ORC|RE|PLC100|FIL200",
    "OBR|1|PLC100|FIL200|71045^XR CHEST 1V^C4|||20240115100000|||||||||1234^WELBY^MARCUS^^^DR||ACC999|||||||F|||||||5678&READER&RITA",
]


@dataclass(frozen=True)
class SourceRef:
    segment_index: int
    obx_set_id: str | None
    obx_3: str


@dataclass(frozen=True)
class LineSources:
    """Offsets before the newline come from OBX 1, the rest from OBX 2."""

    split: int

    def source_of(self, offset: int) -> SourceRef:
        return SourceRef(5, "1", "18782-3") if offset < self.split else SourceRef(6, "2", "19005-8")


@dataclass(frozen=True)
class Report:
    request: RadiologyInsightsData
    obr_index: int = 1
    result_status: str | None = "F"
    source_map: object | None = None


def report(text: str = TEXT, **kw) -> Report:
    doc = PatientDocument(id="doc1", content=DocumentContent(value=text))
    data = RadiologyInsightsData(patients=[PatientRecord(id="MRN123", patient_documents=[doc])])
    return Report(request=data, **kw)


def span(text: str, word: str, start: int = 0) -> tuple[int, int]:
    at = text.index(word, start)
    return at, len(word)


def evidence(text: str, *words: str, start: int = 0):
    return [token_extension(*span(text, w, start), "doc1") for w in words]


PNEUMOTHORAX = CodeableConcept(coding=[coding(SNOMED, "36118008", "PNEUMOTHORAX"),
                                       coding(RADLEX, "RID5352", "pneumothorax")])


def pneumothorax_finding(interpretation=None) -> Observation:
    return Observation(
        resource_type="Observation", status="unknown",
        code=concept(SNOMED, "404684003", "CLINICAL FINDING (FINDING)"),
        interpretation=interpretation,
        component=[
            ObservationComponent(code=concept(SNOMED, "131195008", "SUBJECT OF INFORMATION"),
                                 value_codeable_concept=PNEUMOTHORAX),
            ObservationComponent(code=concept(SNOMED, "45651917", "LATERALITY"),
                                 value_codeable_concept=concept(SNOMED, "24028007", "RIGHT")),
            ObservationComponent(code=concept(SNOMED, "246115007", "SIZE"),
                                 value_quantity=Quantity(value=2.5, unit="CENTIMETER")),
        ])


def critical() -> CriticalResultInference:
    return CriticalResultInference(
        result=CriticalResult(description="PNEUMOTHORAX, NO EVIDENCE OF TENSION",
                              finding=pneumothorax_finding()),
        extension=evidence(TEXT, "pneumothorax", start=TEXT.index("IMPRESSION")))


def test_result_message_layout():
    finding = FindingInference(finding=pneumothorax_finding(),
                               extension=evidence(TEXT, "Large", "right", "pneumothorax"))
    rec = FollowupRecommendationInference(
        effective_at="2024-02-15",
        recommended_procedure=ImagingProcedureRecommendation(imaging_procedures=[ImagingProcedure(
            modality=concept(SNOMED, "168537006", "PLAIN RADIOGRAPHY"),
            anatomy=concept(SNOMED, "51185008", "THORACIC STRUCTURE"))]))
    msg = build_result_oru(INBOUND, report(source_map=LineSources(TEXT.index("\n"))),
                           [finding, critical(), rec], control_id="RI0001", now=NOW,
                           addressing=Addressing("EHR", "HOSP"))
    assert msg.control_id == "RI0001"
    assert msg.text.split("\r") == [
        "MSH|^~\\&|RI-GATEWAY|RIGW|EHR|HOSP|20240115102000||ORU^R01^ORU_R01|RI0001|P|2.5.1||||||UNICODE UTF-8",
        *HEAD,
        "OBX|1|CWE|RI-FIND^Finding^RIGW|1|36118008^PNEUMOTHORAX^SCT^RID5352^pneumothorax^RADLEX|||A|||F",
        "OBX|2|CWE|RI-SIDE^Laterality^RIGW|1|24028007^RIGHT^SCT||||||F",
        "OBX|3|NM|RI-SIZE^Size^RIGW|1|2.5|cm^CENTIMETER^UCUM|||||F",
        "OBX|4|TX|RI-EVID^Evidence^RIGW|1|Large right pneumothorax||||||F",
        "OBX|5|ST|RI-SRC^Source observation^RIGW|1|1||||||F",
        "OBX|6|CWE|RI-CRIT^Critical result^RIGW|2|36118008^PNEUMOTHORAX^SCT^RID5352^pneumothorax^RADLEX"
        "^^^PNEUMOTHORAX, NO EVIDENCE OF TENSION|||AA|||F||||||RID49480^ACR Category 1 Actionable Finding^RADLEX",
        "OBX|7|CWE|RI-SIDE^Laterality^RIGW|2|24028007^RIGHT^SCT||||||F",
        "OBX|8|NM|RI-SIZE^Size^RIGW|2|2.5|cm^CENTIMETER^UCUM|||||F",
        "OBX|9|TX|RI-EVID^Evidence^RIGW|2|pneumothorax||||||F",
        "OBX|10|ST|RI-SRC^Source observation^RIGW|2|2||||||F",
        "OBX|11|CWE|RI-FUREC^Follow-up recommendation^RIGW|3|168537006^PLAIN RADIOGRAPHY^SCT|||A|||F",
        "OBX|12|CWE|RI-ANAT^Anatomy^RIGW|3|51185008^THORACIC STRUCTURE^SCT||||||F",
        "OBX|13|DTM|RI-DUE^Follow-up due^RIGW|3|20240215||||||F",
        "",
    ]
    assert msg.payload() == msg.text.encode("utf-8")


def test_result_parses_and_carries_patient_accession_and_providers():
    msg = build_result_oru(INBOUND, report(), [critical()], control_id="RI0002", now=NOW)
    parsed = hl7.parse(msg.text)
    assert str(parsed.segment("PID")[3][0][0]) == "MRN123"
    obr = parsed.segment("OBR")
    assert (str(obr[2]), str(obr[3]), str(obr[18]), str(obr[25])) == ("PLC100", "FIL200", "ACC999", "F")
    assert str(obr[16]) == "1234^WELBY^MARCUS^^^DR"
    assert str(obr[32]) == "5678&READER&RITA"
    assert [str(o[3][0][0]) for o in parsed.segments("OBX")] == ["RI-CRIT", "RI-SIDE", "RI-SIZE", "RI-EVID"]


def test_negated_finding_is_flagged_normal():
    absent = FindingInference(finding=pneumothorax_finding(
        interpretation=[concept(SNOMED, "260413007", "NONE")]))
    msg = build_result_oru(INBOUND, report(), [absent], control_id="RI0003", now=NOW)
    obx = [s for s in msg.text.split("\r") if s.startswith("OBX")]
    assert obx[:2] == [
        "OBX|1|CWE|RI-FIND^Finding^RIGW|1|36118008^PNEUMOTHORAX^SCT^RID5352^pneumothorax^RADLEX|||N|||F",
        "OBX|2|CWE|RI-INTERP^Interpretation^RIGW|1|260413007^NONE^SCT||||||F",
    ]


def test_corrected_report_gives_status_c():
    msg = build_result_oru(INBOUND, report(result_status="C"), [critical()], control_id="X", now=NOW)
    assert {s.split("|")[11] for s in msg.text.split("\r") if s.startswith("OBX")} == {"C"}


def test_delimiters_in_values_are_escaped():
    nasty = CriticalResultInference(result=CriticalResult(description="A|B^C&D~E\\F\nG"))
    msg = build_result_oru(INBOUND, report(), [nasty], control_id="X", now=NOW)
    (obx,) = [s for s in msg.text.split("\r") if s.startswith("OBX")]
    assert obx.split("|")[5] == "^A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F G"
    assert str(hl7.parse(msg.text).segment("OBX")[5][0][1]) == "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F G"
    assert len(hl7.parse(msg.text).segment("OBX")) == 18  # structure intact: OBX-17 is the last


def test_score_range_procedure_and_loinc_codes():
    score = ScoringAndAssessmentInference(category="BIRADS", category_description="BI-RADS",
                                          range_value=AssessmentValueRange(minimum="4", maximum="5"))
    proc = RadiologyProcedureInference(
        procedure_codes=[concept(LOINC, "36554-4", "XR Chest Single view")],
        imaging_procedures=[ImagingProcedure(modality=concept(SNOMED, "168537006", "PLAIN RADIOGRAPHY"),
                                             anatomy=concept(SNOMED, "51185008", "THORACIC STRUCTURE"))],
        ordered_procedure=OrderedProcedureRef(description="XR CHEST 1V"))
    msg = build_result_oru(INBOUND, report(), [score, proc], control_id="X", now=NOW)
    assert [s for s in msg.text.split("\r") if s.startswith("OBX")] == [
        "OBX|1|CWE|RI-SCORE^Scoring and assessment^RIGW|1|BIRADS^BI-RADS^RIGW||||||F",
        "OBX|2|ST|RI-SCOREVAL^Score value^RIGW|1|4-5||||||F",
        "OBX|3|CWE|RI-PROC^Radiology procedure^RIGW|2|36554-4^XR Chest Single view^LN||||||F",
        "OBX|4|CWE|RI-MOD^Modality^RIGW|2|168537006^PLAIN RADIOGRAPHY^SCT||||||F",
        "OBX|5|CWE|RI-ANAT^Anatomy^RIGW|2|51185008^THORACIC STRUCTURE^SCT||||||F",
    ]


def test_alert_carries_only_given_inferences_and_the_communicated_mark():
    comm = FollowupCommunicationInference(recipient=["doctor"],
                                          communicated_at=["2024-01-15T10:10:00"],
                                          was_acknowledged=True)
    msg = build_alert_oru(INBOUND, report(), [critical()], control_id="AL1", now=NOW,
                          addressing=Addressing("PAGER", "HOSP"), communicated=comm)
    assert msg.text.split("\r")[5:] == [
        "OBX|1|CWE|RI-CRIT^Critical result^RIGW|1|36118008^PNEUMOTHORAX^SCT^RID5352^pneumothorax^RADLEX"
        "^^^PNEUMOTHORAX, NO EVIDENCE OF TENSION|||AA|||F||||||RID49480^ACR Category 1 Actionable Finding^RADLEX",
        "OBX|2|CWE|RI-SIDE^Laterality^RIGW|1|24028007^RIGHT^SCT||||||F",
        "OBX|3|NM|RI-SIZE^Size^RIGW|1|2.5|cm^CENTIMETER^UCUM|||||F",
        "OBX|4|TX|RI-EVID^Evidence^RIGW|1|pneumothorax||||||F",
        "OBX|5|CWE|COMMUNICATED^Already communicated^RIGW|2|Y^Yes^HL70136||||||F",
        "NTE|1|L|Already documented as communicated in the report; to doctor; at 2024-01-15T10:10:00; acknowledged",
        "",
    ]
    assert msg.text.split("\r")[0].split("|")[4:6] == ["PAGER", "HOSP"]


MULTI = "\r".join([
    "MSH|^~\\}|RIS|HOSP|||20240115||ORU^R01|M2|T|2.3",
    "PID|1||P1^^^A}B||ONE^PAT",
    "OBR|1|PA|FA|CT1^CT HEAD",
    "OBX|1|TX|X||one & two",
    "PID|2||P2||TWO^PAT",
    "PV1|1|O",
    "ORC|RE|PB|FB",
    "OBR|2|PB|FB|CT2^CT CHEST",
    "OBX|1|TX|X||three",
])


def test_second_order_group_with_nonstandard_delimiters():
    group = order_group(MULTI, 2)
    assert group.patient == ("PID|2||P2||TWO^PAT",)
    assert group.visit == ("PV1|1|O",)
    assert group.order == "ORC|RE|PB|FB"
    assert group.observation_request == "OBR|2|PB|FB|CT2^CT CHEST"
    assert group.processing_id == "T"
    first = order_group(MULTI, 1)
    # "}" was the sub-component separator: it becomes "&"; the literal "&" of the
    # inbound (plain data there) would be escaped.
    assert first.patient == ("PID|1||P1^^^A&B||ONE^PAT",)
    assert first.order is None
    msg = build_result_oru(MULTI, report(obr_index=2), [], control_id="X", now=NOW)
    assert msg.text.split("\r")[1:5] == ["PID|2||P2||TWO^PAT", "PV1|1|O", "ORC|RE|PB|FB",
                                         "OBR|1|PB|FB|CT2^CT CHEST"]
    assert msg.text.split("\r")[0].split("|")[10] == "T"


def test_missing_obr_group_is_a_mapping_error():
    with pytest.raises(OutboundMappingError, match="no OBR number 3"):
        build_result_oru(MULTI, report(obr_index=3), [], control_id="X", now=NOW)


def test_format_configuration_overrides_identifiers_and_names_bad_keys():
    fmt = OutboundFormat.from_dict({"sending_application": "RIGW-TEST", "local_system": "L",
                                    "identifiers": {"criticalResult": "CRIT^Critical^99LOCAL"}})
    msg = build_result_oru(INBOUND, report(), [critical()], control_id="X", now=NOW, fmt=fmt)
    lines = msg.text.split("\r")
    assert lines[0].split("|")[2] == "RIGW-TEST"
    assert lines[5].split("|")[3] == "CRIT^Critical^99LOCAL"
    assert lines[6].split("|")[3] == "RI-SIDE^Laterality^L"
    for bad, key in [({"charset": "EBCDIC"}, "outbound.charset"),
                     ({"identifiers": {"criticalResult": "ONLYCODE"}}, "outbound.identifiers.criticalResult"),
                     ({"identifiers": {"nope": "A^B^C"}}, "outbound.identifiers.nope"),
                     ({"sending_facility": "A|B"}, "outbound.sending_facility"),
                     ({"colour": "red"}, "outbound.colour")]:
        with pytest.raises(OutboundConfigError) as info:
            OutboundFormat.from_dict(bad)
        assert info.value.key == key


def test_latin1_charset_is_declared_and_used():
    fmt = OutboundFormat.from_dict({"charset": "8859/1"})
    nasty = CriticalResultInference(result=CriticalResult(description="ÉPANCHEMENT"))
    msg = build_result_oru(INBOUND, report(), [nasty], control_id="X", now=NOW, fmt=fmt)
    assert msg.text.split("\r")[0].endswith("|8859/1")
    assert "ÉPANCHEMENT".encode("latin-1") in msg.payload()


def test_with_the_inbound_mapping_the_source_reference_names_the_report_obx():
    from mappings.inbound import map_oru

    (mapped,) = map_oru(INBOUND)
    doc = mapped.document_text
    at = doc.index("pneumothorax", doc.index("IMPRESSION"))
    inf = CriticalResultInference(result=CriticalResult(description="PNEUMOTHORAX"),
                                  extension=[token_extension(at, len("pneumothorax"), "doc1")])
    msg = build_result_oru(INBOUND, mapped, [inf], control_id="X", now=NOW)
    assert [s for s in msg.text.split("\r") if s.startswith("OBX")][-2:] == [
        "OBX|2|TX|RI-EVID^Evidence^RIGW|1|pneumothorax||||||F",
        "OBX|3|ST|RI-SRC^Source observation^RIGW|1|2||||||F",
    ]
    assert msg.text.split("\r")[1:5] == HEAD
