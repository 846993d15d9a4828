"""Sentences, sections, measurements and assertion scope of the NLP layer."""

from __future__ import annotations

from functools import lru_cache

import pytest

from ri_engine.nlp import Pipeline
from ri_engine.nlp.measurements import find_measurements


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    return Pipeline()


def sentences(text: str) -> list[str]:
    doc = pipeline().analyse(text)
    return [text[s.start:s.end] for s in doc._.ri_sentences]


def test_sentences_respect_titles_decimals_and_dimensions() -> None:
    text = "A 2.5 x 1.2 cm nodule is seen. Discussed with Dr. Smith at 3 p.m. today. No effusion."
    assert sentences(text) == ["A 2.5 x 1.2 cm nodule is seen.",
                               "Discussed with Dr. Smith at 3 p.m. today.", "No effusion."]


def test_sentences_split_lists_and_drop_markers_and_headers() -> None:
    text = "IMPRESSION:\n1. Small effusion.\n2) No pneumothorax\n- Stable nodule\n\nFINDINGS: Normal."
    assert sentences(text) == ["Small effusion.", "No pneumothorax", "Stable nodule", "Normal."]


def test_wrapped_lines_join_but_new_lines_start_sentences() -> None:
    text = "The uterus is unremarkable with \nendometrial thickness of 5 mm. The \novaries are normal.\nKidneys normal"
    assert sentences(text) == ["The uterus is unremarkable with \nendometrial thickness of 5 mm.",
                               "The \novaries are normal.", "Kidneys normal"]


@pytest.mark.parametrize(("text", "expected"), [
    # Abbreviations of every length up to the longest ("approx") still run on; a longer
    # word, or one that only ends like an abbreviation, ends the sentence.
    ("Seen approx. 3 cm. Stable.", ["Seen approx. 3 cm.", "Stable."]),
    ("Mass, 2 cm approximately. Stable.", ["Mass, 2 cm approximately.", "Stable."]),
    ("Discussed with Drs. Lee and Ng. Noted.", ["Discussed with Drs. Lee and Ng.", "Noted."]),
    ("Contrast bolus resp. Noted.", ["Contrast bolus resp. Noted."]),
    ("The tip is at the carina.e.g. Noted.", ["The tip is at the carina.e.g.", "Noted."]),
    ("Seen at the hilum. Noted.", ["Seen at the hilum.", "Noted."]),
    ("Findings a. Small effusion.", ["Findings a.", "Small effusion."]),
    ("a. Small effusion.\nb. No mass.", ["Small effusion.", "No mass."]),
    # A line break ends a sentence after punctuation, a digit or any word but a run-on
    # word; a blank line always does.
    ("Nodule measuring\nLess than 5 mm", ["Nodule measuring\nLess than 5 mm"]),
    ("Nodule measuring 5\nMass stable", ["Nodule measuring 5", "Mass stable"]),
    ("Nodule seen.\nMass stable", ["Nodule seen.", "Mass stable"]),
    ("Stable caf\u00e9\nMass stable", ["Stable caf\u00e9", "Mass stable"]),
    ("Seen in the\n\nMass stable", ["Seen in the", "Mass stable"]),
])
def test_sentence_ends_beside_abbreviations_list_letters_and_line_breaks(
        text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_sections_with_inline_and_alone_headers() -> None:
    text = "CLINICAL HISTORY: cough\nTechnique: PA and lateral.\nFindings\nClear lungs. IMPRESSION: Normal."
    doc = pipeline().analyse(text)
    assert [(s.name, text[s.start:s.header_end]) for s in doc._.ri_sections] == [
        ("HISTORY", "CLINICAL HISTORY:"), ("TECHNIQUE", "Technique:"),
        ("FINDINGS", "Findings"), ("IMPRESSION", "IMPRESSION:")]
    assert [s.loinc_code for s in doc._.ri_sections] == ["46239-0", "47519-4", "30954-2", "51848-0"]


def test_unknown_headings_do_not_end_a_section() -> None:
    text = "Findings:\nRight lobe: 4.8 cm\nIsthmus: 4 mm"
    doc = pipeline().analyse(text)
    assert [(s.name, s.end) for s in doc._.ri_sections] == [("FINDINGS", len(text))]


@pytest.mark.parametrize(("text", "expected"), [
    ("mass 5.6 x 4.5 x 3.4 cm", [((5.6, 4.5, 3.4), None, None, "cm", None, False)]),
    ("nodule 2.5 cm x 1.2 cm", [((2.5, 1.2), None, None, "cm", None, False)]),
    ("nodules of 2 to 3 mm", [((), 2.0, 3.0, "mm", None, False)]),
    ("up to approximately 7 mm", [((7.0,), None, None, "mm", "<=", False)]),
    ("sub-5 mm nodules", [((5.0,), None, None, "mm", "<", False)]),
    ("now 8 mm, previously 6 mm", [((8.0,), None, None, "mm", None, False),
                                   ((6.0,), None, None, "mm", None, True)]),
    ("increased from 4 mm to 6 mm", [((4.0,), None, None, "mm", None, True),
                                     ((6.0,), None, None, "mm", None, False)]),
    ("24 hour diet, series 3 image 72", []),
    ("a 7-mm nodule", [((7.0,), None, None, "mm", None, False)]),
    ("a 1.5-cm cyst", [((1.5,), None, None, "cm", None, False)]),
    ("stones of 2-3-mm", [((), 2.0, 3.0, "mm", None, False)]),
    # "between ... and": a range; without "between", "and" joins two sizes.
    ("nodule measuring between 5 and 7 mm", [((), 5.0, 7.0, "mm", None, False)]),
    ("between 1.2 cm and 1.5 cm", [((), 1.2, 1.5, "cm", None, False)]),
    ("previously between 4 and 5 mm", [((), 4.0, 5.0, "mm", None, True)]),
    ("nodules of 5 mm and 7 mm", [((5.0,), None, None, "mm", None, False),
                                  ((7.0,), None, None, "mm", None, False)]),
])
def test_measurements(text: str, expected: list[tuple]) -> None:
    found = [(m.values, m.low, m.high, m.unit, m.comparator, m.prior) for m in find_measurements(text)]
    assert found == expected


def assertions(text: str) -> list[tuple[str, bool, str | None]]:
    doc = pipeline().analyse(text)
    return [(f.key, f.assertion.negated, f.assertion.uncertainty) for f in doc._.ri_findings]


def test_negation_stops_at_but() -> None:
    assert assertions("No pneumothorax, but there is a small pleural effusion.") == [
        ("pneumothorax", True, None), ("pleural_effusion", False, None)]


def test_negation_covers_a_list() -> None:
    assert assertions("No pneumothorax, pleural effusion or pulmonary edema.") == [
        ("pneumothorax", True, None), ("pleural_effusion", True, None),
        ("pulmonary_edema", True, None)]


@pytest.mark.parametrize(("text", "expected"), [
    ("No pneumothorax is seen, and a small pleural effusion is present.",
     [("pneumothorax", True), ("pleural_effusion", False)]),
    ("No pneumothorax, with a small left pleural effusion.",
     [("pneumothorax", True), ("pleural_effusion", False)]),
    ("No consolidation other than left basilar atelectasis.",
     [("consolidation", True), ("atelectasis", False)]),
    # A list keeps its negation.
    ("No pneumothorax, pleural effusion, or consolidation.",
     [("pneumothorax", True), ("pleural_effusion", True), ("consolidation", True)]),
])
def test_negation_stops_before_a_new_positive_clause(text: str, expected: list[tuple[str, bool]]) -> None:
    assert [(key, negated) for key, negated, _ in assertions(text)] == expected


@pytest.mark.parametrize(("text", "expected"), [
    # "is negative" (backward) used to win over "negative for" (forward) and covered only "CTA".
    ("CTA is negative for pulmonary embolism and aortic dissection.",
     [("pulmonary_embolism", True, None), ("aortic_dissection", True, None)]),
    ("Findings are not consistent with appendicitis.", [("appendicitis", True, None)]),
    ("Appendicitis is not favored.", [("appendicitis", False, "improbable")]),
    ("Findings are consistent with appendicitis.", [("appendicitis", False, None)]),
    # A copula cue reaches forward as well as back.
    ("This is likely atelectasis.", [("atelectasis", False, "probable")]),
    ("This is favored to represent atelectasis.", [("atelectasis", False, "probable")]),
    ("It is less likely pneumonia.", [("pneumonia", False, "improbable")]),
    ("Atelectasis is likely.", [("atelectasis", False, "probable")]),
])
def test_negative_for_after_a_verb_and_denied_diagnoses(text: str, expected: list[tuple]) -> None:
    assert assertions(text) == expected


def test_polyp_is_a_finding() -> None:
    doc = pipeline().analyse("7 mm gallbladder polyp. No colonic polyps.")
    assert [(f.key, f.codes[0].code, f.assertion.negated) for f in doc._.ri_findings] == [
        ("polyp", "41329004", False), ("polyp", "41329004", True)]


def test_backward_negation_and_pseudo_negation() -> None:
    assert assertions("Pneumothorax is not seen. No change in the nodule.") == [
        ("pneumothorax", True, None), ("nodule", False, None)]


@pytest.mark.parametrize("text", [
    "There is no change in the small right apical pneumothorax.",
    "There has been no interval change in the left pneumothorax.",
    "There is no significant change in the subdural hematoma.",
])
def test_pseudo_negation_inside_a_longer_negation_cue(text: str) -> None:
    # "there is no" is longer than "no change" and used to win the overlap.
    assert [negated for _, negated, _ in assertions(text)] == [False]


@pytest.mark.parametrize("text", [
    "No further evidence of pneumothorax.",
    "There is no further hemorrhage.",
])
def test_no_further_negates(text: str) -> None:
    assert [negated for _, negated, _ in assertions(text)] == [True]


def test_label_with_a_negative_value() -> None:
    text = ("FINDINGS:\nPneumothorax: None.\nPleural effusion: small left.\nFree air: absent.\n"
            "Hemorrhage: not seen.\nLungs: No consolidation.\nIMPRESSION: No pneumothorax.")
    assert [(key, negated) for key, negated, _ in assertions(text)] == [
        ("pneumothorax", True), ("pleural_effusion", False), ("free_air", True),
        ("hemorrhage", True), ("consolidation", True), ("pneumothorax", True)]


@pytest.mark.parametrize("text", [
    "Early pneumonia cannot be entirely excluded.",
    "Pneumonia can't be excluded.",
    "Cannot completely exclude pneumonia.",
    "Pneumonia is not definitely excluded.",
    "Pneumonia is not entirely ruled out.",
])
def test_cannot_be_excluded_with_an_adverb_or_contraction(text: str) -> None:
    # "not entirely ruled out" was negated by "ruled out"; the others had no cue at all.
    assert assertions(text) == [("pneumonia", False, "cannotBeExcluded")]


def test_not_excluded_is_cannot_be_excluded() -> None:
    assert assertions("Pneumothorax is not excluded. Perforated appendicitis is not ruled out.") == [
        ("pneumothorax", False, "cannotBeExcluded"), ("appendicitis", False, "cannotBeExcluded")]


def test_uncertainty_levels() -> None:
    assert assertions("Findings may represent pneumonia. Appendicitis cannot be excluded. "
                      "Probable atelectasis. Malignancy is unlikely.") == [
        ("pneumonia", False, "possible"), ("appendicitis", False, "cannotBeExcluded"),
        ("atelectasis", False, "probable"), ("malignancy", False, "improbable")]


def test_history_and_hypothetical() -> None:
    doc = pipeline().analyse("History of pulmonary embolism. Evaluate for appendicitis.")
    flags = [(f.key, f.assertion.historical, f.assertion.hypothetical) for f in doc._.ri_findings]
    assert flags == [("pulmonary_embolism", True, False), ("appendicitis", False, True)]


def test_finding_attachments() -> None:
    doc = pipeline().analyse("There is a new 8 mm nodule in the RUL and a 3 cm cyst in the left kidney.")
    got = [(f.key, [a.key for a in f.anatomy], f.laterality.value if f.laterality else None,
            [m.values for m in f.measurements], [m.key for m in f.modifiers]) for f in doc._.ri_findings]
    assert got == [("nodule", ["right_upper_lobe"], "right", [(8.0,)], ["new"]),
                   ("cyst", ["left_kidney"], "left", [(3.0,)], [])]


def test_order_description_procedures() -> None:
    (proc,) = pipeline().procedures_in("CT abd/pelvis w/o contrast")
    assert (proc.modality_key, [a.key for a in proc.anatomy], proc.contrast) == (
        "ct", ["abdomen", "pelvis"], "without")


@pytest.mark.parametrize(("text", "expected"), [
    # Finding words inside a non-finding term ("stroke team", "tumor board", "mixed-density")
    # are not findings; the same words right after one are.
    ("Stroke team notified. Acute stroke in the left MCA territory.", [("infarct", "stroke", None)]),
    ("Mixed-density mass in the liver. Tumor board next week; tumor in the pancreas.",
     [("mass", "mass", None), ("tumor", "tumor", None)]),
    # A date after "dating back to" / "since" dates the findings of its own clause only.
    ("Fracture clinic referral for the wrist fracture. Hematoma dating back to 01/02/2023, "
     "and a mass since 3/4/2022. Cyst.",
     [("fracture", "fracture", None), ("hematoma", "Hematoma", "2023-01-02"),
      ("mass", "mass", "2023-01-02"), ("cyst", "Cyst", None)]),
])
def test_findings_outside_non_finding_terms_and_their_dates(text: str, expected: list[tuple]) -> None:
    doc = pipeline().analyse(text)
    assert expected == [(f.key, text[f.start:f.end], f.date) for f in doc._.ri_findings]
