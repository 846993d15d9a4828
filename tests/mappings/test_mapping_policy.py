"""check_acceptable: AR codes 200-203 in order, ORU without trigger read as ORU^R01."""

from __future__ import annotations

import pytest

from mappings.errors import UnsupportedMessage
from mappings.header import read_header
from mappings.policy import SUPPORTED_VERSIONS, check_acceptable, effective_event


def header(msh9: str = "ORU^R01", processing: str = "P", version: str = "2.5.1"):
    return read_header(f"MSH|^~\\&|A|B|C|D|20240101||{msh9}|X|{processing}|{version}")


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("processing", ["P", "D", "T", "p", "P^T"])
def test_accepts_oru_r01(version: str, processing: str) -> None:
    check_acceptable(header(processing=processing, version=version))


@pytest.mark.parametrize(("msh9", "processing", "version", "code", "location"), [
    ("ADT^A01", "P", "2.5", "200", "MSH-9"),
    ("ZDT^Z01^ZDT_Z01", "P", "2.5", "200", "MSH-9"),
    ("", "P", "2.5", "200", "MSH-9"),
    ("ORU^R30", "P", "2.5", "201", "MSH-9"),
    ("ORU^R01", "X", "2.5", "202", "MSH-11"),
    ("ORU^R01", "", "2.5", "202", "MSH-11"),
    ("ORU^R01", "P", "3.0", "203", "MSH-12"),
    ("ORU^R01", "P", "", "203", "MSH-12"),
    ("ADT^A01", "X", "9.9", "200", "MSH-9"),  # first failing check wins
    ("ORU^R30", "X", "9.9", "201", "MSH-9"),
])
def test_rejects(msh9: str, processing: str, version: str, code: str, location: str) -> None:
    with pytest.raises(UnsupportedMessage) as info:
        check_acceptable(header(msh9, processing, version))
    assert (info.value.err_code, info.value.location) == (code, location)


def test_oru_without_trigger_is_oru_r01() -> None:
    h = header("ORU", version="2.3")
    assert effective_event(h) == "R01"
    check_acceptable(h)


def test_type_without_trigger_and_without_default_is_rejected() -> None:
    with pytest.raises(UnsupportedMessage) as info:
        check_acceptable(header("ADT"), message_types=("ADT^A01",))
    assert info.value.err_code == "201"


def test_configured_lists() -> None:
    check_acceptable(header("ADT^A08"), message_types=("ORU^R01", "ADT"))
    check_acceptable(header("oru^r30"), message_types=("ORU^R01", "ORU^R30"))
    check_acceptable(header(processing="T"), processing_ids=("T",))
    with pytest.raises(UnsupportedMessage):
        check_acceptable(header(processing="P"), processing_ids=("T",))
    with pytest.raises(UnsupportedMessage):
        check_acceptable(header(version="2.4"), versions=("2.5", "2.5.1"))
