"""``check_oru`` (the pre-ACK content check) against ``map_oru`` (the full mapping).

Property: for every message, the check raises exactly what the mapping raises (class,
table 0357 code and location), and passes where the mapping succeeds.  Messages: every
file of the shared corpus and the builders' samples, each with systematic mutations that
reach every ContentError case (segments dropped, the fields the rules read blanked one
at a time and all together, PID moved after the OBR), under several mapping
configurations.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mappings.config import MappingConfig
from mappings.decoding import decode_message
from mappings.errors import HL7Error, UnreadableHeader
from mappings.header import read_header
from mappings.inbound import check_oru, map_oru
from mappings.structure import parse_segments, split_segments

from oru_builder import obx, oru, segment

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7"
FILES = sorted(CORPUS.glob("*.hl7")) if CORPUS.is_dir() else []

# The fields the ContentError rules read, by segment id (field numbers).
RULE_FIELDS = {"PID": (2, 3, 4), "OBR": (7, 22), "MSH": (7,), "OBX": (2, 5, 14)}

CONFIGS = {
    "default": MappingConfig(),
    "obr7-only": MappingConfig(created_at_sources=("OBR-7",)),
    "obx14-first": MappingConfig(created_at_sources=("OBX-14", "OBR-7")),
    "authority": MappingConfig(patient_id_authority="HOSP"),
    "nte-all": MappingConfig(nte="all"),
    "no-exclusions": MappingConfig(excluded_observations=()),
}


def outcome(fn, text: str, config: MappingConfig) -> tuple[object, ...]:
    try:
        result = fn(text, config)
    except HL7Error as exc:
        return (type(exc).__name__, exc.err_code, exc.location)
    return ("ok", result if isinstance(result, int) else len(result))


def builder_samples() -> dict[str, str]:
    second = [segment("OBR", {1: "2", 3: "FIL2", 4: "74177^CT ABD^C4", 7: "20240301113000", 25: "F"}),
              obx(1, "Second report.")]
    return {
        "plain": oru(),
        "two-groups": oru(extra_groups=[second]),
        "no-pid": oru(with_pid=False),
        "no-pv1": oru(with_pv1=False),
        "numeric-only": oru(body=[obx(1, "4.5", "NM")]),
        "blank-text": oru(body=[obx(1, "", "TX"), obx(2, "  ", "TX")]),
        "uid-only": oru(body=[obx(1, "1.2.840.10008.1.2", "ST")]),
        "heading-only": oru(body=[obx(1, "", "TX", ident="&IMP^Impression")]),
        "coded": oru(body=[obx(1, "R91.1^Nodule^I10", "CWE")]),
        "escapes-only": oru(body=[obx(1, "\\.br\\\\.br\\", "FT")]),
        "nte-only": oru(body=["NTE|1|L|A note on the order."]),
        "pid2-only": oru(pid={3: "", 2: "ALT1"}),
        "pid4-only": oru(pid={3: "", 4: "ALT4"}),
        "other-authority": oru(pid={3: "MRN1^^^ELSE^MR"}),
        "pid3-no-id": oru(pid={3: "^^^HOSP^MR"}),
        "bad-dates": oru(obr={7: "notadate", 22: "2024"}),
        "version-2.3": oru(version="2.3"),
        "strict-facility": oru(facility="STRICT"),
        # Fuzzing reproducers: huge FT counts, CDA nested past the limit, an unknown
        # encoding in the XML declaration (each raised inside the check before).
        "ft-huge-counts": oru(body=[obx(1, "A\\.sp 99999999999999999999\\\\.in +99999\\B", "FT")]),
        "cda-too-deep": oru(body=[obx(1, "^text^xml^^<a><section><text>" + "<b>" * 1000 + "x"
                                      + "</b>" * 1000 + "</text></section></a>", "ED")]),
        "cda-too-deep-and-text": oru(body=[obx(1, "^text^xml^^" + "<b>" * 200 + "</b>" * 200, "ED"),
                                           obx(2, "Text.")]),
        "cda-unknown-encoding": oru(body=[obx(1, '^text^xml^^<?xml version="1.0" encoding="x"?><a/>',
                                              "ED")]),
    }


def texts() -> dict[str, str]:
    found = {f"builder:{k}": v for k, v in builder_samples().items()}
    for path in FILES:
        found[f"corpus:{path.name}"] = decode_message(path.read_bytes()).text
    return found


def mutants(text: str, seed: str) -> list[str]:
    """The message, each segment dropped, each rule field blanked, all of them blanked."""
    try:
        fs = read_header(text).field_separator
    except UnreadableHeader:
        return [text]
    lines = text.split("\r")
    rng = random.Random(seed)
    drops: list[int] = list(range(1, len(lines)))
    head = len(lines)
    if len(lines) > 30:  # long reports: the first segments and a sample of the rest
        head = 10
        drops = sorted({*range(1, head), *rng.sample(range(head, len(lines)), 5)})
    out = [text] + ["\r".join(lines[:i] + lines[i + 1:]) for i in drops]
    blanked_all = list(lines)
    for i, line in enumerate(lines[:head]):
        seg_id = line[:3]
        for n in RULE_FIELDS.get(seg_id, ()):
            position = n - 1 if seg_id == "MSH" else n
            fields = line.split(fs)
            if position < len(fields) and fields[position]:
                fields[position] = ""
                out.append("\r".join(lines[:i] + [fs.join(fields)] + lines[i + 1:]))
                all_fields = blanked_all[i].split(fs)
                if position < len(all_fields):
                    all_fields[position] = ""
                    blanked_all[i] = fs.join(all_fields)
    out.append("\r".join(blanked_all))
    pid = next((i for i, line in enumerate(lines) if line.startswith("PID")), None)
    obr = next((i for i, line in enumerate(lines) if line.startswith("OBR")), None)
    if pid is not None and obr is not None and pid < obr:
        moved = lines[:pid] + lines[pid + 1:obr] + [lines[obr], lines[pid]] + lines[obr + 1:]
        out.append("\r".join(moved))
    return out


SAMPLES = texts()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_check_agrees_with_the_full_mapping(name: str) -> None:
    disagreements = []
    # The 529-OBX report takes ~40 ms to map: the default configuration only.
    configs = CONFIGS if SAMPLES[name].count("\r") < 100 else {"default": CONFIGS["default"]}
    for n, text in enumerate(mutants(SAMPLES[name], name)):
        for config_name, config in configs.items():
            expected = outcome(map_oru, text, config)
            actual = outcome(check_oru, text, config)
            if expected != actual:
                disagreements.append((n, config_name, expected, actual))
    assert disagreements == []


def test_every_content_error_case_is_reached() -> None:
    """The mutations above do reach each documented AE reason (so the property covers it)."""
    reached = set()
    for name, text in SAMPLES.items():
        if text.count("\r") >= 100:
            continue
        for mutant in mutants(text, name):
            reached.add(outcome(map_oru, mutant, CONFIGS["default"])[:3])
    assert {("ContentError", "100", "PID"), ("ContentError", "100", "OBR"),
            ("ContentError", "101", "PID-3"), ("ContentError", "101", "OBR-7"),
            ("ContentError", "101", "OBX-5")} <= reached


def test_strict_validation_is_checked_too() -> None:
    config = MappingConfig(validation_by_facility={"STRICT": "strict"})
    broken = oru(facility="STRICT").replace("OBX|1|TX|", "OBX|A1|TX|")  # OBX-1 is SI
    assert outcome(check_oru, broken, config) == outcome(map_oru, broken, config) == (
        "ContentError", "102", "OBX-1")


def test_non_oru_is_unsupported_in_both() -> None:
    text = oru().replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01")
    assert outcome(check_oru, text, MappingConfig()) == outcome(map_oru, text, MappingConfig()) == (
        "UnsupportedMessage", "200", "MSH-9")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_split_segments_reads_what_python_hl7_reads(name: str) -> None:
    text = SAMPLES[name]
    try:
        header = read_header(text)
    except UnreadableHeader:
        pytest.skip("no header")
    assert split_segments(text, header) == parse_segments(text, header)


@pytest.mark.parametrize("encoding", ["^", "^~", "^~\\", "~", "&", "^&", "^~\\&", "^~\\&#"])
def test_split_segments_with_short_or_colliding_encoding_characters(encoding: str) -> None:
    text = oru().replace("MSH|^~\\&|", f"MSH|{encoding}|", 1)
    header = read_header(text)
    try:
        expected: object = parse_segments(text, header)
    except HL7Error as exc:
        expected = (exc.err_code, exc.location)
    try:
        actual: object = split_segments(text, header)
    except HL7Error as exc:
        actual = (exc.err_code, exc.location)
    assert expected == actual


def test_blank_obx_under_a_section_code_is_no_report_text() -> None:
    # A spacer OBX whose OBX-3 names a section must not make a heading line pass for text.
    blank = oru(body=[obx(1, "", ident="18782-3^Study observation^LN"),
                      obx(2, "  ", ident="19005-8^Impression^LN")])
    for config in CONFIGS.values():
        assert outcome(check_oru, blank, config) == outcome(map_oru, blank, config) == (
            "ContentError", "101", "OBX-5")


def test_blank_obx_between_sections_opens_no_heading() -> None:
    text = oru(body=[obx(1, "Lungs are clear.", ident="18782-3^Study observation^LN"),
                     obx(2, "", ident="19005-8^Impression^LN"),
                     obx(3, "No acute disease.", ident="19005-8^Impression^LN")])
    (report,) = map_oru(text, MappingConfig())
    content = report.request.patients[0].patient_documents[0].content.value
    assert content.count("IMPRESSION:") == 1
    assert content.index("IMPRESSION:") < content.index("No acute disease.")


REPRO = (b"MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|C1|P|2.5\rPID|||M1\rOBR|1|||X|||20240101\r"
         b"OBX|1|")


@pytest.mark.parametrize(("obx_tail", "expected"), [
    (b"FT|X||A\\.sp 99999999999999999999\\", ("ok", 1)),
    (b"FT|X||A\\.sp 10000000\\B", ("ok", 1)),
    (b"ED|X||^text^xml^^<a><section><text>" + b"<b>" * 1000 + b"x" + b"</b>" * 1000
     + b"</text></section></a>", ("ContentError", "101", "OBX-5")),
    (b'ED|X||^text^xml^^<?xml version="1.0" encoding="x"?><a/>', ("ContentError", "101", "OBX-5")),
])
def test_fuzzing_reproducers_get_the_answer_without_the_offending_part(obx_tail: bytes,
                                                                       expected: tuple) -> None:
    # Each raised (OverflowError, RecursionError, LookupError) and was answered AR 207.
    text = decode_message(REPRO + obx_tail).text
    assert outcome(check_oru, text, MappingConfig()) == expected
    assert outcome(map_oru, text, MappingConfig()) == expected
    if expected[0] == "ok":
        (report,) = map_oru(text)
        assert report.document_text == "A" + "\n" * 21 + ("B" if text.endswith("B") else "")


@pytest.mark.parametrize(("obr25", "body", "expected"), [
    ("X", [], ("ok", 1)),  # order cancelled, sent as OBR-25 alone
    ("S", [], ("ok", 1)),  # scheduled, no result yet
    ("X", [obx(1, "", status="X")], ("ok", 1)),
    ("", [obx(1, "", status="X")], ("ok", 1)),  # the status read from OBX-11
    ("F", [], ("ContentError", "101", "OBX-5")),  # a final result needs its text
    ("", [], ("ContentError", "101", "OBX-5")),  # no status: the configured default (F)
    ("C", [obx(1, "  ")], ("ContentError", "101", "OBX-5")),
])
def test_a_message_stating_that_no_result_exists_needs_no_report_text(
        obr25: str, body: list[str], expected: tuple) -> None:
    text = oru(obr={25: obr25}, body=body)
    for config in CONFIGS.values():
        assert outcome(check_oru, text, config) == outcome(map_oru, text, config) == expected


def test_one_group_stating_no_result_does_not_excuse_a_final_group_without_text() -> None:
    final = [segment("OBR", {1: "2", 3: "FIL2", 4: "74177^CT ABD^C4", 7: "20240301113000",
                             25: "F"})]
    text = oru(obr={25: "X"}, body=[], extra_groups=[final])
    assert outcome(check_oru, text, MappingConfig()) == outcome(map_oru, text, MappingConfig()) \
        == ("ContentError", "101", "OBX-5")
