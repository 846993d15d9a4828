"""Rules from the second engine review (eval/corpus/review_probe2.jsonl): which finding a size
measures, sides written "left-sided" or only for an earlier study, paired organs labelled
once ("Renal: right ..., left ..."), organ measurements, planned or failed communication, a
refusal with an exception, exam titles that run body regions together, and filling defects
read by their vessel."""

from __future__ import annotations

import pytest

from request_builder import analyse, build_request, finding_sizes, finding_subject

CPT = "http://www.ama-assn.org/go/cpt"


def _findings(text: str, **kw: object) -> list[dict]:
    return [i.to_json()["finding"] for i in analyse(build_request(text, **kw), "finding")]


def _sizes_by_subject(text: str) -> dict[str, list[str]]:
    return {finding_subject(o): finding_sizes(o) for o in _findings(text)}


# --- sizes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    # A size written before a finding measures that finding, not the one before it.
    ("FINDINGS: A 3 cm liver cyst and a 1.1 cm right renal stone.",
     {"367643001": ["3c"], "56381008": ["1.1c"]}),
    ("FINDINGS: No pulmonary nodules, with a 2.1 cm adrenal nodule.",
     {"27925004": ["2.1c"]}),
    # A size of a device or of the study's sections is nobody's finding size.
    ("FINDINGS: The 10 mm drainage catheter terminates within the 4.5 cm abscess.",
     {"44132006": ["4.5c"]}),
    ("FINDINGS: On 1.25 mm thin sections, a 4 mm nodule is seen in the left upper lobe.",
     {"27925004": ["4m"]}),
    ("FINDINGS: Right middle lobe nodule is too small to characterize on these 5 mm images.",
     {"27925004": []}),
    # ... but a finding between the size and such a word keeps it.
    ("FINDINGS: A 6 mm nodule on image 45 of series 3.", {"27925004": ["6m"]}),
    ("FINDINGS: A 6 mm nodule abuts the chest tube.", {"27925004": ["6m"]}),
    # Sizes joined by "and" or given as previous stay with the finding they follow.
    ("FINDINGS: Left lower lobe nodule, previously 5 mm, now 8 mm.", {"27925004": ["prev:5m", "8m"]}),
    ("FINDINGS: Nodule measuring 5 mm, stable, and a 2 cm cyst.", {"27925004": ["5m"], "367643001": ["2c"]}),
    # A size written right after a finding is that finding's, even with another one next.
    ("FINDINGS: Cyst 2 cm nodule 5 mm.", {"367643001": ["2c"], "27925004": ["5m"]}),
    ("FINDINGS: Liver cyst (2 cm) and 5 mm renal stone.", {"367643001": ["2c"], "56381008": ["5m"]}),
    # "It measures" in the next sentence measures the one finding of the sentence before.
    ("FINDINGS: There is a cyst in the left kidney. It measures 1.8 cm.", {"367643001": ["1.8c"]}),
    ("FINDINGS: There is a cyst in the left kidney. It now measures 2 x 3 cm.", {"367643001": ["2c", "3c"]}),
    # ... not when that sentence holds two findings, or the next one names its own.
    ("FINDINGS: A cyst and a stone in the left kidney. It measures 1.8 cm.",
     {"367643001": [], "56381008": []}),
    ("FINDINGS: There is a renal cyst. The stone measures 4 mm.", {"367643001": []}),
])
def test_a_size_goes_to_the_finding_it_measures(text: str, expected: dict[str, list[str]]) -> None:
    assert {k: v for k, v in _sizes_by_subject(text).items() if k in expected} == expected


# --- laterality -----------------------------------------------------------------------------

def _laterality(text: str, display: str, code: str) -> list[str]:
    data = build_request(text, sex="male", procedures=[{"system": CPT, "code": code, "display": display}])
    out = []
    for i in analyse(data, "lateralityDiscrepancy"):
        j = i.to_json()
        side = (j.get("lateralityIndication") or {}).get("coding", [{}])[0].get("code", "-")
        out.append(f"{j['discrepancyType']}|{side}")
    return out


def test_left_sided_names_the_side_of_the_part_after_it() -> None:
    text = "FINDINGS: Acute nondisplaced fractures of the left-sided sixth and seventh ribs."
    assert _laterality(text, "XR RIBS RIGHT 2 VIEWS", "71100") == ["orderLateralityMismatch|7771000"]
    assert _laterality(text.replace("left-sided", "right-sided"), "XR RIBS RIGHT 2 VIEWS", "71100") == []


def test_a_side_named_only_for_the_comparison_leaves_the_exam_without_a_side() -> None:
    text = "COMPARISON: Left wrist radiographs from 2021.\n\nFINDINGS: No fracture."
    assert _laterality(text, "XR WRIST RIGHT 3 VIEWS", "73110") == ["textLateralityMissing|-"]
    # A side in the findings is this exam's.
    assert _laterality(text.replace("No fracture.", "Right wrist: no fracture."),
                       "XR WRIST RIGHT 3 VIEWS", "73110") == []
    # So is the side of the complaint in the indication.
    text = "INDICATION: Right wrist pain.\n\nFINDINGS: No fracture."
    assert _laterality(text, "XR WRIST RIGHT 3 VIEWS", "73110") == []


# --- complete / limited orders --------------------------------------------------------------

def _complete(text: str, code: str, display: str) -> list[dict]:
    data = build_request(text, sex="female", procedures=[{"system": CPT, "code": code, "display": display}])
    return [i.to_json() for i in analyse(data, "completeOrderDiscrepancy")]


ABDOMEN = ("FINDINGS: Liver normal. Gallbladder normal. CBD 3 mm. Pancreas normal. Spleen 10 cm. "
           "{kidneys} Aorta and IVC normal.\n\nIMPRESSION: Normal.")


@pytest.mark.parametrize("kidneys", [
    "Renal: right 10.2 cm, left 10.6 cm.", "Kidneys: normal, right 10 cm and left 11 cm.",
])
def test_a_paired_organ_labelled_once_with_both_sides_names_both(kidneys: str) -> None:
    assert _complete(ABDOMEN.format(kidneys=kidneys), "76700", "US ABDOMEN COMPLETE") == []


def test_a_paired_organ_label_with_one_side_names_that_side_only() -> None:
    produced = _complete(ABDOMEN.format(kidneys="Renal: stone on the left."), "76700", "US ABDOMEN COMPLETE")
    assert [[p["coding"][0]["code"] for p in i["missingBodyParts"]] for i in produced] == [["RID29662"]]


PELVIS = ("FINDINGS: {uterus} The endometrium measures 6 mm. The right ovary measures 3 x 2 x 2 cm. "
          "The left ovary measures 3 x 2 x 1 cm.\n\nIMPRESSION: Normal.")


@pytest.mark.parametrize(("uterus", "unmeasured"), [
    ("The uterus is anteverted. It measures 8 x 4 x 5 cm.", []),
    ("The uterus contains a 2 cm fibroid.", ["RID302"]),
    ("The uterus measures 8 x 4 x 5 cm and contains a 2 cm fibroid.", []),
])
def test_an_organ_is_measured_by_its_own_size(uterus: str, unmeasured: list[str]) -> None:
    produced = _complete(PELVIS.format(uterus=uterus), "76856", "US PELVIS COMPLETE")
    got = [c["coding"][0]["code"] for i in produced for c in i["missingBodyPartMeasurements"]]
    assert got == unmeasured


# --- communication --------------------------------------------------------------------------

def _communications(text: str) -> list[tuple[list[str], bool]]:
    return [(i.recipient, i.was_acknowledged)
            for i in analyse(build_request(text), "followupCommunication")]


@pytest.mark.parametrize("text", [
    "IMPRESSION: Appendicitis. Results will be discussed with Dr. Smith.",
    "IMPRESSION: Pneumothorax. Critical result notification was not possible; the ordering "
    "physician could not be reached.",
    "IMPRESSION: Pneumothorax. We were unable to reach Dr. Lee.",
    "IMPRESSION: Possible appendicitis. Please call Dr. Adams with questions.",
    "IMPRESSION: Known pneumothorax, previously communicated to Dr. Grant yesterday.",
])
def test_planned_failed_or_requested_communication_is_none(text: str) -> None:
    assert _communications(text) == []


@pytest.mark.parametrize(("text", "expected"), [
    # A planned, failed or requested act in one clause leaves the communication in another.
    ("IMPRESSION: Findings were discussed with Dr. Smith at 3 PM and will be discussed at tumor board.",
     [(["doctor"], True)]),
    ("IMPRESSION: The ED nurse could not be reached; findings were discussed with Dr. Lee at 3 PM.",
     [(["doctor"], True)]),
    ("IMPRESSION: Results were discussed with Dr. Smith, who will call the patient.", [(["doctor"], True)]),
    # ... and a clause without a verb still names who was told and that it was read back.
    ("IMPRESSION: Stroke team paged at 06:45; Dr. Osei acknowledged receipt.", [(["doctor"], True)]),
])
def test_communication_in_one_clause_and_a_plan_in_another(text: str, expected: list) -> None:
    assert _communications(text) == expected


def test_a_voice_message_left_is_a_communication_not_acknowledged() -> None:
    assert _communications("IMPRESSION: Pneumonia. A voice message was left for Dr. Jones at 10:15.") \
        == [(["doctor"], False)]
    assert _communications("IMPRESSION: Pneumonia. I left a voicemail for Dr. Jones.") == [(["doctor"], False)]


# --- recommendations ------------------------------------------------------------------------

def _recommendations(text: str) -> list[tuple[str, bool]]:
    data = build_request(text, procedures=[{"system": "http://loinc.org", "code": "24725-4",
                                            "display": "CT HEAD"}])
    out = []
    for i in analyse(data, "followupRecommendation"):
        j = i.to_json()
        modality = j["recommendedProcedure"]["imagingProcedures"][0]["modality"]["coding"][0]["code"]
        out.append((modality, j["isConditional"]))
    return out


def test_a_refusal_with_an_exception_recommends_what_the_exception_names() -> None:
    text = ("IMPRESSION: No acute abnormality. No further imaging is necessary unless symptoms "
            "persist, in which case MRI may be obtained.")
    assert _recommendations(text) == [("113091000", True)]
    # The refused procedure before the exception stays refused.
    text = "IMPRESSION: No follow-up CT is needed unless symptoms persist."
    assert _recommendations(text) == []
    # An exception that only names a study recommends nothing.
    text = "IMPRESSION: No further imaging is needed unless the next scheduled CT shows a change."
    assert _recommendations(text) == []


# --- radiology procedure --------------------------------------------------------------------

def test_an_exam_title_naming_abdomen_pelvis_gives_both_regions() -> None:
    data = build_request("EXAM: CT abdomen and pelvis with contrast.\n\nFINDINGS: Normal.",
                         procedures=[{"system": CPT, "code": "74177", "display": "CT ABDOMEN PELVIS W CONTRAST"}])
    produced = [i.to_json() for i in analyse(data, "radiologyProcedure")]
    anatomy = [p["anatomy"]["coding"][0]["display"] for p in produced[0]["imagingProcedures"]]
    assert len(anatomy) == 2 and anatomy[0] != anatomy[1]


# --- filling defects ------------------------------------------------------------------------

def _critical(text: str) -> list[str]:
    return [i.result.description for i in analyse(build_request(text), "criticalResult")]


@pytest.mark.parametrize(("text", "subjects", "critical"), [
    ("FINDINGS: Filling defects in the right lower lobe segmental pulmonary arteries.",
     ["59282003|present"], ["PULMONARY EMBOLISM"]),
    ("FINDINGS: Occlusive filling defect in the left common femoral vein.",
     ["128053003|present"], ["DEEP VEIN THROMBOSIS"]),
    ("FINDINGS: No filling defects in the pulmonary arteries.", ["59282003|absent"], []),
    # The sentence names the embolism itself: one finding, stated with its sign.
    ("FINDINGS: Filling defects in the lobar pulmonary arteries, consistent with pulmonary embolism.",
     ["59282003|present"], ["PULMONARY EMBOLISM"]),
    # Elsewhere a filling defect is no finding the engine codes.
    ("FINDINGS: Small filling defect in the left renal collecting system.", [], []),
    ("FINDINGS: Filling defect in the main portal vein.", [], []),
    ("FINDINGS: Filling defect in a segmental pulmonary artery, likely mixing artifact.", [], []),
])
def test_a_filling_defect_is_read_by_its_vessel(text: str, subjects: list[str], critical: list[str]) -> None:
    got = []
    for o in _findings(text):
        absent = any(i["coding"][0]["code"] == "260413007" for i in o.get("interpretation", []))
        got.append(f"{finding_subject(o)}|{'absent' if absent else 'present'}")
    assert got == subjects
    assert _critical(text) == critical
