"""Every message of the shared HL7 corpus: decodes, reads or rejects its header, gets an ACK,
and every ORU maps or fails with a documented AE reason."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from mappings.ack import build_ack, build_unreadable_ack, parse_ack
from mappings.decoding import decode_message
from mappings.errors import ContentError, UnreadableHeader, UnsupportedMessage
from mappings.header import read_header
from mappings.inbound import map_oru
from mappings.policy import check_acceptable

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7"
FILES = sorted(CORPUS.glob("*.hl7")) if CORPUS.is_dir() else []
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)

# The AE reasons inbound.py documents, as (code, location).
DOCUMENTED = {("100", "PID"), ("100", "OBR"), ("101", "PID-3"), ("101", "OBR-7"), ("101", "OBX-5"), ("102", "MSH")}

# Files whose outcome is part of what the corpus is for: pinned so a change is noticed.
EXPECTED = {
    "dcm4che_oru_radiology_sr.hl7": "mapped",
    "dcm4che_edge_oru_cda_crlf_raw.hl7": "mapped",
    "lfh_oru_imaging_report_529_obx.hl7": "mapped",
    "lfh_oru_imaging_report_short_mixed.hl7": "mapped",
    "hapi_oru_ft_escapes_lipid.hl7": "mapped",
    "dcm4che_edge_oru_pdf_cr_inside_base64.hl7": "AE 101 OBX-5",
    "hapi_oru_ft_escapes_bloodgas.hl7": "AE 100 PID",
    "hapi_oru_radiology_ct_1994.hl7": "AE 101 OBX-5",
    "hapi_edge_bad_msh2_utf8.hl7": "unreadable MSH-2",
    "pythonhl7_edge_bad_batch_no_msh.hl7": "unreadable MSH",
    "hl7apy_edge_z_message.hl7": "AR 200",
}

pytestmark = pytest.mark.skipif(not FILES, reason="shared HL7 corpus not present")


def outcome(path: Path) -> str:
    decoded = decode_message(path.read_bytes())
    try:
        header = read_header(decoded.text)
    except UnreadableHeader as exc:
        return f"unreadable {exc.location}"
    try:
        check_acceptable(header)
    except UnsupportedMessage as exc:
        return f"AR {exc.err_code}"
    try:
        map_oru(decoded.text)
    except ContentError as exc:
        return f"AE {exc.err_code} {exc.location}"
    return "mapped"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_message(path: Path) -> None:
    decoded = decode_message(path.read_bytes())
    assert "\n" not in decoded.text.split("\r")[0]
    try:
        header = read_header(decoded.text)
    except UnreadableHeader as exc:
        ack = build_unreadable_ack(decoded.text, "AR", "ACK1", NOW, exc)
        if ack is not None:
            info = parse_ack(ack.encode("utf-8"))
            assert (info.code, info.error_code) == ("AR", exc.err_code)
        return
    try:
        check_acceptable(header)
        code, error = "AA", None
    except UnsupportedMessage as exc:
        code, error = "AR", exc
    if code == "AA":
        try:
            reports = map_oru(decoded.text)
        except ContentError as exc:
            assert (exc.err_code, exc.location) in DOCUMENTED
            code, error = "AE", exc
        else:
            assert reports and all(r.request.patients[0].patient_documents[0].created_at for r in reports)
            assert any(r.document_text.strip() for r in reports)
    ack = build_ack(header, code, control_id="ACK1", now=NOW, error=error)
    info = parse_ack(ack.encode(decoded.charset, errors="replace"))
    assert (info.code, info.acked_control_id) == (code, header.control_id.strip())
    assert info.error_code == (error.err_code if error else None)


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()))
def test_pinned_outcomes(name: str, expected: str) -> None:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{name} not in this corpus")
    assert outcome(path) == expected
