"""Synthetic ORU^R01 messages for the mapping tests (field numbers, not positions in a string)."""

from __future__ import annotations


def segment(name: str, fields: dict[int, str]) -> str:
    size = max(fields) if fields else 0
    values = [fields.get(i, "") for i in range(1, size + 1)]
    return "|".join([name, *values])


def msh(version: str = "2.5.1", msh9: str = "ORU^R01^ORU_R01", control_id: str = "MSG0001",
        facility: str = "GENERAL HOSPITAL", charset: str = "") -> str:
    fields = {1: "^~\\&", 2: "RIS", 3: facility, 4: "RI", 5: "GATEWAY", 6: "20240301120000",
              8: msh9, 9: control_id, 10: "P", 11: version}
    if charset:
        fields[17] = charset
    # MSH-1 is the separator itself, so MSH-n sits at index n-1 of the written fields.
    return segment("MSH", fields)


PID = {3: "MRN123^^^HOSP^MR~555^^^HOSP^PI", 5: "DOE^JANE", 7: "19600215", 8: "F", 18: "ACCT9"}
PV1 = {2: "I", 19: "VISIT42", 44: "20240301080000", 45: "20240302100000"}
OBR = {2: "PLC1", 3: "FIL1", 4: "71046^XR CHEST 2 VIEWS^C4", 7: "20240301113000",
       16: "1234^SMITH^JOHN^A^^DR", 18: "ACC1", 22: "20240301120000", 24: "RAD", 25: "F",
       32: "5678&READER&RITA"}


def obx(set_id: int, value: str, value_type: str = "TX",
        ident: str = "18748-4^Diagnostic imaging study^LN", status: str = "F") -> str:
    return segment("OBX", {1: str(set_id), 2: value_type, 3: ident, 5: value, 11: status})


def oru(*, version: str = "2.5.1", pid: dict[int, str] | None = None, pv1: dict[int, str] | None = None,
        obr: dict[int, str] | None = None, body: list[str] | None = None, with_pid: bool = True,
        with_pv1: bool = True, extra_groups: list[list[str]] | None = None, charset: str = "",
        facility: str = "GENERAL HOSPITAL") -> str:
    segments = [msh(version, charset=charset, facility=facility)]
    if with_pid:
        segments.append(segment("PID", {**PID, **(pid or {})}))
    if with_pv1:
        segments.append(segment("PV1", {**PV1, **(pv1 or {})}))
    segments.append(segment("ORC", {1: "RE", 2: "PLC1", 3: "FIL1"}))
    segments.append(segment("OBR", {1: "1", **OBR, **(obr or {})}))
    segments.extend(body if body is not None else [obx(1, "No acute disease.")])
    for group in extra_groups or []:
        segments.extend(group)
    return "\r".join(segments)
