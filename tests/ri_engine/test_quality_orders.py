"""completeOrderDiscrepancy / limitedOrderDiscrepancy for ultrasound orders."""

from __future__ import annotations

import pytest

from ri_engine.models import RADLEX, concept, token_spans
from request_builder import analyse, build_request

CPT = "http://www.ama-assn.org/go/cpt"
US_ABDOMEN = concept("http://loinc.org", "24558-9", "US Abdomen")
US_PELVIS = concept("http://loinc.org", "24869-0", "US Pelvis")
FULL_ABDOMEN = (
    "FINDINGS: The liver is normal. The gallbladder is normal. The common bile duct measures 3 mm. "
    "The pancreas is normal. The spleen measures 10 cm. The right kidney and the left kidney are "
    "normal. The aorta and IVC are normal in caliber.\n\nIMPRESSION: Normal.")
ABDOMEN_PARTS = [
    concept(RADLEX, "RID58", "Liver"), concept(RADLEX, "RID187", "GALLBLADDER"),
    concept(RADLEX, "RID199", "COMMON BILE DUCT"), concept(RADLEX, "RID170", "PANCREAS"),
    concept(RADLEX, "RID86", "SPLEEN"), concept(RADLEX, "RID29663", "LEFT KIDNEY"),
    concept(RADLEX, "RID29662", "RIGHT KIDNEY"), concept(RADLEX, "RID905", "ABDOMINAL AORTA"),
    concept(RADLEX, "RID1178", "INFERIOR VENA CAVA"),
]


def run(text: str, code: str, display: str, kind: str, sex: str | None = "female",
        system: str = CPT) -> list[dict]:
    data = build_request(text, sex=sex, procedures=[{"system": system, "code": code, "display": display}])
    return [i.to_json() for i in analyse(data, kind)]


def test_complete_abdomen_reports_the_parts_never_named() -> None:
    text = FULL_ABDOMEN.replace(" The aorta and IVC are normal in caliber.", "")
    assert run(text, "76700", "US ABDOMEN COMPLETE", "completeOrderDiscrepancy") == [{
        "kind": "completeOrderDiscrepancy",
        "orderType": US_ABDOMEN.to_json(),
        "missingBodyParts": [ABDOMEN_PARTS[7].to_json(), ABDOMEN_PARTS[8].to_json()],
        "missingBodyPartMeasurements": [],
    }]


def test_complete_abdomen_with_every_part_gives_nothing() -> None:
    assert run(FULL_ABDOMEN, "76700", "US ABDOMEN COMPLETE", "completeOrderDiscrepancy") == []


def test_female_pelvis_needs_measurements_of_uterus_ovaries_and_endometrium() -> None:
    text = ("FINDINGS: The uterus is anteverted. The right ovary measures 2.5 x 1.8 x 2.0 cm. "
            "The left ovary measures 2.7 x 1.9 x 2.1 cm. The endometrium measures 5 mm.")
    assert run(text, "76856", "US PELVIS COMPLETE", "completeOrderDiscrepancy") == [{
        "kind": "completeOrderDiscrepancy",
        "orderType": US_PELVIS.to_json(),
        "missingBodyParts": [],
        "missingBodyPartMeasurements": [concept(RADLEX, "RID302", "UTERUS").to_json()],
    }]


def test_male_pelvis_is_chosen_by_the_patients_sex() -> None:
    text = "FINDINGS: The prostate measures 4 cm. The seminal vesicles are symmetric."
    assert run(text, "76856", "US PELVIS COMPLETE", "completeOrderDiscrepancy", sex="male") == [{
        "kind": "completeOrderDiscrepancy",
        "orderType": US_PELVIS.to_json(),
        "missingBodyParts": [concept(RADLEX, "RID237", "URINARY BLADDER").to_json()],
        "missingBodyPartMeasurements": [],
    }]


def test_renal_ultrasound_option_with_bladder_and_urinary_pathology_is_complete() -> None:
    text = ("FINDINGS: The right kidney measures 10 cm and the left kidney 10.5 cm. No hydronephrosis. "
            "The urinary bladder is normal.")
    assert run(text, "76770", "US RETROPERITONEAL COMPLETE", "completeOrderDiscrepancy") == []


def test_order_read_from_its_description_when_the_code_is_unknown() -> None:
    text = FULL_ABDOMEN.replace(" The spleen measures 10 cm.", "")
    produced = run(text, "IMG123", "US ABDOMEN COMPLETE", "completeOrderDiscrepancy", system="urn:local")
    assert [p["missingBodyParts"] for p in produced] == [[ABDOMEN_PARTS[4].to_json()]]


@pytest.mark.parametrize(("code", "display", "system"), [
    ("30704-1", "US ABDOMEN LIMITED", "http://loinc.org"),
    ("76705", "US ABDOMEN LIMITED", CPT),
])
def test_limited_abdomen_documenting_every_part_fires(code: str, display: str, system: str) -> None:
    assert run(FULL_ABDOMEN, code, display, "limitedOrderDiscrepancy", system=system) == [{
        "kind": "limitedOrderDiscrepancy",
        "orderType": US_ABDOMEN.to_json(),
        "presentBodyParts": [p.to_json() for p in ABDOMEN_PARTS],
        "presentBodyPartMeasurements": [],
    }]


@pytest.mark.parametrize("text", [
    "FINDINGS: The gallbladder contains stones. The common bile duct measures 5 mm. The liver is normal.",
    "HISTORY: Prior liver, gallbladder, common bile duct, pancreas, spleen, right kidney, left kidney, "
    "aorta and IVC were normal.\n\nFINDINGS: The gallbladder contains sludge.",
])
def test_limited_abdomen_near_misses(text: str) -> None:
    assert run(text, "76705", "US ABDOMEN LIMITED RUQ", "limitedOrderDiscrepancy") == []


def test_orders_outside_the_tables_give_nothing() -> None:
    assert run("FINDINGS: Liver normal.", "74176", "CT ABDOMEN PELVIS", "completeOrderDiscrepancy") == []
    assert run("FINDINGS: Liver normal.", "74176", "CT ABDOMEN PELVIS", "limitedOrderDiscrepancy") == []


def test_evidence_lists_every_mention_of_the_required_parts() -> None:
    text = "FINDINGS: The liver is normal. The liver is smooth."
    data = build_request(text, procedures=[{"system": CPT, "code": "76700", "display": "US ABDOMEN COMPLETE"}],
                         include_evidence=True)
    (inference,) = analyse(data, "completeOrderDiscrepancy")
    assert token_spans(inference.extension) == [(14, 5), (35, 5)]
