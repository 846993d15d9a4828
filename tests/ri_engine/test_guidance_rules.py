"""guidance for the guidelines defined as data (knowledge/guideline_*.json)."""

from __future__ import annotations

import pytest
from request_builder import analyse, build_request, stripped


def _proc(display: str) -> list[dict[str, str]]:
    return [{"system": "http://loinc.org", "code": "x", "display": display}]


US_AORTA, US_ABDOMEN, US_HEAD = _proc("US AORTA"), _proc("US ABDOMEN"), _proc("US HEAD NEONATAL")
US_PELVIS, CT_ABDOMEN, CT_CHEST = _proc("US PELVIS TRANSVAGINAL"), _proc("CT ABDOMEN PELVIS"), _proc("CT CHEST")
LDCT, MRI_BRAIN, MRI_RECTUM = _proc("CT CHEST LOW DOSE LUNG CANCER SCREENING"), _proc("MRI BRAIN"), _proc("MRI PELVIS RECTUM")


def _guidance(text: str, procedures: list[dict[str, str]], **kwargs) -> list[dict]:
    data = build_request(text, procedures=procedures, created_at="2024-01-15T00:00:00", **kwargs)
    return [stripped(g) for g in analyse(data, "guidance")]


def _summary(g: dict) -> tuple:
    """Identifier, ranking, present items with values, missing items, proposals."""
    present = [(i["presentGuidanceItem"], tuple(i.get("presentGuidanceValues", ())))
               for i in g.get("presentGuidanceInformation", [])]
    proposals = []
    for p in g.get("recommendationProposals", []):
        proc = p["recommendedProcedure"]
        if "imagingProcedures" in proc:
            image = proc["imagingProcedures"][0]
            what = (image["modality"]["coding"][0]["code"], image["anatomy"]["coding"][0]["code"])
        else:
            what = (proc["code"]["coding"][0]["code"], None)
        period = p.get("effectivePeriod")
        when = p.get("effectiveAt") or (period and f"{period['start']}..{period['end']}")
        proposals.append((*what, when, p["isHedging"]))
    return (g["identifier"]["coding"][0]["code"], g["ranking"], present,
            g.get("missingGuidanceInformation"), proposals)


US, MRI, CONSULT, NONE = "16310003", "113091000", "11429006", "266750002"
AORTA, GALLBLADDER, PELVIS, PITUITARY = "7832008", "28231008", "12921003", "56329008"


def test_abdominal_aortic_aneurysm_intervals_follow_the_acr_table() -> None:
    [g] = _guidance("Findings: Infrarenal abdominal aortic aneurysm measuring 4.2 cm.", US_AORTA)
    assert ("233985008", "low", [("MAX DIAMETER", ("MAX DIAMETER",))], None,
            [(US, AORTA, "2025-01-15", False)]) == _summary(g)
    [large] = _guidance("Findings: Abdominal aortic aneurysm measuring 5.2 cm.", US_AORTA)
    assert ("high", [(US, AORTA, "2024-04-14..2024-07-13", False), (CONSULT, None, None, False)]) == \
        (_summary(large)[1], _summary(large)[4])


def test_aneurysm_without_a_size_lists_the_diameter_as_missing() -> None:
    [g] = _guidance("Impression: Abdominal aortic aneurysm.", CT_ABDOMEN)
    assert ("233985008", "low", [], ["MAX DIAMETER"], []) == _summary(g)


def test_repaired_or_thoracic_aneurysms_are_not_this_guideline() -> None:
    assert [] == _guidance("Findings: Stable endograft after EVAR of an abdominal aortic aneurysm.", CT_ABDOMEN)
    assert [] == _guidance("Findings: Ascending thoracic aortic aneurysm measuring 4.6 cm.", CT_CHEST)


@pytest.mark.parametrize(("text", "rank", "missing", "proposals"), [
    ("5 mm gallbladder polyp.", "low", None, [(NONE, "279495008", None, False)]),
    ("8 mm sessile gallbladder polyp.", "low", None, [(US, GALLBLADDER, "2025-01-15", False)]),
    ("8 mm gallbladder polyp.", "low", ["POLYP MORPHOLOGY"], []),
    ("12 mm pedunculated gallbladder polyp with a thin stalk.", "low", None,
     [(US, GALLBLADDER, "2024-07-13", False), (US, GALLBLADDER, "2025-01-15", False),
      (US, GALLBLADDER, "2026-01-15", False)]),
    ("16 mm gallbladder polyp.", "high", None, [(CONSULT, None, None, False)]),
])
def test_gallbladder_polyp_sru_2022(text: str, rank: str, missing: list[str] | None, proposals: list) -> None:
    [g] = _guidance("Findings: " + text, US_ABDOMEN)
    summary = _summary(g)
    assert ("300346007", rank, missing, proposals) == (summary[0], summary[1], summary[3], summary[4])


def test_germinal_matrix_hemorrhage_grades() -> None:
    neonate = {"birth_date": "2023-12-20"}
    [high] = _guidance("Findings: Bilateral grade III germinal matrix hemorrhage.", US_HEAD, **neonate)
    assert ("276650005", "high", [(US, "12738006", "2024-01-22", False)]) == \
        (_summary(high)[0], _summary(high)[1], _summary(high)[4])
    [ungraded] = _guidance("Findings: Right subependymal hemorrhage.", US_HEAD, **neonate)
    assert ["GRADE"] == _summary(ungraded)[3]
    assert [] == _guidance("Findings: Intraventricular hemorrhage.", _proc("CT HEAD"), birth_date="1950-01-01")


@pytest.mark.parametrize(("text", "birth", "rank", "proposals"), [
    # CPS 2020: grade 2 or higher, repeat head ultrasound 7-10 days later.
    ("Findings: Grade II germinal matrix hemorrhage on the left.", "2024-01-10", "low",
     [(US, "12738006", "2024-01-22..2024-01-25", False)]),
    # Grade I: the routine head ultrasound at 4-6 weeks after birth, from the birth date.
    ("Findings: Grade I germinal matrix hemorrhage on the left.", "2024-01-10", "low",
     [(US, "12738006", "2024-02-07..2024-02-21", False)]),
    ("Findings: Grade I germinal matrix hemorrhage on the left.", "2023-12-20", "low",   # day 26
     [(US, "12738006", "2024-01-17..2024-01-31", False)]),
    ("Findings: Grade I germinal matrix hemorrhage on the left.", "2023-12-05", "low",   # day 41
     [(US, "12738006", "2024-01-15..2024-01-16", False)]),
    ("Findings: Grade I germinal matrix hemorrhage on the left.", "2023-11-01", "low",   # window over
     [(US, "12738006", None, False)]),
    ("Findings: Grade I germinal matrix hemorrhage on the left.", None, "low",          # no birth date
     [(US, "12738006", None, False)]),
    # Ventricular dilatation with a low grade: at least weekly.
    ("Findings: Grade II germinal matrix hemorrhage with mild ventricular dilatation.", "2024-01-10", "high",
     [(US, "12738006", "2024-01-22", False)]),
    ("Findings: Grade II germinal matrix hemorrhage. No ventricular dilatation.", "2024-01-10", "low",
     [(US, "12738006", "2024-01-22..2024-01-25", False)]),
])
def test_germinal_matrix_low_grades_follow_the_cps_schedule(text: str, birth: str | None, rank: str,
                                                             proposals: list) -> None:
    [g] = _guidance(text, US_HEAD, birth_date=birth)
    assert ("276650005", rank, proposals) == (_summary(g)[0], _summary(g)[1], _summary(g)[4])


def test_lung_cancer_staging_lists_present_and_missing_tnm_information() -> None:
    [g] = _guidance("Findings: Left lower lobe mass consistent with primary lung cancer.", CT_CHEST)
    assert ("363358000", "low", [("TUMOR LOCATION", ("LEFT LOWER LOBE",))],
            ["TUMOR SIZE", "LYMPH NODES", "METASTASES"], []) == _summary(g)
    text = ("Findings: Right upper lobe adenocarcinoma measuring 3.2 cm. Enlarged subcarinal lymph nodes. "
            "No distant metastases.")
    [complete] = _guidance(text, CT_CHEST)
    assert ("high", None) == (_summary(complete)[1], _summary(complete)[3])


def test_rectal_cancer_staging() -> None:
    [g] = _guidance("Findings: Low rectal cancer 3 cm from the anal verge with involvement of the mesorectal "
                    "fascia.", MRI_RECTUM)
    assert ("363351006", "low", [("DISTANCE FROM ANAL VERGE", ("3 CM",)), ("MESORECTAL FASCIA", ("DOCUMENTED",))],
            ["DEPTH OF INVASION", "EXTRAMURAL VASCULAR INVASION", "LYMPH NODES"], []) == _summary(g)


@pytest.mark.parametrize(("text", "identifier", "rank", "viability", "proposals"), [
    ("Findings: Gestational sac containing an embryo with crown-rump length 8 mm. No embryonic cardiac activity.",
     "289208006", "high", "DIAGNOSTIC OF PREGNANCY FAILURE", [(CONSULT, None, None, False)]),
    ("Findings: Gestational sac with mean sac diameter 20 mm. No embryo.",
     "289208006", "low", "SUSPICIOUS FOR PREGNANCY FAILURE", [(US, PELVIS, "2024-01-22..2024-01-25", False)]),
    ("Findings: Live intrauterine pregnancy, crown-rump length 10 mm, heart rate 150 bpm.",
     "289208006", "low", "VIABLE", []),
    ("Comparison: Ultrasound 12 days ago showed a gestational sac with a yolk sac.\n"
     "Findings: Gestational sac with a yolk sac, mean sac diameter 15 mm, no embryo.",
     "364327007", "high", "DIAGNOSTIC OF PREGNANCY FAILURE", [(CONSULT, None, None, False)]),
])
def test_early_pregnancy_viability_doubilet_2013(text: str, identifier: str, rank: str, viability: str,
                                                 proposals: list) -> None:
    [g] = _guidance(text, US_PELVIS, sex="female", birth_date="1994-01-01")
    summary = _summary(g)
    assert (identifier, rank, proposals) == (summary[0], summary[1], summary[4])
    assert ("PREGNANCY VIABILITY", (viability,)) in summary[2]


def test_pregnancy_of_unknown_location_needs_the_hcg_level() -> None:
    [g] = _guidance("Impression: No intrauterine pregnancy; pregnancy of unknown location.", US_PELVIS,
                    sex="female", birth_date="1994-01-01")
    assert ("858901000000108", "low", [], ["BETA HCG LEVEL"], []) == _summary(g)


@pytest.mark.parametrize(("text", "procedures", "birth", "identifier", "rank", "proposals"), [
    ("3 cm simple cyst in the right ovary.", US_PELVIS, "1990-01-01", "97171000119100", "low",
     [(NONE, "279495008", None, False)]),
    # SRU 2019: postmenopausal simple cysts up to 3 cm need no follow-up, larger ones 1 year.
    ("3 cm simple cyst in the right ovary.", US_PELVIS, "1950-01-01", "97171000119100", "low",
     [(NONE, "279495008", None, False)]),
    ("1.8 cm simple cyst in the right ovary.", US_PELVIS, "1950-01-01", "97171000119100", "low",
     [(NONE, "279495008", None, False)]),
    ("4.2 cm simple cyst in the right ovary.", US_PELVIS, "1950-01-01", "97171000119100", "low",
     [(US, PELVIS, "2025-01-15", False)]),
    ("4 cm left ovarian cyst with a thick septation. O-RADS US 4.", US_PELVIS, "1970-01-01", "289840004", "high",
     []),  # RI gives no proposals for LESION OF OVARY
    # A simple cyst in a report that uses O-RADS US: the v2022 management of simple cysts.
    ("4 cm simple cyst in the left ovary. O-RADS US 2.", US_PELVIS, "1990-01-01", "97171000119100", "low",
     [(NONE, "279495008", None, False)]),
    ("6.5 cm simple cyst in the left ovary. O-RADS US 2.", US_PELVIS, "1990-01-01", "97171000119100", "low",
     [(US, PELVIS, "2024-03-11..2024-04-08", False)]),
    ("2.8 cm simple cyst in the left ovary. O-RADS US 2.", US_PELVIS, "1950-01-01", "97171000119100", "low",
     [(NONE, "279495008", None, False)]),
    ("4.5 cm simple cyst in the left ovary. O-RADS US 2.", US_PELVIS, "1950-01-01", "97171000119100", "low",
     [(US, PELVIS, "2025-01-15", False)]),
    ("11 cm simple cyst in the left ovary. O-RADS US 3.", US_PELVIS, "1990-01-01", "97171000119100", "high",
     [(CONSULT, None, None, False)]),
    # Not a simple cyst: the O-RADS lesion guideline, which RI gives no proposals for.
    ("4 cm hemorrhagic cyst in the left ovary. O-RADS US 2.", US_PELVIS, "1990-01-01", "289840004", "low", []),
    ("4 cm simple-appearing cyst with a thin septation in the left ovary. O-RADS US 3.", US_PELVIS,
     "1990-01-01", "289840004", "low", []),
    ("4 cm non-simple cyst in the left ovary. O-RADS US 3.", US_PELVIS, "1990-01-01", "289840004", "low", []),
    ("4 cm simple-appearing cyst in the left adnexa.", CT_ABDOMEN, "1990-01-01", "445039006", "low",
     [(NONE, "279495008", None, False)]),
    ("4 cm simple-appearing cyst in the left adnexa.", CT_ABDOMEN, "1950-01-01", "445039006", "low",
     [(US, PELVIS, None, False)]),
])
def test_adnexal_guideline_follows_exam_and_wording(text: str, procedures: list, birth: str, identifier: str,
                                                    rank: str, proposals: list) -> None:
    [g] = _guidance("Findings: " + text, procedures, sex="female", birth_date=birth)
    summary = _summary(g)
    assert (identifier, rank, proposals) == (summary[0], summary[1], summary[4])


def test_pituitary_micro_and_macroadenoma() -> None:
    [micro] = _guidance("Findings: 6 mm pituitary microadenoma.", MRI_BRAIN)
    assert ("399244003", "low", [(MRI, PITUITARY, "2025-01-15", False)]) == \
        (_summary(micro)[0], _summary(micro)[1], _summary(micro)[4])
    [macro] = _guidance("Findings: 1.4 cm pituitary macroadenoma.", MRI_BRAIN)
    assert ("high", [(MRI, PITUITARY, "2024-07-13", False), (CONSULT, None, None, True)]) == \
        (_summary(macro)[1], _summary(macro)[4])


@pytest.mark.parametrize(("text", "identifier", "rank", "grade", "missing"), [
    ("2 cm deep laceration of the right hepatic lobe.", "39400004", "low", "GRADE II", None),
    ("Liver laceration with active extravasation into the peritoneum.", "39400004", "high", "GRADE IV", None),
    ("Splenic laceration 4 cm deep.", "23589004", "low", "GRADE III", None),
    ("Splenic laceration.", "23589004", "low", None, ["LACERATION DEPTH"]),
    ("Left renal laceration into the collecting system with urinary extravasation.", "40095003", "high",
     "GRADE IV", None),
    ("Grade II laceration of the right kidney.", "40095003", "low", "GRADE II", None),
    ("Transection of the pancreatic body with main duct disruption.", "61823004", "low", "GRADE III", None),
])
def test_aast_injury_grades(text: str, identifier: str, rank: str, grade: str | None,
                            missing: list[str] | None) -> None:
    [g] = _guidance("Findings: " + text, _proc("CT ABDOMEN PELVIS TRAUMA"))
    summary = _summary(g)
    grades = [v[0] for item, v in summary[2] if item == "GRADE"]
    assert (identifier, rank, [grade] if grade else [], missing, []) == \
        (summary[0], summary[1], grades[-1:], summary[3], summary[4])


def test_screening_ct_nodules_use_lung_rads_not_fleischner() -> None:
    [g] = _guidance("Findings: 10 mm solid nodule in the left lower lobe.", LDCT, birth_date="1955-01-01")
    # RI gives no proposals for RID50134: the category is the guidance.
    assert ("RID50134", "low", [("SIZE", ("SIZE",)), ("LUNG-RADS CATEGORY", ("4A",))], None, []) == _summary(g)
    [incidental] = _guidance("Findings: 10 mm solid nodule in the left lower lobe.", CT_CHEST,
                             birth_date="1955-01-01")
    assert "RID50149" == _summary(incidental)[0]


@pytest.mark.parametrize(("text", "category", "rank"), [
    # New solid nodules have their own size bands (Lung-RADS v2022): <4 mm 2, 4 to <6 mm 3,
    # 6 to <8 mm 4A, >=8 mm 4B.
    ("7 mm solid nodule in the left lower lobe, new since the prior study.", "4A", "low"),
    ("New 5 mm solid nodule in the right upper lobe.", "3", "low"),
    ("Newly seen 9 mm solid nodule in the right upper lobe.", "4B", "high"),
    ("New 3 mm solid nodule in the right upper lobe.", "2", "low"),
    # At baseline, or when "new" is denied, the baseline bands.
    ("7 mm solid nodule in the left lower lobe.", "3", "low"),
    ("7 mm solid nodule in the left lower lobe, no new nodules.", "3", "low"),
])
def test_lung_rads_new_solid_nodules(text: str, category: str, rank: str) -> None:
    [g] = _guidance("Findings: " + text, LDCT, birth_date="1955-01-01")
    summary = _summary(g)
    assert (summary[1], dict(summary[2])["LUNG-RADS CATEGORY"]) == (rank, (category,))


def test_negated_findings_get_no_guidance() -> None:
    assert [] == _guidance("Findings: No gallbladder polyp. No abdominal aortic aneurysm. No splenic laceration.",
                           CT_ABDOMEN)


@pytest.mark.parametrize("text", [
    "Findings: Mother with history of lung cancer. Patient has a 2 cm mass in the left lower lobe.",
    "Findings: Multiple pulmonary nodules in both lower lobes, consistent with metastatic colon adenocarcinoma.",
    "Findings: History of abdominal aortic aneurysm.",
    # Screening for a cancer, or a risk of it, is no cancer to stage.
    "EXAM: Low-dose CT chest for lung cancer screening.\nFindings: 5 mm nodule in the right upper lobe.",
    "Findings: Emphysema, a risk factor for lung cancer. Clear lungs.",
])
def test_other_experiencer_history_and_other_primaries_are_not_current_findings(text: str) -> None:
    assert [] == [g for g in _guidance(text, CT_CHEST) if _summary(g)[0] in {"363358000", "233985008"}]


@pytest.mark.parametrize(("history", "older", "proposals"), [
    # SRU 2019 simple adnexal cyst of 4.2 cm: premenopausal no follow-up, postmenopausal 1 year.
    ("HISTORY: Twenty-eight year old woman with pelvic pain.", "NO", [(NONE, "279495008", None, False)]),
    ("HISTORY: A sixty-two-year-old woman with pelvic pain.", "YES", [(US, PELVIS, "2025-01-15", False)]),
    ("HISTORY: 62 yo woman with pelvic pain.", "YES", [(US, PELVIS, "2025-01-15", False)]),
])
def test_menopausal_status_from_a_stated_age_without_a_birth_date(history: str, older: str,
                                                                  proposals: list) -> None:
    [g] = _guidance(f"{history}\nFINDINGS: 4.2 cm simple cyst in the right ovary.", US_PELVIS, sex="female")
    assert ("97171000119100", [("MAX DIAMETER", ("MAX DIAMETER",)), ("PATIENT 50 YEARS OR OLDER", (older,))],
            proposals) == (_summary(g)[0], _summary(g)[2], _summary(g)[4])


@pytest.mark.parametrize(("history", "found"), [
    ("HISTORY: Newborn, born at 29 weeks.", 1),
    ("HISTORY: Three-week-old former 28 week preterm infant.", 1),
    ("HISTORY: Seventy-year-old man with a fall.", 0),   # not a neonate: maxAgeYears 1
])
def test_germinal_matrix_guideline_reads_a_stated_age(history: str, found: int) -> None:
    text = f"{history}\nFINDINGS: Grade III germinal matrix hemorrhage on the left."
    assert found == len(_guidance(text, US_HEAD))


@pytest.mark.parametrize(("text", "rank", "proposals"), [
    # Ventricular dilatation written as the ventricles being dilated or enlarged.
    ("Findings: Right grade II germinal matrix hemorrhage. The lateral ventricles are mildly dilated.",
     "high", [(US, "12738006", "2024-01-22", False)]),
    ("Findings: Grade I germinal matrix hemorrhage with enlarged lateral ventricles.",
     "high", [(US, "12738006", "2024-01-22", False)]),
    ("Findings: Left grade I germinal matrix hemorrhage. The ventricles are not dilated.",
     "low", [(US, "12738006", "2024-02-07..2024-02-21", False)]),
    # Grades in words, a range of grades read as its higher grade, "II/IV" as grade II.
    ("Findings: Grade three intraventricular hemorrhage on the right.",
     "high", [(US, "12738006", "2024-01-22", False)]),
    ("Findings: Grade I-II germinal matrix hemorrhage on the left.",
     "low", [(US, "12738006", "2024-01-22..2024-01-25", False)]),
    ("Findings: Grade II/IV germinal matrix hemorrhage on the left.",
     "low", [(US, "12738006", "2024-01-22..2024-01-25", False)]),
    # Periventricular (venous) haemorrhagic infarction is grade IV.
    ("Findings: Left intraventricular hemorrhage with periventricular venous hemorrhagic infarction.",
     "high", [(US, "12738006", "2024-01-22", False)]),
])
def test_germinal_matrix_phrasing(text: str, rank: str, proposals: list) -> None:
    [g] = _guidance(text, US_HEAD, birth_date="2024-01-10")
    assert ("276650005", rank, proposals) == (_summary(g)[0], _summary(g)[1], _summary(g)[4])


def test_germinal_matrix_hemorrhage_that_resolved_has_no_guidance() -> None:
    text = "Findings: Interval resolution of the previously seen right grade I germinal matrix hemorrhage."
    assert [] == _guidance(text, US_HEAD, birth_date="2023-11-20")


def test_germinal_matrix_without_an_order_in_a_preterm_infants_report() -> None:
    text = ("HISTORY: Former 25-week preterm infant, now three weeks old.\n"
            "FINDINGS: Grade II germinal matrix hemorrhage on the left.")
    [g] = _guidance(text, [])
    assert ("276650005", "low") == (_summary(g)[0], _summary(g)[1])


@pytest.mark.parametrize("text", [
    # The O-RADS category with its version or "risk category" in between.
    "HISTORY: Premenopausal.\nFINDINGS: 8.2 cm simple cyst in the right ovary. O-RADS US v2022 category 2.",
    "HISTORY: Premenopausal.\nFINDINGS: 8.2 cm simple cyst in the right ovary. O-RADS US risk category 2.",
    # Features the sentence denies do not make a simple cyst complex.
    "HISTORY: Premenopausal.\nFINDINGS: 8.2 cm simple cyst in the right ovary without septations or "
    "solid components and with no internal vascularity. O-RADS US 2.",
    # A negative pregnancy test is no pregnancy.
    "HISTORY: Premenopausal. Negative pregnancy test.\nFINDINGS: 8.2 cm simple cyst in the right ovary. "
    "O-RADS US 2.",
    "HISTORY: Premenopausal, serum hCG negative.\nFINDINGS: 8.2 cm simple cyst in the right ovary. O-RADS US 2.",
])
def test_orads_simple_cyst_phrasing(text: str) -> None:
    # O-RADS US v2022: premenopausal simple cyst over 5 cm and under 10 cm, ultrasound in 8-12 weeks.
    [g] = _guidance(text, US_PELVIS, birth_date="1990-01-01", sex="female")
    assert ("97171000119100", "low", [(US, "12921003", "2024-03-11..2024-04-08", False)]) == \
        (_summary(g)[0], _summary(g)[1], _summary(g)[4])


def test_a_pregnancy_still_leaves_adnexal_cysts_to_the_pregnancy_guidelines() -> None:
    text = "HISTORY: Eight weeks pregnant.\nFINDINGS: 3.0 cm simple cyst in the right ovary. O-RADS US 2."
    assert "97171000119100" not in [_summary(g)[0] for g in _guidance(text, US_PELVIS, sex="female")]
