"""ORU^R01 -> RI requests: one ``MappedReport`` per ORC/OBR group.

Parser choice, measured with ``bench/parse_choice.py`` (a 3.4 KB ORU^R01 with 20 OBX,
same process, best of 5 rounds, 2-core container): python-hl7 ``hl7.parse`` 1.6 ms;
hl7apy ``parse_message`` (tolerant, groups) 42 ms (x26); hl7apy strict parse + validate
57 ms (x36); the whole ``map_oru`` without validation 2.3 ms (x1.4). python-hl7 is the hot path;
hl7apy runs only when ``validation`` is ``lenient`` or ``strict`` for the sending facility
(see mappings/validation.py).

Field mapping (defaults; every choice is a key of ``MappingConfig``/config/mappings.toml):

========================  ==========================================================
RI field                  HL7 source
========================  ==========================================================
patient id                PID-3 repetition whose type (PID-3.5) comes first in
                          ``patient_id_types`` (MR, MRN, PI, PT), else the first
                          PID-3, else PID-2, else PID-4 (101 PID-3 when none)
details.birthDate         PID-7 date part (partial dates stay partial, TZ ignored)
details.sex               PID-8 through ``sex_map`` (unknown codes -> unspecified)
encounter id              first of ``encounter_id_sources``: PV1-19, PID-18, accession,
                          control id (MSH-10)
encounter class           PV1-2 through ``encounter_class_map``
encounter period          PV1-44 / PV1-45; without PV1-44 the start is OBR-7
document id               the accession, else OBR-3, else OBR-2, else MSH-10-<n>
document createdAt        first of ``created_at_sources``: OBR-7, OBR-22, MSH-7
document authors          OBR-32 (id and name of each repetition)
orderedProcedures[0]      OBR-4: code, display, coding system through
                          ``coding_systems`` (LN -> LOINC, CPT/C4 -> CPT, ...); the
                          alternate triplet is a second coding; description = text
content                   OBX text (mappings/report_text.py), one LF between pieces
========================  ==========================================================

Kept on the ``MappedReport`` for later stages: accession (first of ``accession_sources``:
OBR-18, OBR-3, ORC-3), placer/filler order numbers, OBR-25 result status (empty ->
the common OBX-11 status, else ``missing_status``), the analyse decision (statuses in
``analyse_statuses``, default F and C, and some report text), OBR-24 modality hint (else
the procedure table's modality), OBR-16 ordering provider (else ORC-12), the procedure
table entry (modality, body part, laterality, contrast), ED/RP attachments, warnings
about fields that could not be read (never their contents) and the offset map.

Errors (ContentError -> AE): no PID before an OBR -> 100 PID; no OBR -> 100 OBR; no
patient identifier -> 101 PID-3; no usable date for createdAt -> 101 OBR-7; no report
text in any group -> 101 OBX-5; unparseable segments -> 102. A message type other than
ORU -> UnsupportedMessage 200.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ri_engine.models import (
    CodeableConcept, Coding, DocumentAdministrativeMetadata, DocumentAuthor, DocumentContent,
    OrderedProcedure, PatientDetails, PatientDocument, PatientEncounter, PatientRecord, Period,
    RadiologyInsightsData,
)

from .authority import Authority, authority_of, identifier_authority
from .config import MappingConfig
from .decoding import charset_codec
from .datatypes import (
    Coded, Person, cnn, coded, component, components, hl7_date, hl7_datetime, is_hl7_datetime, repetitions, xcn,
)
from .datatypes import text as field_text
from .errors import ContentError, UnsupportedMessage
from .header import Delimiters, MessageHeader, read_header
from .procedures import ProcedureInfo, describe_procedure
from .report_text import Attachment, SourceMap, SourceRef, build_report_text, has_report_text
from .structure import (
    LocatedGroup, OrderGroup, ParsedMessage, Segment, first_message, group_segments, locate_groups,
    read_structure, split_segments,
)
from .validation import validate_structure

__all__ = ["NO_RESULT_STATUSES", "ORDER_CANCELLED", "MappedReport", "SourceMap", "SourceRef",
           "check_oru", "map_oru", "patient_identities"]


@dataclass(frozen=True)
class MappedReport:
    """One RI request (one OBR group) plus what the gateway needs to route and audit it."""

    request: RadiologyInsightsData
    accession: str | None
    placer_order: str | None
    filler_order: str | None
    result_status: str | None
    analyse: bool
    skip_reason: str | None
    modality_hint: str | None
    obr_index: int
    source_map: SourceMap
    control_id: str = ""
    sending_facility: str = ""
    ordering_provider: Person | None = None
    procedure: ProcedureInfo | None = None
    attachments: tuple[Attachment, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def document_text(self) -> str:
        return self.request.patients[0].patient_documents[0].content.value  # type: ignore[index]


def map_oru(text: str, config: MappingConfig | None = None) -> list[MappedReport]:
    """Map a decoded ORU^R01 (CR-separated text) to one MappedReport per OBR group."""
    config = config or MappingConfig()
    header = _oru_header(text)
    facility = component(header.sending_facility, 1, header.delimiters)
    warnings = validate_structure(first_message(text), config.validation_for(facility))
    parsed = read_structure(text, header)
    if not parsed.groups:
        raise ContentError("OBR segment is missing", err_code="100", location="OBR")
    charset = _charset(header, config)
    reports = [_map_group(parsed, group, config, charset, warnings) for group in parsed.groups]
    if not any(r.document_text.strip() for r in reports) and \
            not all(r.result_status in NO_RESULT_STATUSES for r in reports):
        raise ContentError("no report text in any OBX-5", err_code="101", location="OBX-5")
    return reports


def check_oru(text: str, config: MappingConfig | None = None, header: MessageHeader | None = None
              ) -> int:
    """The ContentErrors :func:`map_oru` would raise, found without mapping; the group count.

    Raises exactly what ``map_oru(text, config)`` raises for an ``HL7Error`` (same class,
    code and location, checked in the same order), from the same rules: the groups that
    :func:`~mappings.structure.split_segments` reads with ``str.split``, located in the
    text (:func:`~mappings.structure.locate_groups`), and per group only PID, the
    createdAt date and the patient identifier; the report text is rendered up to its
    first non-blank piece.  hl7apy runs only when the sender's facility is
    validated ``strict`` (``lenient`` never rejects).  What it does not build, and so
    cannot fail on, is everything else ``map_oru`` produces (an unexpected exception
    there is a bug, found after the ACK).  It costs a small fraction of ``map_oru``.
    ``header`` is ``read_header(text)`` when the caller has read it already.
    """
    config = config or MappingConfig()
    header = _oru_header(text, header)
    d = header.delimiters
    # MSH-4 is read only when some facility is validated strictly.
    if "strict" in (config.validation, *config.validation_by_facility.values()) and \
            config.validation_for(component(header.sending_facility, 1, d)) == "strict":
        validate_structure(first_message(text), "strict")
    groups = _groups_to_check(text, header)
    if not groups:
        raise ContentError("OBR segment is missing", err_code="100", location="OBR")
    for group in groups:  # in the order _map_group raises
        if group.pid is None:
            raise ContentError("PID segment is missing", err_code="100", location="PID")
        _created_at_value(config, group, header, d)
        _check_patient_id(group.pid, d, config)
    charset = _charset(header, config)
    if not any(has_report_text(group, d, config, charset) for group in groups) and \
            not _status_only(groups, d, config):
        raise ContentError("no report text in any OBX-5", err_code="101", location="OBX-5")
    return len(groups)


def _status_only(groups: Iterable[OrderGroup | LocatedGroup], d: Delimiters,
                 config: MappingConfig) -> bool:
    """Whether every group states that no result exists (NO_RESULT_STATUSES).

    Such a message needs no report text: an order cancelled (X) or only scheduled (S)
    is often sent as OBR-25 alone. Answered AE, the sender's queue stopped on it (or it
    was never seen: a cancellation after a report withdraws that report's follow-up).
    A final (or unstated) result without text is still an error.
    """
    return all(_result_status(group.obr, group, d, config) in NO_RESULT_STATUSES
               for group in groups)


# HL7 table 0123 result statuses that say no exam result exists: O order received, I in
# progress (specimen in lab), S scheduled but not done, X order cancelled, Y and Z no order
# or patient on record (queries). A report with one is no evidence that the exam was done.
NO_RESULT_STATUSES = frozenset({"O", "I", "S", "X", "Y", "Z"})
# Table 0123 X, "No results available; Order canceled": sent after a report, it withdraws it.
ORDER_CANCELLED = "X"
# Table 0123 statuses that leave no order standing: X order cancelled, Y no order on record
# for this test, Z no record of this patient. Any other status sent after a cancellation
# says the order stands again (reinstated): the later message decides.
NO_ORDER_STATUSES = frozenset({ORDER_CANCELLED, "Y", "Z"})


def patient_identities(text: str, config: MappingConfig | None = None
                       ) -> dict[int, frozenset[tuple[str, Authority]]]:
    """Every identifier of each OBR group's patient (by ``obr_index``) with the assigning
    authority that issued it (PID-3.4; without one, the sending facility MSH-4:
    :mod:`mappings.authority`): each PID-3 repetition (of ``patient_id_authority`` when
    set), else the identifier :func:`map_oru` falls back to (PID-2, PID-4).  Two reports
    are of one patient when they share an identifier of one authority
    (:func:`mappings.authority.same_identity`): the same number issued by two hospitals is
    two patients, and a patient listed under a second hospital's MRN beside the first is
    still found.  Read without mapping the reports (a small fraction of the cost); a group
    whose PID is missing or has no identifier is left out, and a message that is not an
    ORU raises what :func:`map_oru` raises.
    """
    config = config or MappingConfig()
    header = _oru_header(text)
    d = header.delimiters
    facility = _sending_facility(header.sending_facility, d)
    found = {}
    for index, group in enumerate(_groups_to_check(text, header), start=1):
        if group.pid is None:
            continue
        identities = frozenset(
            (ident, identifier_authority(_assigning_authority(rep, d), facility))
            for rep, ident in _pid3_identifiers(group.pid, d, config))
        if not identities:
            try:
                identities = frozenset({(_other_patient_id(group.pid, d), facility)})
            except ContentError:
                continue
        found[index] = identities
    return found


def _groups_to_check(text: str, header: MessageHeader) -> tuple[OrderGroup | LocatedGroup, ...]:
    """The order groups of ``split_segments(text, header)``: located in the text without
    splitting every segment, unless python-hl7 has to read the message."""
    located = locate_groups(text, header)
    if located is not None:
        return located
    return group_segments(header, split_segments(text, header)).groups


def _oru_header(text: str, header: MessageHeader | None = None) -> MessageHeader:
    header = header or read_header(text)
    if not header.is_report:
        raise UnsupportedMessage(f"only ORU messages can be mapped, not {header.message_type or '(empty)'}",
                                 err_code="200", location="MSH-9")
    return header


def _charset(header: MessageHeader, config: MappingConfig) -> str:
    for name in header.character_sets:
        codec = charset_codec(name)
        if codec:
            return codec
    return charset_codec(config.default_charset) or "utf-8"


def _map_group(parsed: ParsedMessage, group: OrderGroup, config: MappingConfig, charset: str,
               base_warnings: tuple[str, ...]) -> MappedReport:
    header, d = parsed.header, parsed.delimiters
    # check_oru mirrors the errors raised here, in this order: PID, createdAt, patient id.
    if group.pid is None:
        raise ContentError("PID segment is missing", err_code="100", location="PID")
    warnings = list(base_warnings)
    pid, pv1, obr, orc = group.pid, group.pv1, group.obr, group.orc
    report = build_report_text(group, d, config, charset)
    warnings.extend(report.warnings)

    placer = component(obr[2], 1, d) or (component(orc[2], 1, d) if orc else "") or None
    filler = component(obr[3], 1, d) or (component(orc[3], 1, d) if orc else "") or None
    accession = _first_field(config.accession_sources, {"OBR": obr, "ORC": orc}, d)
    procedure_code = coded(obr[4], d)
    status = _result_status(obr, group, d, config)
    created_at = _created_at(config, group, header, d)
    document_id = accession or filler or placer or f"{header.control_id}-{group.index}"

    encounter = _encounter(config, pid, pv1, obr, d, accession, filler, placer, header, warnings)
    sex_code = component(pid[8], 1, d).upper()
    sex = config.sex_map.get(sex_code, "unspecified") if sex_code else None
    if sex_code and sex_code not in config.sex_map:
        warnings.append("PID-8 sex code is not in sex_map")
    birth_raw = component(pid[7], 1, d)
    birth_date = hl7_date(birth_raw) if birth_raw else None
    if birth_raw and birth_date is None:
        warnings.append("PID-7 is not a valid date")

    system = config.coding_systems.get(procedure_code.system.upper()) if procedure_code.system else None
    ordered = _ordered_procedures(procedure_code, system, config, warnings)
    body_site = component(components(obr[15], d)[3], 1, d) if len(components(obr[15], d)) > 3 else ""
    info = describe_procedure(system, procedure_code.code, procedure_code.label, body_site=body_site,
                              use_table=config.use_procedure_table) if procedure_code.code else None
    section = component(obr[24], 1, d).upper()
    modality = config.modality_sections.get(section) or (info.modality if info else None)

    authors = [DocumentAuthor(id=p.id or None, full_name=p.full_name or None)
               for p in (cnn(r, d) for r in repetitions(obr[32], d)) if p is not None]
    provider = xcn(repetitions(obr[16], d)[0], d) or (xcn(repetitions(orc[12], d)[0], d) if orc else None)

    has_text = bool(report.text.strip())
    analyse = has_text and status is not None and status in config.analyse_statuses
    skip_reason = None
    if not has_text:
        skip_reason = "no report text"
    elif not analyse:
        skip_reason = f"result status {status or '(none)'} is not analysed"

    document = PatientDocument(
        type="note", clinical_type=config.clinical_type, id=document_id, language=config.document_language,
        created_at=created_at, authors=authors or None, specialty_type=config.specialty_type,
        administrative_metadata=DocumentAdministrativeMetadata(ordered_procedures=ordered,
                                                               encounter_id=encounter.id),
        content=DocumentContent(source_type="inline", value=report.text),
    )
    details = PatientDetails(sex=sex, birth_date=birth_date) if sex or birth_date else None  # type: ignore[arg-type]
    record = PatientRecord(id=_patient_id(pid, d, config), details=details, encounters=[encounter],
                           patient_documents=[document])
    return MappedReport(
        request=RadiologyInsightsData(patients=[record]), accession=accession, placer_order=placer,
        filler_order=filler, result_status=status, analyse=analyse, skip_reason=skip_reason,
        modality_hint=modality, obr_index=group.index, source_map=report.source_map,
        control_id=header.control_id, sending_facility=component(header.sending_facility, 1, d),
        ordering_provider=provider, procedure=info, attachments=report.attachments,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _patient_id(pid: Segment, d: Delimiters, config: MappingConfig) -> str:
    candidates = [(_id_rank(rep, d, config), ident) for rep, ident in _pid3_identifiers(pid, d, config)]
    if candidates:
        return min(candidates, key=lambda c: c[0])[1]
    return _other_patient_id(pid, d)


def _check_patient_id(pid: Segment, d: Delimiters, config: MappingConfig) -> None:
    """Raises what :func:`_patient_id` raises, without ranking the identifiers."""
    if next(_pid3_identifiers(pid, d, config), None) is None:
        _other_patient_id(pid, d)


def _pid3_identifiers(pid: Segment, d: Delimiters, config: MappingConfig) -> Iterator[tuple[str, str]]:
    """Each PID-3 repetition with an identifier (from ``patient_id_authority`` when set)."""
    for rep in repetitions(pid[3], d):
        ident = component(rep, 1, d)
        if not ident:
            continue
        if config.patient_id_authority and _authority(rep, d) != config.patient_id_authority:
            continue
        yield rep, ident


def _authority(rep: str, d: Delimiters) -> str:
    """The assigning authority's namespace id (PID-3.4.1) of a PID-3 repetition."""
    return _assigning_authority(rep, d).namespace


def _assigning_authority(rep: str, d: Delimiters) -> Authority:
    """PID-3.4 of a PID-3 repetition, split into its subcomponents before it is unescaped:
    ``BARNES\\T\\JEWISH`` is one name, not a namespace and a universal id."""
    comps = rep.split(d.component) if d.component else [rep]
    return authority_of(comps[3] if len(comps) > 3 else "", d.subcomponent or "&",
                        lambda part: field_text(part, d))


def _sending_facility(msh4: str, d: Delimiters) -> Authority:
    """MSH-4 as an HD (its parts are components), unescaped part by part.  Some senders
    write it as CX-4 is written (``GENHOSP&1.2.3&ISO``): read that way when it has no
    component, or a bare identifier of that hospital would match none of its own."""
    separator = d.component or "^"
    if separator not in msh4 and d.subcomponent and d.subcomponent in msh4:
        separator = d.subcomponent
    return authority_of(msh4, separator, lambda part: field_text(part, d))


def _id_rank(rep: str, d: Delimiters, config: MappingConfig) -> int:
    """Where the repetition's identifier type (PID-3.5) comes in ``patient_id_types``."""
    id_type = component(rep, 5, d).upper()
    types = config.patient_id_types
    return types.index(id_type) if id_type in types else len(types)


def _other_patient_id(pid: Segment, d: Delimiters) -> str:
    """PID-2, else PID-4, when PID-3 has no identifier; ContentError 101 PID-3 without one."""
    for n in (2, 4):
        ident = component(repetitions(pid[n], d)[0], 1, d)
        if ident:
            return ident
    raise ContentError("PID-3 patient identifier is missing", err_code="101", location="PID-3")


def _first_field(sources: tuple[str, ...], segments: dict[str, Segment | None], d: Delimiters) -> str | None:
    for source in sources:
        seg_id, _, number = source.partition("-")
        seg = segments.get(seg_id)
        if seg is not None:
            value = component(seg[int(number)], 1, d)
            if value:
                return value
    return None


def _result_status(obr: Segment, group: OrderGroup | LocatedGroup, d: Delimiters,
                   config: MappingConfig) -> str | None:
    status = component(obr[25], 1, d).upper()
    if status:
        return status
    obx_statuses = {component(s[11], 1, d).upper() for s in group.obx} - {""}
    if len(obx_statuses) == 1:
        return obx_statuses.pop()
    return config.missing_status


def _created_at(config: MappingConfig, group: OrderGroup, header: MessageHeader, d: Delimiters) -> str:
    return hl7_datetime(_created_at_value(config, group, header, d))  # type: ignore[return-value]


def _created_at_value(config: MappingConfig, group: OrderGroup | LocatedGroup, header: MessageHeader,
                      d: Delimiters) -> str:
    """The first ``created_at_sources`` value that is a valid date-time, as sent.

    The group's OBX are read only when OBX-14 is reached.  Raises ContentError 101 OBR-7 when none is.
    """
    for source, number in _field_numbers(config.created_at_sources):
        if source == "MSH-7":
            values: Iterable[str] = [header.message_datetime]
        elif source == "OBX-14":
            values = (s[14] for s in group.obx)
        else:
            values = [group.obr[number]]
        for value in values:
            first = component(value, 1, d)
            if is_hl7_datetime(first):
                return first
    raise ContentError("no observation date for the report (OBR-7)", err_code="101", location="OBR-7")


@functools.lru_cache(maxsize=16)  # one tuple per configuration
def _field_numbers(sources: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """Each ``SEG-n`` source with its field number n."""
    return tuple((source, int(source.partition("-")[2])) for source in sources)


def _encounter(config: MappingConfig, pid: Segment, pv1: Segment | None, obr: Segment, d: Delimiters,
               accession: str | None, filler: str | None, placer: str | None, header: MessageHeader,
               warnings: list[str]) -> PatientEncounter:
    sources = {
        "PV1-19": component(pv1[19], 1, d) if pv1 else "",
        "PID-18": component(pid[18], 1, d),
        "accession": accession or "", "filler_order": filler or "", "placer_order": placer or "",
        "control_id": header.control_id,
    }
    encounter_id = next((sources[s] for s in config.encounter_id_sources if sources.get(s)), header.control_id)
    encounter_class = None
    start = end = None
    if pv1 is not None:
        class_code = component(pv1[2], 1, d).upper()
        encounter_class = config.encounter_class_map.get(class_code)
        if class_code and encounter_class is None:
            warnings.append("PV1-2 patient class has no RI encounter class")
        start = hl7_datetime(component(repetitions(pv1[44], d)[0], 1, d))
        end = hl7_datetime(component(repetitions(pv1[45], d)[0], 1, d))
    if start is None and config.encounter_period_from_observation:
        start = hl7_datetime(component(obr[7], 1, d))
    period = Period(start=start, end=end) if start or end else None
    return PatientEncounter(id=encounter_id, period=period, class_=encounter_class)  # type: ignore[arg-type]


def _ordered_procedures(code: Coded, system: str | None, config: MappingConfig,
                        warnings: list[str]) -> list[OrderedProcedure] | None:
    if not code.code and not code.alt_code:
        warnings.append("OBR-4 universal service identifier is empty")
        return None
    codings = []
    if code.code:
        codings.append(Coding(system=system, code=code.code, display=code.display or None))
    if code.alt_code:
        alt_system = config.coding_systems.get(code.alt_system.upper()) if code.alt_system else None
        codings.append(Coding(system=alt_system, code=code.alt_code, display=code.alt_display or None))
    return [OrderedProcedure(code=CodeableConcept(coding=codings), description=code.label)]
