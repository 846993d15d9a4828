"""Body regions of anatomy codes and exam descriptions (follow-up tracking's region match)."""

from __future__ import annotations

import pytest

from ri_engine.body_regions import (
    EVERYWHERE, regions_of_codes, regions_of_text, regions_overlap,
)


@pytest.mark.parametrize("text, regions", [
    ("CT CHEST WO CONTRAST", {"chest"}),
    ("CT ABDOMEN AND PELVIS W CONTRAST", {"abdomen", "pelvis"}),
    ("CT CHEST ABDOMEN PELVIS W", {"chest", "abdomen", "pelvis"}),
    ("MRI BRAIN WO AND W CONTRAST", {"head"}),
    ("XR THORACIC SPINE 2 VIEWS", {"spine"}),  # thoracic spine is not the chest
    ("US PELVIS TRANSVAGINAL", {"pelvis"}),
    ("MAMMO SCREENING BILATERAL", {"breast"}),
    ("XR KNEE 3 VIEWS LEFT", {"lower_extremity"}),
    ("lumbar spine", {"spine"}),
])
def test_regions_of_exam_descriptions(text, regions):
    assert regions_of_text(text) == regions


def test_unknown_descriptions_and_codes_are_not_a_region():
    assert regions_of_text("CT CAP") is None
    assert regions_of_text("") is None and regions_of_text(None) is None
    assert regions_of_codes(["0000000"]) is None


def test_anatomy_codes():
    assert regions_of_codes(["39607008"]) == {"chest"}  # LUNG STRUCTURE
    assert regions_of_codes(["10200004", "12921003"]) == {"abdomen", "pelvis"}  # liver, pelvis
    assert regions_of_codes(["279495008"]) == {EVERYWHERE}  # HUMAN BODY STRUCTURE


def test_overlap():
    chest, abdomen = frozenset({"chest"}), frozenset({"abdomen", "pelvis"})
    assert not regions_overlap(chest, abdomen)
    assert regions_overlap(chest, frozenset({"chest", "abdomen"}))
    assert regions_overlap(chest, None) and regions_overlap(None, abdomen)
    assert regions_overlap(frozenset({EVERYWHERE}), abdomen)
    assert regions_overlap(regions_of_text("PET/CT SKULL BASE TO MID-THIGH"), chest)
