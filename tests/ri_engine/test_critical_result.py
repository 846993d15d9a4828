"""criticalResult: which description a finding gets, and what keeps it from being critical."""

from __future__ import annotations

import pytest

from request_builder import analyse, build_request


def descriptions(text: str, procedures: list[dict[str, str]] | None = None) -> list[str]:
    produced = analyse(build_request(text, procedures=procedures), "criticalResult")
    return [i.result.description for i in produced]


FREE_AIR = "FREE AIR IN ABDOMEN (WITHOUT RECENT SURGERY)"


@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: Expected postoperative pneumoperitoneum following laparoscopic cholecystectomy.", []),
    ("IMPRESSION: Small amount of post-op free air, as expected.", []),
    ("FINDINGS: Small volume free air in the upper abdomen. No recent surgery.", [FREE_AIR]),
    ("IMPRESSION: Pneumoperitoneum, concerning for perforated viscus.", [FREE_AIR]),
    ("IMPRESSION: Free air, more than expected for postoperative day 10.", [FREE_AIR]),
    ("IMPRESSION: Increasing postoperative pneumoperitoneum.", [FREE_AIR]),
])
def test_free_air_after_surgery_is_expected(text: str, expected: list[str]) -> None:
    assert descriptions(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    # Stanford and DeBakey types name the aorta.
    ("IMPRESSION: Stanford type A dissection.", "AORTIC DISSECTION"),
    ("IMPRESSION: Type B dissection beginning distal to the left subclavian artery.", "AORTIC DISSECTION"),
    ("IMPRESSION: DeBakey type III dissection.", "AORTIC DISSECTION"),
    # A named brain region or vascular territory is brain anatomy without a head order.
    ("FINDINGS: Large right MCA territory infarct.", "ACUTE STROKE"),
    ("FINDINGS: Acute infarct in the left thalamus.", "ACUTE STROKE"),
    ("FINDINGS: Acute pontine infarct.", "ACUTE STROKE"),
])
def test_description_from_a_named_type_or_region(text: str, expected: str) -> None:
    assert descriptions(text) == [expected]


TENSION = "TENSION PNEUMOTHORAX"
SIMPLE = "PNEUMOTHORAX, NO EVIDENCE OF TENSION"


@pytest.mark.parametrize(("text", "expected"), [
    # A sign of tension written with the pneumothorax is tension.
    ("FINDINGS: Large right pneumothorax with mediastinal shift.", [TENSION]),
    ("IMPRESSION: Left pneumothorax with contralateral shift.", [TENSION]),
    ("IMPRESSION: Right pneumothorax with shift of the mediastinum to the left.", [TENSION]),
    ("IMPRESSION: Left pneumothorax with depression of the left hemidiaphragm.", [TENSION]),
    ("IMPRESSION: Left pneumothorax with a flattened hemidiaphragm and tracheal deviation.", [TENSION]),
    # Denied after the pneumothorax, the sign (or the word) is no tension.
    ("IMPRESSION: Large right pneumothorax without mediastinal shift.", [SIMPLE]),
    ("IMPRESSION: Right pneumothorax with no mediastinal shift.", [SIMPLE]),
    ("IMPRESSION: Right pneumothorax, no evidence of tension.", [SIMPLE]),
    ("IMPRESSION: Left pneumothorax without evidence of tracheal deviation or tension.", [SIMPLE]),
    ("IMPRESSION: Small right pneumothorax. No mediastinal shift.", [SIMPLE]),
])
def test_no_evidence_of_tension_only_without_a_sign_of_it(text: str, expected: list[str]) -> None:
    assert descriptions(text) == expected


AAA_STABLE = ("THORACIC AORTIC ANEURYSM >6 CM OR ABDOMINAL AORTIC ANEURYSM >5 CM, "
              "NO EVIDENCE OF ACUTE INSTABILITY")
AAA_RUPTURED = "RUPTURED/LEAKING ARTERIAL ANEURYSM (THORACIC OR ABDOMINAL AORTIC OR OTHER)"
ISCHEMIA = "INTESTINAL ISCHEMIA AND/OR PORTAL/MESENTERIC VENOUS GAS"
PNEUMATOSIS = "PNEUMATOSIS IN BOWEL WALL, NO OTHER SIGNS OF ISCHEMIA"
CT_AP = [{"code": "44115-4", "display": "CT ABDOMEN AND PELVIS"}]


@pytest.mark.parametrize(("text", "expected"), [
    # A word a rule looks for counts only when the text does not deny it after the finding.
    ("IMPRESSION: 6.4 cm abdominal aortic aneurysm without evidence of rupture.", [AAA_STABLE]),
    ("IMPRESSION: 6.4 cm abdominal aortic aneurysm, no leak.", [AAA_STABLE]),
    ("IMPRESSION: Ruptured 7 cm abdominal aortic aneurysm.", [AAA_RUPTURED]),
    ("IMPRESSION: 6.4 cm abdominal aortic aneurysm with active leak.", [AAA_RUPTURED]),
    ("IMPRESSION: 6.4 cm abdominal aortic aneurysm with a hyperattenuating crescent sign.",
     ["IMPENDING RUPTURE"]),
    # "No other signs of ischemia" is for pneumatosis alone.
    ("IMPRESSION: Pneumatosis intestinalis.", [PNEUMATOSIS]),
    ("IMPRESSION: Pneumatosis intestinalis without portal venous gas.", [PNEUMATOSIS]),
    ("IMPRESSION: Pneumatosis intestinalis with portal venous gas.", [ISCHEMIA, "PORTAL VENOUS AIR"]),
    # The words of another clause are not the finding's.
    ("IMPRESSION: Saddle embolus is not seen; segmental pulmonary embolism on the right.",
     ["PULMONARY EMBOLISM"]),
])
def test_description_words_stated_in_the_finding_clause(text: str, expected: list[str]) -> None:
    assert descriptions(text, CT_AP) == expected


def test_qualifier_denied_after_its_finding_is_dropped() -> None:
    produced = analyse(build_request(
        "FINDINGS: Right pneumothorax, no evidence of mediastinal shift. Left pneumothorax with "
        "tracheal deviation."), "finding")
    values = [[c.value_string for c in i.finding.component or [] if c.value_string] for i in produced]
    assert values == [[], ["tracheal deviation"]]


@pytest.mark.parametrize(("text", "expected"), [
    # The impression restates the finding without the sign the findings gave: the report as a
    # whole shows it, so neither mention is described as lacking it.
    ("FINDINGS: Large right pneumothorax with mediastinal shift.\n"
     "IMPRESSION: Large right pneumothorax.", [TENSION, TENSION]),
    ("FINDINGS: 6.8 cm abdominal aortic aneurysm with a hyperattenuating crescent sign.\n"
     "IMPRESSION: 6.8 cm abdominal aortic aneurysm.", ["IMPENDING RUPTURE"] * 2),
    ("FINDINGS: Colonic pneumatosis with portal venous gas.\nIMPRESSION: Colonic pneumatosis.",
     [ISCHEMIA, "PORTAL VENOUS AIR", ISCHEMIA]),
    # The other side's pneumothorax is another one: it keeps its own description.
    ("FINDINGS: Large left pneumothorax with rightward mediastinal shift. Small right "
     "pneumothorax.\nIMPRESSION: Left pneumothorax. Small right pneumothorax.",
     [TENSION, SIMPLE, TENSION, SIMPLE]),
    # A sign only in the comparison (yesterday's study) is not this report's.
    ("COMPARISON: CT yesterday showed a right tension pneumothorax.\n"
     "FINDINGS: Small residual right pneumothorax.", [SIMPLE]),
    # Denied in both mentions: no evidence of tension in either.
    ("FINDINGS: Right pneumothorax. No mediastinal shift.\nIMPRESSION: Right pneumothorax.",
     [SIMPLE, SIMPLE]),
])
def test_a_sign_stated_once_in_the_report_describes_every_mention(text: str,
                                                                 expected: list[str]) -> None:
    assert descriptions(text, CT_AP) == expected


DVT = "DEEP VEIN THROMBOSIS"
CARDIAC = "CARDIAC THROMBUS/TUMOR"


@pytest.mark.parametrize(("text", "expected"), [
    ("FINDINGS: Occlusive thrombus in the left popliteal vein.", [DVT]),
    ("FINDINGS: Thrombus in the right common femoral vein next to the femoral artery.", [DVT]),
    ("FINDINGS: Occlusive thrombus in the right subclavian and axillary veins.", [DVT]),
    ("FINDINGS: Acute deep vein thrombosis of the left femoral vein.", [DVT]),
    # A thrombus in the heart is a cardiac thrombus.
    ("FINDINGS: 1.4 cm thrombus in the left ventricle.", [CARDIAC]),
    ("FINDINGS: Thrombus in the left atrial appendage.", [CARDIAC]),
    # Thrombus elsewhere is not a deep vein thrombosis.
    ("FINDINGS: 4.2 cm abdominal aortic aneurysm with mural thrombus.", []),
    ("FINDINGS: Thrombus in the great saphenous vein. The deep veins are patent.", []),
    ("FINDINGS: Nonocclusive thrombus in the main portal vein.", []),
    ("FINDINGS: Thrombosis of the superior sagittal sinus.", []),
])
def test_deep_vein_thrombosis_needs_a_deep_vein(text: str, expected: list[str]) -> None:
    assert descriptions(text) == expected


AAA_STABLE = "THORACIC AORTIC ANEURYSM >6 CM OR ABDOMINAL AORTIC ANEURYSM >5 CM, NO EVIDENCE OF ACUTE INSTABILITY"
RUPTURED = "RUPTURED/LEAKING ARTERIAL ANEURYSM (THORACIC OR ABDOMINAL AORTIC OR OTHER)"


@pytest.mark.parametrize(("text", "expected"), [
    # A mention without a side, when the report names the finding on both sides, may be
    # either one: it keeps its own description.
    ("FINDINGS: Small right apical pneumothorax. Large left pneumothorax with rightward "
     "mediastinal shift.\nIMPRESSION: 1. Large left tension pneumothorax. 2. Small apical pneumothorax.",
     [SIMPLE, TENSION, TENSION, SIMPLE]),
    # With one side named, a mention without one is that side's.
    ("FINDINGS: Large left pneumothorax with rightward mediastinal shift.\nIMPRESSION: Large pneumothorax.",
     [TENSION, TENSION]),
    # A mention whose own sentence denies the sign keeps what it says.
    ("FINDINGS: Moderate right pneumothorax with slight leftward mediastinal shift.\n"
     "IMPRESSION: Moderate right pneumothorax without evidence of tension physiology.", [TENSION, SIMPLE]),
    # Another vessel, or another size, is another aneurysm.
    ("FINDINGS: 5.8 cm infrarenal abdominal aortic aneurysm without periaortic stranding. 3.4 cm right "
     "common iliac artery aneurysm with contained rupture.\nIMPRESSION: 1. Contained rupture of a 3.4 cm "
     "right common iliac artery aneurysm. 2. 5.8 cm abdominal aortic aneurysm without evidence of rupture.",
     [AAA_STABLE, RUPTURED, RUPTURED, AAA_STABLE]),
    # A sign that resolved is no sign, and does not make the pneumothorax resolved.
    ("FINDINGS: Decreased size of the small left pneumothorax, with resolution of the previously seen "
     "mediastinal shift.\nIMPRESSION: Small left pneumothorax, decreased.", [SIMPLE, SIMPLE]),
])
def test_which_mentions_are_one_finding(text: str, expected: list[str]) -> None:
    assert descriptions(text, CT_AP) == expected


@pytest.mark.parametrize(("text", "expected"), [
    # Central deep veins: the vena cava, the internal jugular vein.
    ("FINDINGS: Thrombus within the suprarenal IVC.", [DVT]),
    ("FINDINGS: Nonocclusive thrombus in the right internal jugular vein around the central venous "
     "catheter, whose tip projects in the right atrium.", [DVT]),
    ("FINDINGS: Thrombus in the left renal vein extending into the IVC.", [DVT]),
    # A clot is a deep vein thrombosis only in a deep vein.
    ("FINDINGS: The left common femoral vein is noncompressible and distended with echogenic clot.", [DVT]),
    ("FINDINGS: Layering clot within the urinary bladder.", []),
    # Veins that are not deep veins of the limbs or the trunk, and dialysis accesses.
    ("FINDINGS: Occlusive thrombus in the left external jugular vein.", []),
    ("FINDINGS: Nonocclusive thrombus in the left renal vein.", []),
    ("FINDINGS: Dilated right gonadal vein containing thrombus.", []),
    ("IMPRESSION: Right ovarian vein thrombosis.", []),
    ("IMPRESSION: SMV thrombosis.", []),
    ("FINDINGS: Thrombus in the outflow vein of the left radiocephalic arteriovenous fistula.", []),
    ("FINDINGS: Occlusive thrombus throughout the left forearm loop arteriovenous graft.", []),
    # A chamber named with the thrombus is still a cardiac thrombus.
    ("FINDINGS: Thrombus in the right atrium attached to the tip of the dialysis catheter.", [CARDIAC]),
    ("FINDINGS: Filling defect in the left atrial appendage on delayed images, consistent with thrombus.",
     [CARDIAC]),
])
def test_thrombus_by_vein(text: str, expected: list[str]) -> None:
    assert descriptions(text) == expected
