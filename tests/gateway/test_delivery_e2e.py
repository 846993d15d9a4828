"""What a downstream EHR receives from a real ``serve`` (fake engine) over loopback MLLP."""

from __future__ import annotations

import os
import time

from gateway_process import GatewayProcess, exchange
from test_pipeline_e2e import LoopbackPager

WAIT = 60.0


def arrived(peer: LoopbackPager, count: int, timeout: float = WAIT) -> list[bytes]:
    """The messages ``peer`` has read once it has ``count`` (or ``timeout`` is over)."""
    deadline = time.monotonic() + timeout
    while len(peer.payloads) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(peer.payloads)


def oru(control_id: str, text: str, status: str = "F", mrn: str = "MRN1",
        accession: str = "ACC1") -> bytes:
    return ("\r".join([
        f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115101500||ORU^R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19700101|F",
        f"ORC|RE|PL{accession}|FI{accession}",
        f"OBR|1|PL{accession}|FI{accession}|71045^XR CHEST^C4|||20240115100000|||||||||"
        f"1234^WELBY||{accession}|||||||{status}",
        f"OBX|1|TX|18782-3^Findings^LN||{text}||||||{status}",
    ]) + "\r").encode()


def obr_25(payload: bytes) -> str:
    obr = next(s for s in payload.split(b"\r") if s.startswith(b"OBR|"))
    return obr.split(b"|")[25].decode()


def test_a_correction_reaches_the_ehr_after_the_report_it_corrects(tmp_path):
    # Two workers: the correction was analysed while the report it corrects still ran,
    # recorded first, and so sent first; the EHR filed the original last and showed it.
    ehr = LoopbackPager()
    gate = tmp_path / "gate"
    gateway = GatewayProcess(
        tmp_path / "audit.sqlite3", RI_GATEWAY_ANALYSIS_WORKERS="2",
        RI_GATEWAY_DESTINATIONS_EHR_ENDPOINT=f"tcp:host=127.0.0.1:port={ehr.port}",
        RI_GATEWAY_ROUTES_RESULTS_DESTINATIONS="ehr").start()
    try:
        assert b"MSA|AA|ORIG1" in exchange(gateway.port, oru(
            "ORIG1", f"Large pneumothorax. WAITFOR:{gate};"))
        deadline = time.monotonic() + WAIT
        while not os.path.exists(f"{gate}.started") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"MSA|AA|CORR1" in exchange(gateway.port, oru(
            "CORR1", "Corrected: no pneumothorax.", status="C"))
        # Another patient's report does not wait for this one's.
        assert b"MSA|AA|OTHER1" in exchange(gateway.port, oru(
            "OTHER1", "No pneumothorax.", mrn="MRN2", accession="ACC2"))
        # Long enough for the correction too to be analysed, recorded and delivered.
        early = arrived(ehr, 2, timeout=3.0)
        gate.touch()
        delivered = arrived(ehr, 3)
    finally:
        gateway.stop()
        ehr.close()
    assert [b"PID|1||MRN2" in p for p in early] == [True]
    assert [obr_25(p) for p in delivered if b"PID|1||MRN1" in p] == ["F", "C"]
