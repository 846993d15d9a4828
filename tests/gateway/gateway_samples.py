"""Synthetic HL7 messages and test doubles shared by the gateway tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

REPORT = ("FINDINGS: There is a small right pneumothorax. "
          "IMPRESSION: Small right pneumothorax. Findings were discussed with Dr. Smith.")


def oru(control_id: str = "MSG0001", *, version: str = "2.5.1", msh9: str = "ORU^R01^ORU_R01",
        processing: str = "P", app: str = "RIS", facility: str = "HOSP", msh15: str = "",
        msh16: str = "", report: str = REPORT, obx: int = 1) -> bytes:
    """A synthetic radiology ORU^R01 (segments joined by CR)."""
    msh = (f"MSH|^~\\&|{app}|{facility}|RIGW|RAD|20240115101500||{msh9}|{control_id}|"
           f"{processing}|{version}")
    if msh15 or msh16:
        msh += f"|||{msh15}|{msh16}"
    segments = [
        msh,
        "PID|1||MRN12345^^^HOSP^MR||DOE^JANE||19600214|F",
        "PV1|1|O",
        "ORC|RE|PLC1001|FIL2002",
        "OBR|1|PLC1001|FIL2002|71250^CT CHEST WO CONTRAST^CPT||20240115093000|20240115094500"
        "|||||||||||ACC3003||||20240115101000|||F",
    ]
    for i in range(1, obx + 1):
        segments.append(f"OBX|{i}|TX|18782-3^Radiology Study observation^LN||{report}||||||F")
    return "\r".join(segments).encode("ascii") + b"\r"


def frame(payload: bytes) -> bytes:
    return b"\x0b" + payload + b"\x1c\x0d"


def unframe_all(data: bytes) -> list[bytes]:
    frames = []
    while data:
        assert data[:1] == b"\x0b", data
        end = data.index(b"\x1c\x0d")
        frames.append(data[1:end])
        data = data[end + 2:]
    return frames


def segments(ack: bytes) -> list[str]:
    return ack.decode().split("\r")


@dataclass(frozen=True)
class FakeReport:
    """What a mapper returns for one OBR group (the fields the gateway reads)."""

    request: Any
    obr_index: int = 1
    accession: str | None = "ACC3003"
    analyse: bool = True
    skip_reason: str | None = None


class ManualWriter:
    """A writer seam for GroupCommitter that runs a batch only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, defer.Deferred]] = []

    def __call__(self, fn: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.pending.append((fn, d))
        return d

    def finish_one(self) -> None:
        fn, d = self.pending.pop(0)
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the committer
            d.errback(exc)
        else:
            d.callback(result)

    def finish_all(self) -> None:
        while self.pending:
            self.finish_one()


def immediate_writer(fn: Any) -> defer.Deferred:
    return defer.maybeDeferred(fn)
