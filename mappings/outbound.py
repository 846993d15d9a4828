"""RI inferences -> HL7 v2.5.1 ORU^R01 result and alert messages.

Layout of an outbound message (identifiers are the configurable defaults)::

    MSH  sending app/facility from [outbound], receiving app/facility from the destination,
         ORU^R01^ORU_R01, a new control id, MSH-11 copied from the inbound message
    PID, PD1, PV1, PV2   copied from the inbound message (the patient of that OBR group),
                         without the fields MSH-12's version withdrew (outbound_version)
    ORC, OBR             copied from the inbound OBR group (same placer/filler order numbers,
                         accession, OBR-16 ordering provider, OBR-32 reading radiologist);
                         OBR-1 renumbered to 1
    per inference n (OBX-4 = n for every OBX of the group):
      OBX  main: OBX-3 = identifier of the kind (e.g. RI-CRIT^Critical result^RIGW),
           OBX-2/5 coded value (CWE: SCT / RADLEX / LN codes from the inference),
           OBX-8 abnormal flag (AA critical, A abnormal or actionable, N negated/normal),
           OBX-11 F (C when the inbound result status was C), OBX-17 ACR actionable-finding
           category (RadLex) on critical results
      OBX  qualifiers (anatomy, laterality, sizes as NM/SN with UCUM units, score value, ...)
      OBX  RI-EVID (TX): the report words the inference rests on
      OBX  RI-SRC (ST): OBX-1 set id(s) of the inbound OBX(s) holding that evidence
    alerts only: a final group COMMUNICATED^Already communicated (CWE Y) + NTE when the
    report already documents the communication of the result.

Errors: ``OutboundConfigError(key, message)`` for a bad ``[outbound]`` setting;
``OutboundMappingError`` when the inbound message cannot supply the copied segments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ri_engine.models import (
    FollowupCommunicationInference, Inference, RadiologyInsightsData, token_spans,
)

from .outbound_copy import InboundCopyError, order_group, with_field, without_fields
from .outbound_fields import (
    ENCODING_CHARACTERS, FIELD_SEP, REPETITION_SEP, components, escape, hl7_timestamp,
    local_cwe, segment,
)
from .outbound_obx import CRITICAL, DEFAULT_IDENTIFIERS, YES, Obx, inference_rows
from .outbound_version import withdrawn_fields
from .policy import SUPPORTED_VERSIONS

CHARSETS = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii"}
# MSH-12 values the messages above can declare: they are written to v2.5.1 (CWE-coded OBX
# values, "UNICODE UTF-8" in MSH-18 by default), whose segments the later versions keep (the
# fields they withdrew are left out of the copied segments: outbound_version); before v2.5,
# table 0211 has no "UNICODE UTF-8".  Any other string would misdeclare
# every result and alert sent.
VERSIONS = SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.index("2.5"):]
# ACR actionable-finding categories (RadLex, DICOM CID 7035), written in OBX-17.
ACR_CATEGORY_1 = ("RID49480", "ACR Category 1 Actionable Finding", "RADLEX")


class OutboundConfigError(ValueError):
    """A setting of ``[outbound]`` is invalid; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class OutboundMappingError(ValueError):
    """The inbound message lacks what the outbound message must copy (MSH, OBR group)."""


@dataclass(frozen=True)
class Addressing:
    """MSH-5/MSH-6 of messages to one destination."""

    receiving_application: str = ""
    receiving_facility: str = ""


def _default_identifiers() -> dict[str, tuple[str, str, str]]:
    return {k: (code, text, "RIGW") for k, (code, text) in DEFAULT_IDENTIFIERS.items()}


@dataclass(frozen=True)
class OutboundFormat:
    """How outbound messages are written (``[outbound]`` in gateway.toml)."""

    sending_application: str = "RI-GATEWAY"
    sending_facility: str = "RIGW"
    version: str = "2.5.1"
    charset: str = "UNICODE UTF-8"
    local_system: str = "RIGW"
    evidence: bool = True
    identifiers: Mapping[str, tuple[str, str, str]] = field(default_factory=_default_identifiers)

    @property
    def codec(self) -> str:
        return CHARSETS[self.charset]

    def identifier(self, key: str) -> str:
        code, text, system = self.identifiers.get(key) or (f"RI-{key.upper()}", key, self.local_system)
        return local_cwe(code, text, system)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "outbound") -> OutboundFormat:
        known = {"sending_application", "sending_facility", "version", "charset",
                 "local_system", "evidence", "identifiers"}
        for key in data:
            if key not in known:
                raise OutboundConfigError(f"{prefix}.{key}", "unknown key")
        kwargs: dict[str, Any] = {}
        for key in ("sending_application", "sending_facility", "version", "charset", "local_system"):
            if key in data:
                value = data[key]
                if not isinstance(value, str):
                    raise OutboundConfigError(f"{prefix}.{key}", "must be a string")
                if any(ch in value for ch in FIELD_SEP + ENCODING_CHARACTERS):
                    raise OutboundConfigError(f"{prefix}.{key}", "must not contain HL7 delimiters")
                kwargs[key] = value
        if "charset" in kwargs and kwargs["charset"] not in CHARSETS:
            raise OutboundConfigError(f"{prefix}.charset",
                                      f"must be one of {', '.join(sorted(CHARSETS))}")
        if "version" in kwargs and kwargs["version"] not in VERSIONS:
            raise OutboundConfigError(
                f"{prefix}.version", f"must be an HL7 version outbound messages can be written "
                                     f"in, one of {', '.join(VERSIONS)}; got {kwargs['version']!r}")
        if "version" in kwargs:
            # Read at start: the first report routed afterwards need not wait for
            # hl7apy's tables of a version that withdrew fields (outbound_version).
            withdrawn_fields(kwargs["version"])
        if "evidence" in data:
            if not isinstance(data["evidence"], bool):
                raise OutboundConfigError(f"{prefix}.evidence", "must be true or false")
            kwargs["evidence"] = data["evidence"]
        local = kwargs.get("local_system", "RIGW")
        identifiers = {k: (code, text, local) for k, (code, text) in DEFAULT_IDENTIFIERS.items()}
        overrides = data.get("identifiers", {})
        if not isinstance(overrides, Mapping):
            raise OutboundConfigError(f"{prefix}.identifiers", "must be a table")
        for key, value in overrides.items():
            where = f"{prefix}.identifiers.{key}"
            if key not in DEFAULT_IDENTIFIERS:
                raise OutboundConfigError(where, "unknown identifier key")
            parts = value.split("^") if isinstance(value, str) else []
            if len(parts) != 3 or not all(parts):
                raise OutboundConfigError(where, 'must be "CODE^Text^SYSTEM"')
            identifiers[key] = (parts[0], parts[1], parts[2])
        return cls(**kwargs, identifiers=identifiers)


@dataclass(frozen=True)
class OutboundMessage:
    """A built message: its MSH-10, the text (CR-separated segments) and its charset."""

    control_id: str
    text: str
    codec: str = "utf-8"

    def payload(self) -> bytes:
        return self.text.encode(self.codec, errors="replace")


class SourceMap(Protocol):
    def source_of(self, offset: int) -> Any: ...


class Report(Protocol):
    """What the builders read of ``mappings.inbound.MappedReport``."""

    request: RadiologyInsightsData
    obr_index: int  # 1-based OBR group number
    result_status: str | None


def build_result_oru(inbound_text: str, report: Report, inferences: Sequence[Inference], *,
                     control_id: str, now: dt.datetime, addressing: Addressing = Addressing(),
                     fmt: OutboundFormat | None = None) -> OutboundMessage:
    """The full result message: one OBX group per inference, in the engine's order."""
    fmt = fmt or OutboundFormat()
    body = _observations(report, inferences, fmt)
    return _message(inbound_text, report, body, control_id, now, addressing, fmt)


def build_alert_oru(inbound_text: str, report: Report, alerting: Sequence[Inference], *,
                    control_id: str, now: dt.datetime, addressing: Addressing = Addressing(),
                    communicated: FollowupCommunicationInference | None = None,
                    fmt: OutboundFormat | None = None) -> OutboundMessage:
    """An alert: only the alerting inferences, marked when already communicated."""
    fmt = fmt or OutboundFormat()
    body = _observations(report, alerting, fmt)
    if communicated is not None:
        group = str(len(alerting) + 1)
        body.append((group, Obx("CWE", fmt.identifier("communicated"), local_cwe(*YES))))
        body.append((group, _communication_note(communicated)))
    return _message(inbound_text, report, body, control_id, now, addressing, fmt)


def readdress(payload: bytes, addressing: Addressing, control_id: str) -> bytes:
    """One of our outbound messages, sent to another destination: MSH-5/MSH-6 from
    ``addressing`` and MSH-10 = ``control_id``, every other byte as it was.

    Only the MSH segment is decoded (in the charset its MSH-18 names, UTF-8 when it names
    none this module writes), so the report text after it is carried over byte for byte.
    Raises :class:`OutboundMappingError` for a payload that is not one of ours.
    """
    end = payload.find(b"\r")
    head, rest = (payload, b"") if end < 0 else (payload[:end], payload[end:])
    try:
        fields = head.decode("latin-1").split("|")
        # fields[n - 1] is MSH-n (MSH-1 is the separator itself)
        codec = CHARSETS.get(fields[17], "utf-8") if len(fields) > 17 else "utf-8"
        fields = head.decode(codec).split("|")
    except UnicodeDecodeError:
        raise OutboundMappingError("outbound message: MSH not in its declared charset") from None
    if fields[0] != "MSH" or len(fields) < 12 or fields[1] != ENCODING_CHARACTERS:
        raise OutboundMappingError("outbound message: not an MSH written by this gateway")
    fields[4] = escape(addressing.receiving_application)
    fields[5] = escape(addressing.receiving_facility)
    fields[9] = escape(control_id)
    return "|".join(fields).encode(codec, errors="replace") + rest


def carries_critical_result(payload: bytes) -> bool:
    """Whether one of our outbound messages holds a critical result: an OBX whose OBX-8 is
    ``AA``, which :mod:`mappings.outbound_obx` writes for criticalResult and nothing else.

    Read on the bytes: the separators and the flag are ASCII in every charset written here.
    """
    return any(segment.startswith(b"OBX|") and segment.split(b"|")[8:9] == [CRITICAL.encode()]
               for segment in payload.split(b"\r"))


def besides_the_order(payload: bytes) -> bytes:
    """One of our outbound messages without its MSH, ORC and OBR: the patient, the visit
    and every OBX group and NTE, as sent. Two alerts of one inbound message that are equal
    in this page the same results about the same patient, whichever order each names.

    Read on the bytes: the separators are ASCII in every charset written here.
    """
    return b"\r".join(segment for segment in payload.split(b"\r")
                       if not segment.startswith((b"MSH|", b"ORC|", b"OBR|")))


def _communication_note(inf: FollowupCommunicationInference) -> str:
    parts = ["Already documented as communicated in the report"]
    if inf.recipient:
        parts.append("to " + ", ".join(inf.recipient))
    if inf.communicated_at:
        parts.append("at " + ", ".join(inf.communicated_at))
    parts.append("acknowledged" if inf.was_acknowledged else "not acknowledged")
    return "; ".join(parts)


Row = tuple[str, "Obx | str"]  # (OBX-4 group, OBX row or NTE text)


def _observations(report: Report, inferences: Sequence[Inference], fmt: OutboundFormat) -> list[Row]:
    text = _document_text(report)
    rows: list[Row] = []
    for n, inf in enumerate(inferences, start=1):
        group = str(n)
        for obx in inference_rows(inf, fmt.identifier, fmt.local_system):
            rows.append((group, obx))
        spans = sorted(token_spans(inf.extension))
        if fmt.evidence and spans and text:
            rows.append((group, Obx("TX", fmt.identifier("evidence"), escape(_quote(text, spans)))))
        sources = _sources(report, spans)
        if sources:
            rows.append((group, Obx("ST", fmt.identifier("source"),
                                    REPETITION_SEP.join(escape(s) for s in sources))))
    return rows


def _document_text(report: Report) -> str:
    for patient in report.request.patients:
        for doc in patient.patient_documents or []:
            return doc.content.value
    return ""


def _quote(text: str, spans: list[tuple[int, int]]) -> str:
    """The evidence words, joined by the text between them when that is only spacing."""
    out: list[str] = []
    last_end: int | None = None
    for offset, length in spans:
        if offset < 0 or offset + length > len(text):
            continue
        if last_end is not None:
            if offset < last_end:
                offset = last_end
            gap = text[last_end:offset]
            out.append(gap if len(gap) <= 3 and not gap.strip() else " ... ")
        out.append(text[offset:offset + length])
        last_end = max(offset + length, last_end or 0)
    return " ".join("".join(out).split())


def _sources(report: Report, spans: list[tuple[int, int]]) -> list[str]:
    """OBX-1 set ids of the inbound OBXs that hold the evidence, in report order."""
    source_map = getattr(report, "source_map", None)
    if source_map is None:
        return []
    found: list[str] = []
    for offset, _length in spans:
        try:
            ref = source_map.source_of(offset)
        except (LookupError, ValueError):
            continue
        set_id = getattr(ref, "obx_set_id", None)
        if set_id and str(set_id) not in found:
            found.append(str(set_id))
    return found


def _message(inbound_text: str, report: Report, body: list[Row], control_id: str,
             now: dt.datetime, addressing: Addressing, fmt: OutboundFormat) -> OutboundMessage:
    try:
        group = order_group(inbound_text, report.obr_index)
    except InboundCopyError as exc:
        raise OutboundMappingError(str(exc)) from exc
    status = "C" if (report.result_status or "").upper() == "C" else "F"
    msh = segment(
        "MSH", ENCODING_CHARACTERS, escape(fmt.sending_application), escape(fmt.sending_facility),
        escape(addressing.receiving_application), escape(addressing.receiving_facility),
        hl7_timestamp(now), "", components("ORU", "R01", "ORU_R01"), escape(control_id),
        group.processing_id or "P", fmt.version, "", "", "", "", "", fmt.charset)
    copied = [*group.patient, *group.visit, *([group.order] if group.order else []),
              with_field(group.observation_request, 1, "1")]
    withdrawn = withdrawn_fields(fmt.version)
    segments = [msh, *(without_fields(s, withdrawn.get(s[:3], frozenset())) for s in copied)]
    set_id = 0
    for sub_id, row in body:
        if isinstance(row, str):
            segments.append(segment("NTE", "1", "L", escape(row)))
            continue
        set_id += 1
        method = local_cwe(*ACR_CATEGORY_1) if row.flag == "AA" else row.method
        segments.append(segment(
            "OBX", str(set_id), row.value_type, row.identifier, sub_id, row.value, row.units, "",
            row.flag, "", "", status, "", "", row.observed_at, "", "", method))
    return OutboundMessage(control_id, "\r".join(segments) + "\r", fmt.codec)
