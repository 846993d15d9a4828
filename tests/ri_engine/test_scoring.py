"""scoringAndAssessment: every category, spelling variants, ranges, evidence."""

from __future__ import annotations

import pytest
from request_builder import analyse, build_request, doc_sample, request_from_sample, stripped

from ri_engine.inferences.scoring import category_names, find_scores
from ri_engine.models import token_spans


def test_documentation_example() -> None:
    sample = doc_sample("docs_scoring_and_assessment")
    assert sample["expected"] == [stripped(i) for i in analyse(request_from_sample(sample), "scoringAndAssessment")]


EXAMPLES = [
    ("BI-RADS 4A", "BIRADS", "4A"),
    ("BIRADS category: 2 - benign", "BIRADS", "2"),
    ("Overall BI-RADS assessment category 0: incomplete.", "BIRADS", "0"),
    ("Lung-RADS 3", "LUNG-RADS", "3"),
    ("Lung-RADS v2022 category 4B", "LUNG-RADS", "4B"),
    ("Left lobe nodule, TR4.", "TI-RADS", "4"),
    ("TIRADS 2", "TI-RADS", "2"),
    ("ACR TI-RADS category TR5", "TI-RADS", "5"),
    ("Agatston score of 120", "AGATSTON SCORE", "120"),
    ("Coronary calcium score (Agatston) 1,250", "AGATSTON SCORE", "1250"),
    ("Calcium volume score 45", "CALCIUM VOLUME SCORE", "45"),
    ("Calcium mass score 12.5", "CALCIUM MASS SCORE", "12.5"),
    ("Total calcium score: 88", "CALCIUM SCORE (UNSPECIFIED)", "88"),
    ("The T-score is -2.6.", "T-SCORE", "-2.6"),
    ("Z-score: -1.1", "Z-SCORE", "-1.1"),
    ("LI-RADS category LR-4", "LI-RADS", "4"),
    ("7 mm observation, LR-M.", "LI-RADS", "M"),
    ("CEUS LR-3", "CEUS LI-RADS", "3"),
    ("Treated lesion is LR-TR viable.", "TREATMENT RESPONSE LI-RADS", "VIABLE"),
    ("US LI-RADS category US-2", "US LI-RADS", "2"),
    ("Visualization score VIS-B", "US LI-RADS VISUALIZATION SCORE", "B"),
    ("PI-RADS v2.1 score 4", "PI-RADS", "4"),
    ("O-RADS US 3", "O-RADS", "3"),
    ("O-RADS MRI 4", "O-RADS MRI", "4"),
    ("CAD-RADS 4A", "CAD-RADS", "4A"),
    ("NI-RADS 2a", "NI-RADS", "2A"),
    ("C-RADS C2", "C-RADS COLONIC FINDINGS", "2"),
    ("C-RADS E3", "C-RADS EXTRACOLONIC FINDINGS", "3"),
    ("Bosniak IIF cyst", "BOSNIAK", "IIF"),
    ("ASPECTS of 8", "ALBERTA STROKE PROGRAM EARLY CT SCORE", "8"),
    ("FRAX 10-year probability of major osteoporotic fracture is 12%", "FRAX SCORE", "12"),
    ("Lifetime risk of breast cancer of 22%", "LIFETIME BREAST CANCER RISK", "22"),
    ("10-year ASCVD risk 7.5%", "ASCVD RISK", "7.5"),
    ("Modified Gail model 5-year risk 1.9%", "MODIFIED GAIL MODEL RISK", "1.9"),
    ("Tyrer-Cuzick lifetime risk 24%", "TYRER CUSICK MODEL RISK", "24"),
    ("10-year CHD risk 8%", "10 YEAR CHD RISK", "8"),
    ("10-year CHD risk (observed age) 4%", "10 YEAR CHD RISK (OBSERVED AGE)", "4"),
    ("10-year CHD risk based on arterial age 6%", "10 YEAR CHD RISK (ARTERIAL AGE)", "6"),
    ("RMI 250", "RISK OF MALIGNANCY INDEX", "250"),
    ("HNPCC mutation risk 5%", "HNPCC MUTATION RISK", "5"),
    ("Kellgren-Lawrence grade III", "KELLGREN-LAWRENCE GRADING SCALE", "3"),
    ("Tonnis grade 1", "TONNIS CLASSIFICATION", "1"),
]


@pytest.mark.parametrize(("text", "category", "value"), EXAMPLES)
def test_spelling_variants(text: str, category: str, value: str) -> None:
    assert [(category, value, None)] == [(m.category, m.value, m.maximum) for m in find_scores(text)]


def test_every_category_has_an_example() -> None:
    assert set(category_names()) == {category for _, category, _ in EXAMPLES}


def test_range_becomes_range_value() -> None:
    [inference] = analyse(build_request("PI-RADS 3-4 lesion in the left peripheral zone."), "scoringAndAssessment")
    assert {"kind": "scoringAndAssessment", "category": "PI-RADS",
            "categoryDescription": "PROSTATE IMAGING REPORTING AND DATA SYSTEM",
            "rangeValue": {"minimum": "3", "maximum": "4"}} == stripped(inference)


@pytest.mark.parametrize(("text", "expected"), [
    # One score given as alternatives is a range, as "3-4" is.
    ("PI-RADS 2 or 3 lesion in the left peripheral zone.", [("PI-RADS", "2", "3")]),
    ("Right breast mass, BI-RADS 4A and 4B.", [("BIRADS", "4A", "4B")]),
    ("TI-RADS 3 to 4", [("TI-RADS", "3", "4")]),
    ("Bosniak IIF or III cyst.", [("BOSNIAK", "IIF", "III")]),
    # Not alternatives: a size after "and", or a second system named.
    ("BI-RADS 4 and 2 cm mass", [("BIRADS", "4", None)]),
    ("Right breast: BI-RADS 2 and left breast: BI-RADS 4.", [("BIRADS", "2", None), ("BIRADS", "4", None)]),
])
def test_alternative_values_of_one_score(text: str, expected: list[tuple]) -> None:
    assert expected == [(m.category, m.value, m.maximum) for m in find_scores(text)]


@pytest.mark.parametrize(("text", "expected"), [
    # A list of scores of one system: one assessment per value (two lesions, two breasts).
    ("IMPRESSION: BI-RADS 2 and 4.", [("BIRADS", "2", None), ("BIRADS", "4", None)]),
    ("Bilateral: BI-RADS 1 and 2.", [("BIRADS", "1", None), ("BIRADS", "2", None)]),
    ("BI-RADS 2, 3 and 4 for the three masses.", [("BIRADS", "2", None), ("BIRADS", "3", None),
                                                  ("BIRADS", "4", None)]),
    ("BI-RADS 4A and 4B, respectively.", [("BIRADS", "4A", None), ("BIRADS", "4B", None)]),
    ("Lung-RADS 2 and 4A nodules.", [("LUNG-RADS", "2", None), ("LUNG-RADS", "4A", None)]),
    ("TI-RADS 3 and 5 nodules.", [("TI-RADS", "3", None), ("TI-RADS", "5", None)]),
    ("LI-RADS LR-3 and LR-5 observations.", [("LI-RADS", "3", None), ("LI-RADS", "5", None)]),
    ("O-RADS US 2 and 4.", [("O-RADS", "2", None), ("O-RADS", "4", None)]),
    ("PI-RADS 2 and 4 lesions.", [("PI-RADS", "2", None), ("PI-RADS", "4", None)]),
    ("Bosniak I and III cysts.", [("BOSNIAK", "I", None), ("BOSNIAK", "III", None)]),
    # Ranges and alternatives keep their reading.
    ("BI-RADS 4-5.", [("BIRADS", "4", "5")]),
    ("BI-RADS 4 to 5.", [("BIRADS", "4", "5")]),
    ("Lung-RADS 3 or 4A.", [("LUNG-RADS", "3", "4A")]),
    ("Bosniak II and IIF cyst.", [("BOSNIAK", "II", "IIF")]),
    # A number after "and" that is no score: size, time, count.
    ("BI-RADS 4 and 5 year follow-up.", [("BIRADS", "4", None)]),
    ("BI-RADS 3 and 6-month follow-up.", [("BIRADS", "3", None)]),
    ("BI-RADS 4 and 2 additional masses.", [("BIRADS", "4", None)]),
    ("Lung-RADS 2 and 4 mm nodule.", [("LUNG-RADS", "2", None)]),
])
def test_a_list_of_scores_is_one_assessment_per_value(text: str, expected: list[tuple]) -> None:
    assert expected == [(m.category, m.value, m.maximum) for m in find_scores(text)]


def test_each_listed_score_is_an_inference_with_the_name_and_its_own_value() -> None:
    text = "IMPRESSION: BI-RADS 2 and 4."
    inferences = analyse(build_request(text, include_evidence=True), "scoringAndAssessment")
    assert [("BIRADS", "2"), ("BIRADS", "4")] == [(i.category, i.single_value) for i in inferences]
    spans = [[text[o:o + n] for o, n in token_spans(i.extension)] for i in inferences]
    assert [["BI", "-", "RADS", "2"], ["BI", "-", "RADS", "4"]] == spans


def test_one_inference_per_mention_and_no_false_hits() -> None:
    text = "ACR BI-RADS 5th edition lexicon. BI-RADS 2. Impression: BI-RADS 2."
    assert [("BIRADS", "2"), ("BIRADS", "2")] == [(m.category, m.value) for m in find_scores(text)]


def test_evidence_is_the_score_tokens_only() -> None:
    text = "Impression: nodule (TI-RADS 3) and BIRADS category: 2 - benign."
    inferences = analyse(build_request(text, include_evidence=True), "scoringAndAssessment")
    spans = [[text[o:o + n] for o, n in token_spans(i.extension)] for i in inferences]
    assert [["TI", "-", "RADS", "3"], ["BIRADS", "2"]] == spans


@pytest.mark.parametrize("text", ["C-RADS C1, E2.", "C-RADS C1 E2.", "C-RADS C1 and E2.",
                                  "CRADS C1/E2"])
def test_colonic_and_extracolonic_categories_written_together(text: str) -> None:
    found = find_scores(text)
    assert [(m.category, m.value) for m in found] == [
        ("C-RADS COLONIC FINDINGS", "1"), ("C-RADS EXTRACOLONIC FINDINGS", "2")]
    # Each points at its own value, not at the other one.
    assert [text[m.spans[-1][0]:m.spans[-1][1]][-1] for m in found] == ["1", "2"]


@pytest.mark.parametrize(("text", "expected"), [
    # The edge values of BI-RADS are listed like any other.
    ("Known right carcinoma and new left asymmetry, BI-RADS 6 and 0, respectively.", ["6", "0"]),
    ("IMPRESSION: BI-RADS 0 and 6.", ["0", "6"]),
    # A list may end a line, or be followed by what the scores assess.
    ("IMPRESSION: BI-RADS 2 and 4\nRECOMMENDATION: Biopsy of the left breast mass.", ["2", "4"]),
    ("PI-RADS 4 and 5 lesions in the left and right peripheral zone.", ["4", "5"]),
    ("BI-RADS 4 and 5 suspicious masses.", ["4", "5"]),
    ("BI-RADS 4 and 2 cm irregular mass.", ["4"]),
    # Any other word after the number makes it a time, a size or a count.
    ("BI-RADS 3 and 6 mo follow-up ultrasound recommended.", ["3"]),
    ("BI-RADS 4, and 2 ultrasound-guided biopsies are recommended.", ["4"]),
    ("BI-RADS 3 and 6 wk follow-up.", ["3"]),
    ("BI-RADS 2 and 3 x 4 mm cyst.", ["2"]),
])
def test_what_may_follow_a_listed_score(text: str, expected: list[str]) -> None:
    inferences = analyse(build_request(text), "scoringAndAssessment")
    assert expected == [i.single_value for i in inferences]
