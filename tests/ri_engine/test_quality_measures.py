"""qualityMeasure: the product seed, the documentation example, every compliance outcome."""

from __future__ import annotations

import re

import pytest
from request_builder import analyse, build_request, doc_sample, request_from_sample, seed_request, stripped

from ri_engine.inferences.quality_measures import report_text
from ri_engine.models import RadiologyInsightsData

CT_CHEST = [{"system": "http://loinc.org", "code": "24627-2", "display": "CT CHEST"}]
ADULT = "1960-03-01"


def _measures(text: str, types: list[str], *, procedures=CT_CHEST, birth_date: str | None = ADULT) -> list[tuple]:
    data = build_request(text, procedures=procedures, birth_date=birth_date,
                         inference_options={"qualityMeasureOptions": {"measureTypes": types}})
    return [(i.quality_measure_denominator, i.compliance_type, i.quality_criteria)
            for i in analyse(data, "qualityMeasure")]


def test_product_seed_returns_exactly_the_three_measures() -> None:
    request, response = seed_request()
    data = RadiologyInsightsData.from_request_json(request)
    expected = response["result"]["patientResults"][0]["inferences"]
    assert expected == [stripped(i) for i in analyse(data, "qualityMeasure")]


def test_documentation_example() -> None:
    sample = doc_sample("docs_quality_measure")
    assert sample["expected"] == [stripped(i) for i in analyse(request_from_sample(sample), "qualityMeasure")]


def test_without_options_no_measure_is_evaluated() -> None:
    data = build_request("CT chest. 5 mm right upper lobe nodule.", procedures=CT_CHEST)
    assert [] == analyse(data, "qualityMeasure")


def test_output_follows_measure_types_order() -> None:
    text = "Helical CT with iterative reconstruction. No pulmonary nodules."
    assert [("DOSE LOWERING TECHNIQUE", "performanceMet", ["ITERATIVE RECONSTRUCTION"]),
            ("INCIDENTAL PULMONARY NODULE", "notEligible", None)] == _measures(text, ["mips436", "mips364"])


@pytest.mark.parametrize(("text", "compliance", "criteria"), [
    ("A new 5 mm right upper lobe nodule. No follow-up needed per Fleischner.", "performanceMet",
     ["APPROPRIATE FOLLOW-UP RECOMMENDATION"]),
    ("A new 7 mm nodule in the left lower lobe.", "performanceNotMet", None),
    ("Indication: unexplained fever.\nFindings: A new 7 mm nodule in the left lower lobe.", "denominatorException",
     ["UNEXPLAINED FEVER"]),
    ("The previously seen right upper lobe nodule is no longer seen.", "notEligible", None),
    ("History: known metastatic melanoma.\nFindings: A new 7 mm nodule in the left lower lobe.",
     "denominatorException", ["KNOWN MALIGNANCY"]),
    # The negation of the first clause stops before the nodule.
    ("No pleural effusion, with a new 7 mm nodule in the right upper lobe.", "performanceNotMet", None),
    ("No consolidation other than a new 7 mm nodule in the right upper lobe.", "performanceNotMet", None),
    # A relative's cancer is a risk factor, not the patient's malignancy.
    ("History: smoker, family history of lung cancer.\nFindings: A new 7 mm nodule in the left "
     "lower lobe.", "performanceNotMet", None),
    ("History: mother with history of breast cancer.\nFindings: A new 7 mm nodule in the left "
     "lower lobe.", "performanceNotMet", None),
])
def test_incidental_pulmonary_nodule(text: str, compliance: str, criteria: list[str] | None) -> None:
    assert [("INCIDENTAL PULMONARY NODULE", compliance, criteria)] == _measures(text, ["mips364"])


def test_pulmonary_nodule_measure_needs_age_35() -> None:
    text = "A new 7 mm nodule in the left lower lobe."
    assert [("INCIDENTAL PULMONARY NODULE", "notEligible", None)] == _measures(
        text, ["mips364"], birth_date="2000-01-01")


@pytest.mark.parametrize(("history", "compliance"), [
    ("HISTORY: Twenty-two-year-old woman with cough.", "notEligible"),
    ("HISTORY: 22 y/o woman with cough.", "notEligible"),
    ("HISTORY: Sixty-year-old woman with cough.", "performanceNotMet"),
])
def test_pulmonary_nodule_measure_reads_a_stated_age_without_a_birth_date(history: str, compliance: str) -> None:
    text = f"{history}\nFINDINGS: A new 7 mm nodule in the left lower lobe."
    [(denominator, found, _)] = _measures(text, ["mips364"], birth_date=None)
    assert ("INCIDENTAL PULMONARY NODULE", compliance) == (denominator, found)


def test_incidental_abdominal_lesion_is_an_inverse_measure() -> None:
    abdomen = [{"system": "http://loinc.org", "code": "72250-2", "display": "CT ABDOMEN"}]
    lesion = "A 4 mm hypodense lesion in the liver, too small to characterize."
    assert [("INCIDENTAL ABDOMINAL LESION", "performanceMet", ["NO FOLLOW-UP IMAGING RECOMMENDED"])] == \
        _measures(lesion, ["mips405"], procedures=abdomen)
    assert [("INCIDENTAL ABDOMINAL LESION", "performanceNotMet", ["FOLLOW-UP IMAGING RECOMMENDED"])] == \
        _measures(lesion + " Recommend follow-up MRI in 6 months.", ["mips405"], procedures=abdomen)
    assert [("INCIDENTAL ABDOMINAL LESION", "denominatorException", ["KNOWN MALIGNANCY"])] == \
        _measures("History of metastatic colon cancer. " + lesion + " Recommend follow-up MRI.",
                  ["mips405"], procedures=abdomen)
    assert [("INCIDENTAL ABDOMINAL LESION", "notEligible", None)] == \
        _measures("A 3 cm liver mass.", ["mips405"], procedures=abdomen)


def test_fluoroscopy_exposure_needs_indices_or_time_and_images() -> None:
    fluoro = [{"system": "http://loinc.org", "code": "x", "display": "FL ESOPHAGRAM"}]
    assert [("FLUOROSCOPIC RADIATION EXPOSURE", "performanceMet", ["EXPOSURE TIME", "NUMBER OF FLUOROGRAPHIC IMAGES"])] == \
        _measures("Fluoroscopy time 1.2 minutes. 6 spot images obtained.", ["mips145"], procedures=fluoro)
    assert [("FLUOROSCOPIC RADIATION EXPOSURE", "performanceNotMet", ["EXPOSURE TIME"])] == \
        _measures("Fluoroscopy time 1.2 minutes.", ["mips145"], procedures=fluoro)


ALL_TYPES = ["mips76", "mips147", "mips195", "mips360", "mips364", "mips405", "mips406", "mips436", "mips145",
             "acrad36", "acrad37", "acrad38", "acrad39", "acrad40", "acrad41", "acrad42", "mednax55", "msn13",
             "msn15", "qmm26", "qmm17", "qmm18", "qmm19"]


def test_every_contract_type_answers_and_an_absent_trigger_is_not_eligible() -> None:
    xray = [{"system": "http://loinc.org", "code": "x", "display": "XR HAND 3 VIEWS"}]
    result = _measures("Hand radiograph. No fracture.", ALL_TYPES, procedures=xray)
    assert len(ALL_TYPES) == len(result)
    assert {"notEligible"} == {compliance for _, compliance, _ in result}


def _proc(display: str) -> list[dict[str, str]]:
    return [{"system": "http://loinc.org", "code": "x", "display": display}]


@pytest.mark.parametrize(("measure", "exam", "text", "expected"), [
    ("acrad39", "CT ABDOMEN", "2 cm simple cyst in the left kidney. No follow-up imaging needed.",
     ("CYSTIC RENAL MASS", "performanceMet", ["NO FOLLOW-UP IMAGING RECOMMENDED"])),
    ("acrad39", "CT ABDOMEN", "2 cm simple cyst in the left kidney. Recommend follow-up ultrasound in 1 year.",
     ("CYSTIC RENAL MASS", "performanceNotMet", ["FOLLOW-UP IMAGING RECOMMENDED"])),
    ("acrad39", "CT ABDOMEN", "Von Hippel-Lindau disease. 2 cm simple left renal cyst. Recommend follow-up MRI.",
     ("CYSTIC RENAL MASS", "denominatorException", ["HEREDITARY RENAL CANCER SYNDROME"])),
    ("mednax55", "CT HEAD WO CONTRAST", "Indication: code stroke.\nFindings: ASPECTS 9. No hemorrhage.",
     ("NONCONTRAST CT HEAD FOR ACUTE STROKE", "performanceMet", ["ASPECTS"])),
    ("mednax55", "CT HEAD WO CONTRAST", "Indication: stroke.\nFindings: Acute left parietal intraparenchymal hemorrhage.",
     ("NONCONTRAST CT HEAD FOR ACUTE STROKE", "denominatorException", ["INTRACRANIAL HEMORRHAGE"])),
    ("mednax55", "CTA HEAD", "Indication: code stroke.\nFindings: Right M1 occlusion.",
     ("NONCONTRAST CT HEAD FOR ACUTE STROKE", "notEligible", None)),
    ("msn13", "CT CARDIAC CALCIUM SCORE", "Agatston score 80 in 2 vessels (LAD, RCA).",
     ("CORONARY CALCIUM SCORING", "performanceMet", ["CALCIUM SCORE", "REGIONAL DISTRIBUTION"])),
    ("msn13", "CT CARDIAC CALCIUM SCORE", "Agatston score 80.",
     ("CORONARY CALCIUM SCORING", "performanceNotMet", ["CALCIUM SCORE"])),
    ("msn15", "US THYROID", "Right lobe 1.5 cm solid hypoechoic nodule, TR4.",
     ("THYROID NODULE", "performanceMet", ["TI-RADS CATEGORY"])),
    ("qmm26", "US AORTA", "Abdominal aortic aneurysm 4.1 cm. Recommend follow-up ultrasound in 12 months.",
     ("ABDOMINAL AORTIC ANEURYSM SCREENING", "performanceMet", ["AORTIC DIAMETER", "FOLLOW-UP RECOMMENDATION"])),
    ("qmm26", "US AORTA", "Abdominal aortic aneurysm 4.1 cm.",
     ("ABDOMINAL AORTIC ANEURYSM SCREENING", "performanceNotMet", ["AORTIC DIAMETER"])),
    ("qmm17", "US PELVIS TRANSVAGINAL", "5 cm left ovarian cyst with a solid component. O-RADS US 4. "
     "Recommend gynecologic oncology consultation.",
     ("OVARIAN ADNEXAL LESION", "performanceMet", ["O-RADS CATEGORY", "FOLLOW-UP RECOMMENDATION"])),
    ("qmm18", "MG SCREENING BILATERAL", "Tyrer-Cuzick lifetime risk 24%. BI-RADS 1.",
     ("MAMMOGRAPHY", "performanceMet", ["BREAST CANCER RISK SCORE"])),
    ("qmm19", "DXA BONE DENSITY", "T-score -1.9. Osteopenia.", ("OSTEOPENIA", "performanceNotMet", None)),
])
def test_qcdr_measures(measure: str, exam: str, text: str, expected: tuple) -> None:
    assert [expected] == _measures(text, [measure], procedures=_proc(exam))


@pytest.mark.parametrize("text", [
    "", "\n", ".\n", "One.  Two!\tThree?\r\nFour\n\nFive. ", "a.\u2003b\u00a0. c", "No end",
    "HISTORY: cough.\nFINDINGS: Nodule 5 mm.  \n  IMPRESSION: stable.", "x.\n\n\ny",
])
def test_report_sentences_end_after_end_punctuation_and_whitespace_or_at_a_line_break(text: str) -> None:
    # The rule as first written: whitespace after ".", "!" or "?", or a line break.
    ends = [m.span() for m in re.finditer(r"(?<=[.!?])\s+|\n", text)]
    expected, pos = [], 0
    for start, end in [*ends, (len(text), len(text))]:
        if text[pos:start].strip():
            expected.append((pos, start, text[pos:start]))
        pos = end
    assert expected == [(s.start, s.end, s.text) for s in report_text(text).sentences]
