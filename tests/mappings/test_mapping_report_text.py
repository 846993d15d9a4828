"""Report text: value types, repetitions, headings, NTE, ED/RP/CDA and the offset map."""

from __future__ import annotations

import base64

import pytest
from oru_builder import obx, oru, segment

from mappings.config import MappingConfig
from mappings.errors import ContentError
from mappings.inbound import check_oru, map_oru
from mappings.report_text import Attachment, SourceRef, cda_text


def report_for(body: list[str], config: MappingConfig | None = None, **kwargs):
    (report,) = map_oru(oru(body=body, **kwargs), config)
    return report


@pytest.mark.parametrize(("version"), ["2.3", "2.4", "2.5", "2.6", "2.7", "2.8"])
def test_text_types_and_repetitions(version: str) -> None:
    body = [
        obx(1, "Line one~Line two"),
        obx(2, "A\\F\\B\\.br\\C", "FT"),
        obx(3, "Short \\T\\ sweet", "ST"),
        obx(4, "RID5^Pneumothorax^RADLEX~^^^^^^^^Free original text", "CWE"),
        obx(5, "12.5", "NM"),
    ]
    assert report_for(body, version=version).document_text == \
        "Line one\nLine two\nA|B\nC\nShort & sweet\nPneumothorax\nFree original text"


def test_empty_obx_lines_are_blank_lines() -> None:
    body = [obx(1, "First"), obx(2, ""), obx(3, "Third")]
    assert report_for(body).document_text == "First\n\nThird"


def test_dicom_uids_and_excluded_observations_are_not_text() -> None:
    body = [obx(1, "1.2.840.113619.2.62.994044785528", "ST", "113014^DICOM Study^DCM"),
            obx(2, "1.2.392.200036.9125.0.1", "ST", "^Series Instance UID"),
            obx(3, "1.2.3.4.5", "ST", "X^Some id^L"),
            obx(4, "Version 1.2 of the protocol.", "ST", "X^Note^L"),
            obx(5, "Report body.")]
    assert report_for(body).document_text == "Version 1.2 of the protocol.\nReport body."


@pytest.mark.parametrize(("ident", "heading"), [
    ("&GDT", "FINDINGS:"), ("&IMP", "IMPRESSION:"), ("&ADT", "ADDENDUM:"), ("&REC", "RECOMMENDATION:"),
    ("71020&IMP^Impression", "IMPRESSION:"), ("19005-8^Impression^LN", "IMPRESSION:"),
    ("121070^Findings^DCM", "FINDINGS:"), ("FIND^FINDINGS^L", "FINDINGS:"),
])
def test_section_headings(ident: str, heading: str) -> None:
    body = [obx(1, "first line", ident=ident), obx(2, "second line", ident=ident)]
    assert report_for(body).document_text == f"{heading}\nfirst line\nsecond line"


def test_headings_change_with_sections_and_are_not_repeated() -> None:
    body = [obx(1, "Lungs clear.", ident="&GDT"), obx(2, "IMPRESSION: Normal.", ident="&IMP"),
            obx(3, "Call back.", ident="&REC"), obx(4, "Late note.", ident="&ADT")]
    assert report_for(body).document_text == \
        "FINDINGS:\nLungs clear.\nIMPRESSION: Normal.\nRECOMMENDATION:\nCall back.\nADDENDUM:\nLate note."


def test_configured_section_code() -> None:
    config = MappingConfig.from_dict({"section_headings": {"99fnd": "FINDINGS:"}})
    assert report_for([obx(1, "x", ident="99FND^Findings^L")], config).document_text == "FINDINGS:\nx"


@pytest.mark.parametrize(("mode", "expected"), [
    ("none", "Body."),
    ("obx", "Body.\nResult note."),
    ("all", "Order note.\nBody.\nResult note."),
])
def test_nte_modes(mode: str, expected: str) -> None:
    body = [segment("NTE", {1: "1", 3: "Order note."}), obx(1, "Body."), segment("NTE", {1: "1", 3: "Result note."})]
    assert report_for(body, MappingConfig(nte=mode)).document_text == expected


def test_pdf_is_an_attachment_not_text() -> None:
    pdf = base64.b64encode(b"%PDF-1.3 synthetic").decode()
    body = [obx(1, f"^Application^PDF^Base64^{pdf}", "ED"), obx(2, "Text report."),
            obx(3, "http://pacs.example/r/1^PACS^IMAGE^JPEG", "RP")]
    report = report_for(body)
    assert report.document_text == "Text report."
    seg_index = 5  # MSH, PID, PV1, ORC, OBR, then the OBX
    assert report.attachments == (
        Attachment(seg_index, "1", "ED", "Application", "PDF", "Base64", len(pdf)),
        Attachment(seg_index + 2, "3", "RP", "IMAGE", "JPEG", "", len("http://pacs.example/r/1^PACS^IMAGE^JPEG")),
    )


CDA = ('<?xml version="1.0" encoding="utf-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"><component>'
       '<structuredBody><component><section><title>Findings</title><text><paragraph>Lungs clear.</paragraph>'
       '<paragraph>No effusion<br/>or pneumothorax.</paragraph></text></section></component>'
       '<component><section><title>Impression</title><text><list><item>Normal chest.</item>'
       '<item>No change.</item></list></text></section></component></structuredBody></component>'
       '</ClinicalDocument>')
CDA_TEXT = "FINDINGS:\nLungs clear.\nNo effusion\nor pneumothorax.\nIMPRESSION:\nNormal chest.\nNo change."


def test_cda_text_extraction() -> None:
    assert cda_text(CDA) == CDA_TEXT


@pytest.mark.parametrize("encoding", ["ASCII", "Base64"])
def test_cda_in_ed_becomes_text(encoding: str) -> None:
    data = CDA.replace("&", "\\T\\") if encoding == "ASCII" else base64.b64encode(CDA.encode()).decode()
    report = report_for([obx(1, f"^Text^text/xml^{encoding}^{data}", "ED")])
    assert report.document_text == CDA_TEXT
    assert report.attachments[0].text_extracted is True


def test_unreadable_or_hostile_xml_is_a_warning() -> None:
    hostile = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    report = report_for([obx(1, f"^Text^text/xml^ASCII^{hostile.replace('&', chr(92) + 'T' + chr(92))}", "ED"),
                         obx(2, "Plain text.")])
    assert report.document_text == "Plain text."
    assert report.warnings == ("OBX-5 ED at segment 5 is XML that cannot be read",)


def test_source_map_points_every_character_at_its_segment() -> None:
    body = [obx(1, "Alpha", ident="&GDT"), obx(2, "Beta~Gamma", ident="&IMP"),
            segment("NTE", {1: "1", 3: "Note"})]
    report = report_for(body, MappingConfig(nte="obx"))
    text = report.document_text
    assert text == "FINDINGS:\nAlpha\nIMPRESSION:\nBeta\nGamma\nNote"
    refs = {i: report.source_map.source_of(i) for i in range(len(text))}
    first = SourceRef(5, "1", "&GDT")
    second = SourceRef(6, "2", "&IMP")
    note = SourceRef(7, "1", "", "NTE")
    assert refs[text.index("Alpha")] == first and refs[0] == first
    assert refs[text.index("Gamma")] == second and refs[text.index("IMPRESSION")] == second
    assert refs[text.index("Note")] == note
    assert refs[text.index("\nIMPRESSION")] is None  # the joining line break
    assert report.source_map.source_of(len(text)) is None
    assert report.source_map.source_of(-1) is None


DEEP = "<a><section><text>" + "<b>" * 1000 + "x" + "</b>" * 1000 + "</text></section></a>"
CDA_SECTION = "<ClinicalDocument><component><structuredBody><component><section><title>Impression" \
              "</title><text>Normal.</text></section></component></structuredBody></component></ClinicalDocument>"


@pytest.mark.parametrize("xml", [
    DEEP,
    "<a><section><text>" + "<b>" * 98 + "x" + "</b>" * 98 + "</text></section></a>",  # 101 deep
    "<a><section><text>" + "<br/>" * 50_000 + "</text></section></a>",  # 50,003 elements
    "<a><section><text>unclosed</section></a>",
])
def test_hostile_or_broken_cda_is_an_unreadable_attachment(xml: str) -> None:
    # Treated as any unreadable XML: a warning, no text, and the answer the message would
    # get without it (here the text of the other OBX; alone, no report text at all).
    ed = obx(1, f"^text^xml^^{xml}", "ED")
    report = report_for([ed, obx(2, "Plain text.")])
    assert report.document_text == "Plain text."
    assert report.warnings == ("OBX-5 ED at segment 5 is XML that cannot be read",)
    assert report.attachments[0].text_extracted is False
    for fn in (map_oru, check_oru):
        with pytest.raises(ContentError) as info:
            fn(oru(body=[ed]))
        assert (info.value.err_code, info.value.location) == ("101", "OBX-5")


def test_cda_at_the_depth_and_size_limits_is_read() -> None:
    deep = "<a><section><text>" + "<b>" * 97 + "x" + "</b>" * 97 + "</text></section></a>"  # 100 deep
    wide = "<a><section><text>" + "<br/>" * 49_996 + "y</text></section></a>"  # 49,999 elements
    assert (cda_text(deep), cda_text(wide)) == ("x", "y")


@pytest.mark.parametrize("declaration", [
    '<?xml version="1.0" encoding="x"?>', '<?xml version="1.0" encoding="ISO-8859-1"?>',
    '<?xml version="1.0" encoding="UTF-16"?>', "<?xml version='1.0'?>",
])
def test_the_xml_declaration_does_not_decide_how_decoded_text_is_read(declaration: str) -> None:
    # The ED value is text already decoded with the message charset: an encoding named in
    # the declaration (unknown, or not the one the text came in) would only garble it.
    assert cda_text(declaration + CDA_SECTION.replace("Normal.", "Normal \u00e9 \u2013")) == \
        "IMPRESSION:\nNormal \u00e9 \u2013"
    assert cda_text(declaration + "<a/>") == ""
    with pytest.raises(ContentError):  # no text: answered as without the attachment
        check_oru(oru(body=[obx(1, f"^text^xml^^{declaration}<a/>", "ED")]))


def test_nested_sections_are_rendered_once_each() -> None:
    # Sections inside another section's text or title are not CDA; each is one entry, so
    # the text stays as long as the XML however deep they nest.
    inner = "<section><title>Inner</title><text>" + "y" * 1000 + "</text></section>"
    xml = "<a>" + "<section><title>T<b/>" * 40 + inner + "</title></section>" * 40 + "</a>"
    assert cda_text(xml) == "T:\n" * 40 + "INNER:\n" + "y" * 1000
    xml = "<a>" + "<section><text>t" * 40 + "z" * 1000 + "</text></section>" * 40 + "</a>"
    assert cda_text(xml) == "t\n" * 39 + "t" + "z" * 1000


@pytest.mark.timeout(10)  # milliseconds now; the quadratic pattern took about a minute
def test_long_runs_of_spaces_in_a_narrative_cost_linear_time() -> None:
    xml = "<a><section><text>a" + " " * 200_000 + "b\n \n c" + " \t" * 100_000 + "</text></section></a>"
    assert cda_text(xml) == "a" + " " * 200_000 + "b\n c"
