"""guidance: the documentation example (Fleischner 2017) and the other guidelines."""

from __future__ import annotations

import datetime as dt

import pytest
from request_builder import analyse, build_request, doc_sample, request_from_sample, stripped

from ri_engine.inferences.guidance import add_months

CT_CHEST = [{"system": "http://loinc.org", "code": "24627-2", "display": "CT CHEST"}]


def _without_finding(value: dict) -> dict:
    return {k: v for k, v in value.items() if k != "finding"}


def _guidance(text: str, **kwargs) -> list[dict]:
    return [stripped(g) for g in analyse(build_request(text, **kwargs), "guidance")]


def test_documentation_example_guidance_fields() -> None:
    sample = doc_sample("docs_guidance")
    got = [stripped(g) for g in analyse(request_from_sample(sample), "guidance")]
    assert [_without_finding(e) for e in sample["expected"]] == [_without_finding(g) for g in got]


def test_documentation_example_findings_carry_subject_size_side_and_guidance() -> None:
    sample = doc_sample("docs_guidance")
    got = [stripped(g) for g in analyse(request_from_sample(sample), "guidance")]

    def essentials(observation: dict) -> tuple:
        by_code = [(c["code"]["coding"][0]["code"], c.get("valueCodeableConcept", c.get("valueBoolean", c.get("valueQuantity"))))
                   for c in observation["component"]]
        keep = {"131195008", "45651917", "723851000000107", "46150521", "246115007"}
        return observation.get("interpretation"), [x for x in by_code if x[0] in keep]

    assert [essentials(e["finding"]["finding"]) for e in sample["expected"]] == \
        [essentials(g["finding"]["finding"]) for g in got]


def test_interval_arithmetic() -> None:
    base = dt.date(2014, 2, 20)
    assert [dt.date(2014, 5, 21), dt.date(2014, 8, 19), dt.date(2015, 2, 20), dt.date(2015, 8, 14),
            dt.date(2016, 2, 20)] == [add_months(base, m) for m in (3, 6, 12, 18, 24)]
    assert dt.date(2017, 2, 28) == add_months(dt.date(2016, 2, 29), 12)


def _proposals(guidance: dict) -> list[tuple]:
    out = []
    for p in guidance.get("recommendationProposals", []):
        proc = p["recommendedProcedure"]
        code = (proc["imagingProcedures"][0]["modality"] if "imagingProcedures" in proc else proc["code"])["coding"][0]["code"]
        when = p.get("effectiveAt") or (p.get("effectivePeriod") or {}).get("start")
        out.append((code, when, p["isHedging"]))
    return out


def test_stated_risk_narrows_fleischner_proposals() -> None:
    text = "History: 40 pack-year smoking history.\nFindings: A 7 mm solid nodule in the right lower lobe."
    [g] = _guidance(text, procedures=CT_CHEST, birth_date="1950-01-01", created_at="2024-01-15T00:00:00")
    assert ("RID50149", "low") == (g["identifier"]["coding"][0]["code"], g["ranking"])
    assert [{"presentGuidanceItem": "LOBE", "presentGuidanceValues": ["RIGHT LOWER LOBE"]},
            {"presentGuidanceItem": "NODULE TYPE", "presentGuidanceValues": ["SOLID"]},
            {"presentGuidanceItem": "RISK LEVEL", "presentGuidanceValues": ["HIGH RISK"]}] == \
        [i for i in g["presentGuidanceInformation"] if i["presentGuidanceItem"] != "SIZE"]
    assert [("77477000", "2024-07-13", False), ("77477000", "2025-07-08", False)] == _proposals(g)


@pytest.mark.parametrize(("text", "proposals"), [
    ("A 7 mm ground-glass nodule in the left upper lobe.", [("77477000", "2024-07-13", False), ("77477000", "2026-01-15", False)]),
    ("A 4 mm part-solid nodule in the left upper lobe.", [("266750002", None, False)]),
    ("Multiple 7 mm nodules in both lungs.", [("77477000", "2024-04-14", False), ("77477000", "2025-07-08", False),
                                            ("77477000", "2025-07-08", True)]),
])
def test_fleischner_branches(text: str, proposals: list[tuple]) -> None:
    [g] = _guidance(text, procedures=CT_CHEST, birth_date="1950-01-01")
    assert proposals == _proposals(g)


def test_fleischner_not_for_patients_under_35() -> None:
    [g] = _guidance("A 7 mm nodule in the left upper lobe.", procedures=CT_CHEST, birth_date="2000-01-01")
    assert "recommendationProposals" not in g
    assert {"presentGuidanceItem": "PATIENT 35 YEARS OR OLDER", "presentGuidanceValues": ["NO"]} in \
        g["presentGuidanceInformation"]


@pytest.mark.parametrize(("history", "item"), [
    ("HISTORY: Metastatic colon cancer.", "KNOWN MALIGNANCY"),
    ("HISTORY: 66-year-old with a history of breast cancer, on chemotherapy.", "KNOWN MALIGNANCY"),
    ("HISTORY: Renal transplant recipient on immunosuppression.", "IMMUNOCOMPROMISED PATIENT"),
])
def test_fleischner_proposes_nothing_for_known_cancer_or_immunosuppression(history: str, item: str) -> None:
    text = f"{history}\nFINDINGS: 7 mm solid nodule in the right middle lobe."
    [g] = _guidance(text, procedures=CT_CHEST, birth_date="1958-01-01")
    assert {"presentGuidanceItem": item, "presentGuidanceValues": ["YES"]} in g["presentGuidanceInformation"]
    assert "recommendationProposals" not in g


@pytest.mark.parametrize("history", [
    "HISTORY: No history of cancer.",
    "HISTORY: Family history of lung cancer.",
    "HISTORY: Cough. Rule out malignancy.",
])
def test_fleischner_applies_without_the_patients_own_cancer(history: str) -> None:
    text = f"{history}\nFINDINGS: 7 mm solid nodule in the right middle lobe."
    [g] = _guidance(text, procedures=CT_CHEST, birth_date="1958-01-01")
    assert [p[1] for p in _proposals(g)][:1] == ["2024-07-13"]  # CT at 6-12 months


def test_tirads_from_features() -> None:
    us = [{"system": "http://loinc.org", "code": "24842-7", "display": "US THYROID"}]
    text = "Right lobe: 1.6 cm solid hypoechoic nodule, wider-than-tall, smooth margins, no calcifications."
    [g] = _guidance(text, procedures=us)
    assert ("RID50503", "low") == (g["identifier"]["coding"][0]["code"], g["ranking"])
    assert [("277590007", None, False)] == _proposals(g)  # TR4 (4 points), >= 1.5 cm: FNA


def test_tirads_missing_features() -> None:
    us = [{"system": "http://loinc.org", "code": "24842-7", "display": "US THYROID"}]
    [g] = _guidance("There is a 1.2 cm hypoechoic nodule in the left thyroid lobe.", procedures=us)
    assert ["COMPOSITION", "SHAPE", "MARGIN", "ECHOGENIC FOCI"] == g["missingGuidanceInformation"]


def test_tirads_level_reached_whatever_the_missing_features_add() -> None:
    us = [{"system": "http://loinc.org", "code": "24842-7", "display": "US THYROID"}]
    # 2 + 2 + 3 + 3 = 10 points without the margin: TR5 whatever the margin is.
    [g] = _guidance("1.6 cm solid nodule in the right thyroid lobe, hypoechoic, taller-than-wide, "
                    "with punctate echogenic foci.", procedures=us)
    assert (g.get("missingGuidanceInformation"), g["ranking"]) == (None, "high")
    assert [("277590007", None, False)] == _proposals(g)  # TR5, >= 1 cm: FNA


@pytest.mark.parametrize(("text", "missing"), [
    # 4 points; a lobulated margin (2) or extrathyroidal extension (3) would make it TR5.
    ("1.2 cm solid hypoechoic nodule in the left thyroid lobe, wider-than-tall, no calcifications.",
     ["MARGIN"]),
    # 4 points; echogenic foci add up (punctate 3 + rim 2 + macro 1): TR4 or TR5.
    ("1.2 cm solid hypoechoic nodule in the left thyroid lobe, wider-than-tall, smooth margins.",
     ["ECHOGENIC FOCI"]),
])
def test_tirads_missing_features_that_could_change_the_level(text: str, missing: list[str]) -> None:
    us = [{"system": "http://loinc.org", "code": "24842-7", "display": "US THYROID"}]
    [g] = _guidance(text, procedures=us)
    assert g["missingGuidanceInformation"] == missing
    assert "recommendationProposals" not in g


@pytest.mark.parametrize("text", [
    "1.2 cm solid hypoechoic nodule in the left thyroid lobe, wider-than-tall, smooth margins, "
    "no microcalcifications.",
    "1.2 cm solid hypoechoic nodule in the left thyroid lobe with smooth margins, no "
    "extrathyroidal extension, without calcifications, not taller-than-wide.",
])
def test_tirads_denied_features_score_nothing(text: str) -> None:
    us = [{"system": "http://loinc.org", "code": "24842-7", "display": "US THYROID"}]
    [g] = _guidance(text, procedures=us)
    present = {p["presentGuidanceItem"]: p["presentGuidanceValues"] for p in g["presentGuidanceInformation"]}
    assert present["ECHOGENIC FOCI"] == ["NONE OR LARGE COMET-TAIL ARTIFACTS"]
    assert present["SHAPE"] == ["WIDER-THAN-TALL"] and present["MARGIN"] == ["SMOOTH"]
    # TR4 (4 points), 1 cm to < 1.5 cm: ultrasound at 1, 2, 3 and 5 years, no FNA.
    assert g["ranking"] == "low"
    assert [p[1] for p in _proposals(g)] == ["2025-01-15", "2026-01-15", "2027-01-15", "2029-01-15"]


def test_incidental_thyroid_nodule_uses_age() -> None:
    [g] = _guidance("Incidental 1.2 cm nodule in the left thyroid lobe.", procedures=CT_CHEST, birth_date="1950-01-01")
    assert "237495005" == g["identifier"]["coding"][0]["code"]
    assert {"presentGuidanceItem": "PATIENT 35 YEARS OR OLDER", "presentGuidanceValues": ["YES"]} in \
        g["presentGuidanceInformation"]
    assert [("266750002", None, False)] == _proposals(g)


def test_bosniak_iif() -> None:
    [g] = _guidance("A 2.1 cm Bosniak IIF cyst in the right kidney.", created_at="2024-01-15T00:00:00")
    assert "79131000119100" == g["identifier"]["coding"][0]["code"]
    assert ["2024-07-13", "2025-01-15", "2026-01-15"] == sorted({p[1] for p in _proposals(g)})


def test_adrenal_and_pancreas_thresholds() -> None:
    [adrenal] = _guidance("A 2.2 cm left adrenal nodule measuring 25 HU.")
    assert ["77477000", "113091000"] == [p[0] for p in _proposals(adrenal)]
    [pancreas] = _guidance("A 1.2 cm cyst in the pancreatic tail.", created_at="2024-01-15T00:00:00")
    assert [("113091000", "2026-01-15", False)] == _proposals(pancreas)


def _identified(text: str) -> list[tuple[str, str, list]]:
    out = []
    for g in _guidance(text, procedures=CT_CHEST):
        sizes = [q["valueQuantity"]["value"] for p in g.get("presentGuidanceInformation", [])
                 for s in p.get("sizes", []) for q in s.get("component", []) if "valueQuantity" in q]
        out.append((g["identifier"]["coding"][0]["code"], g["ranking"], sizes))
    return out


@pytest.mark.parametrize(("text", "expected"), [
    # A denial stops at ", with", ", and a/an" and "other than", as in the finding layer.
    ("FINDINGS: No pulmonary nodules, with a 2.1 cm adrenal nodule.", [("237783006", "low", [2.1])]),
    ("FINDINGS: No adrenal mass, and a 5 mm nodule in the right upper lobe.", [("RID50149", "low", [5])]),
    ("FINDINGS: No suspicious pulmonary nodules other than a 4 mm right upper lobe nodule.",
     [("RID50149", "low", [4])]),
    # Each part names its own lesion, with its own size.
    ("FINDINGS: 6 mm right upper lobe nodule, and a 4 mm left lower lobe nodule.",
     [("RID50149", "low", [6]), ("RID50149", "low", [4])]),
    # The organ named before the cut goes with the lesion after it.
    ("FINDINGS: Thickened left adrenal gland, with a 4.2 cm nodule.", [("237783006", "high", [4.2])]),
    # Denied on both sides: none.
    ("FINDINGS: No pulmonary nodules, and no adrenal nodule.", []),
])
def test_lesions_split_where_a_denial_stops(text: str, expected: list[tuple]) -> None:
    assert _identified(text) == expected


# --- the patient's age from the report text, when the request has no birthDate ------------

def _age_item(g: dict, item: str) -> list[str] | None:
    for info in g.get("presentGuidanceInformation", []):
        if info["presentGuidanceItem"] == item:
            return info.get("presentGuidanceValues")
    return None


@pytest.mark.parametrize("history", [
    "HISTORY: Twenty-eight-year-old man with cough.",
    "HISTORY: 28-year-old man with cough.",
    "HISTORY: Man, twenty eight years of age, with cough.",
])
def test_fleischner_reads_the_age_the_report_states_without_a_birth_date(history: str) -> None:
    [g] = _guidance(f"{history}\nFINDINGS: A 7 mm nodule in the left upper lobe.", procedures=CT_CHEST)
    assert ["NO"] == _age_item(g, "PATIENT 35 YEARS OR OLDER")
    assert "recommendationProposals" not in g


def test_birth_date_wins_over_the_stated_age() -> None:
    text = "HISTORY: Twenty-eight-year-old man.\nFINDINGS: A 7 mm nodule in the left upper lobe."
    [g] = _guidance(text, procedures=CT_CHEST, birth_date="1950-01-01")
    assert _age_item(g, "PATIENT 35 YEARS OR OLDER") is None
    assert "recommendationProposals" in g


def test_an_age_that_is_not_the_patients_does_not_count() -> None:
    text = "HISTORY: Cough; her twenty-eight-year-old son is ill.\nFINDINGS: A 7 mm nodule in the left upper lobe."
    [g] = _guidance(text, procedures=CT_CHEST)
    assert _age_item(g, "PATIENT 35 YEARS OR OLDER") is None


def test_incidental_thyroid_nodule_uses_a_word_age() -> None:
    [g] = _guidance("HISTORY: Seventy-four year old woman.\nFINDINGS: Incidental 1.2 cm nodule in the left "
                    "thyroid lobe.", procedures=CT_CHEST)
    assert ["YES"] == _age_item(g, "PATIENT 35 YEARS OR OLDER")
    assert [("266750002", None, False)] == _proposals(g)
