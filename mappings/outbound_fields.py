"""Field-level encoding for outbound HL7 v2 messages: escaping, coded values, timestamps.

Every outbound message is written with the standard encoding characters ``|^~\\&``.
Data is escaped with the HL7 escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``) so a value can
never break the segment structure; line breaks inside values become spaces because the
values written here (codes, short evidence quotes) are single-line by nature.
"""

from __future__ import annotations

import datetime as dt
import re

from ri_engine.models import LOINC, RADLEX, SNOMED, CodeableConcept, Coding, Quantity

FIELD_SEP = "|"
COMPONENT_SEP = "^"
REPETITION_SEP = "~"
ESCAPE_CHAR = "\\"
SUBCOMPONENT_SEP = "&"
ENCODING_CHARACTERS = "^~\\&"

_ESCAPES = {
    "\\": "\\E\\",  # first: the escape character itself
    "|": "\\F\\",
    "^": "\\S\\",
    "&": "\\T\\",
    "~": "\\R\\",
}
_LINE_BREAKS = re.compile(r"[\r\n]+")

# FHIR system URI -> HL7 table 0396 coding system name.
CODING_SYSTEMS = {
    SNOMED: "SCT",
    RADLEX: "RADLEX",
    "http://www.radlex.org": "RADLEX",
    LOINC: "LN",
    "https://loinc.org": "LN",
    "http://www.ama-assn.org/go/cpt": "C4",
    "http://hl7.org/fhir/sid/icd-10-cm": "I10C",
    "http://hl7.org/fhir/sid/icd-10": "I10",
    "http://unitsofmeasure.org": "UCUM",
}

# Units RI writes (RadLex-style words) -> UCUM code for OBX-6.
UCUM_UNITS = {
    "CENTIMETER": "cm", "CENTIMETERS": "cm", "CM": "cm",
    "MILLIMETER": "mm", "MILLIMETERS": "mm", "MM": "mm",
    "METER": "m", "INCH": "[in_i]", "PERCENT": "%",
}


def escape(value: str | None) -> str:
    """Escape HL7 delimiters in ``value``; CR/LF runs become one space."""
    if not value:
        return ""
    out = "".join(_ESCAPES.get(ch, ch) for ch in value)
    return _LINE_BREAKS.sub(" ", out)


def segment(name: str, *fields: str) -> str:
    """Join already-escaped fields into a segment, dropping empty trailing fields."""
    values = list(fields)
    while values and values[-1] == "":
        values.pop()
    return FIELD_SEP.join([name, *values])


def components(*parts: str) -> str:
    """Join already-escaped components, dropping empty trailing components."""
    values = list(parts)
    while values and values[-1] == "":
        values.pop()
    return COMPONENT_SEP.join(values)


def system_name(system: str | None) -> str:
    """The HL7 coding-system name for a FHIR system URI (unknown URIs kept as given)."""
    if not system:
        return ""
    return CODING_SYSTEMS.get(system.rstrip("/"), CODING_SYSTEMS.get(system, system))


def cwe_from_codings(codings: list[Coding], text: str | None = None) -> str:
    """A CWE value: the first coding as the primary triplet, the second as the alternate.

    ``text`` (original text, CWE-9) is written when it adds something to the codes.
    """
    usable = [c for c in codings if c.code]
    parts = ["", "", "", "", "", ""]
    for i, c in enumerate(usable[:2]):
        parts[i * 3] = escape(c.code)
        parts[i * 3 + 1] = escape(c.display)
        parts[i * 3 + 2] = escape(system_name(c.system))
    if not usable and text:
        # Text-only CWE (no code): CWE-2 carries the text.
        return components("", escape(text))
    if text and (not usable or text != usable[0].display):
        return components(*parts, "", "", escape(text))
    return components(*parts)


def cwe(concept: CodeableConcept | None, text: str | None = None) -> str:
    if concept is None:
        return components("", escape(text)) if text else ""
    return cwe_from_codings(concept.coding or [], text or concept.text)


def local_cwe(code: str, text: str, system: str) -> str:
    return components(escape(code), escape(text), escape(system))


def number(value: float) -> str:
    """An NM value without a spurious ``.0`` (``1.5`` -> ``1.5``, ``2.0`` -> ``2``)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def units(quantity: Quantity | None) -> str:
    """OBX-6 for a quantity: UCUM code, the unit as written, UCUM."""
    if quantity is None or not (quantity.unit or quantity.code):
        return ""
    written = quantity.unit or quantity.code or ""
    code = UCUM_UNITS.get(written.upper(), quantity.code or written)
    return components(escape(code), escape(written), "UCUM")


def hl7_timestamp(value: dt.datetime) -> str:
    """YYYYMMDDHHMMSS with a +/-ZZZZ offset when the datetime is aware."""
    stamp = value.strftime("%Y%m%d%H%M%S")
    if value.tzinfo is not None and value.utcoffset() is not None:
        stamp += value.strftime("%z")
    return stamp


def hl7_from_iso(value: str | None) -> str:
    """An RI date/datetime string (``2021-08-28``, ``2020-11-05T15:00:00``, ``2022-01``) as DTM."""
    if not value:
        return ""
    digits = re.sub(r"[^0-9]", "", value.split("+")[0].split("Z")[0])
    # Keep only whole date/time parts: YYYY, YYYYMM, YYYYMMDD, ...HHMM, ...HHMMSS.
    for size in (14, 12, 8, 6, 4):
        if len(digits) >= size:
            return digits[:size]
    return ""
