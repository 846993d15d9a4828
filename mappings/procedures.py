"""The procedure table (``procedures.json``, package data): code -> modality, body part, laterality.

Lookup is by coding system URI and code. When the table has no row, laterality is read
from the procedure description (``LEFT``/``LT``/``RIGHT``/``RT``/``BILATERAL``/``BILAT``
as whole words) and body site from OBR-15.4 (specimen source body site) where sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

SYSTEM_URIS = {"LOINC": "http://loinc.org", "CPT": "http://www.ama-assn.org/go/cpt"}
# The modality of an order (the table's, or the OBR-24 section's: ``MappedReport.modality_hint``)
# as the SNOMED CT procedure RI uses for it (ri_contract §5.8 modality codes).
MODALITY_CODES = {
    "CT": "77477000", "MR": "113091000", "US": "16310003", "XR": "168537006",
    "MG": "71651007", "NM": "371572003", "RF": "44491008", "PT": "82918005",
}
_LATERALITY_WORDS = (
    (re.compile(r"\b(BILATERAL|BILAT|BOTH)\b"), "bilateral"),
    (re.compile(r"\b(LEFT|LT)\b"), "left"),
    (re.compile(r"\b(RIGHT|RT)\b"), "right"),
)


@dataclass(frozen=True)
class ProcedureInfo:
    """What is known about the ordered procedure; ``source`` says where it came from."""

    modality: str | None
    body_part: str | None
    laterality: str | None
    contrast: str | None
    source: str  # "table:<source>" or "order"


@lru_cache(maxsize=1)
def procedure_table() -> dict[tuple[str, str], dict[str, str | None]]:
    data = json.loads(resources.files("mappings").joinpath("procedures.json").read_text(encoding="utf-8"))
    table: dict[tuple[str, str], dict[str, str | None]] = {}
    for row in data["procedures"]:
        table[(SYSTEM_URIS[row["system"]], row["code"].upper())] = row
    return table


def laterality_from_text(description: str) -> str | None:
    upper = description.upper()
    for pattern, laterality in _LATERALITY_WORDS:
        if pattern.search(upper):
            return laterality
    return None


def describe_procedure(system: str | None, code: str, description: str, *, body_site: str = "",
                       use_table: bool = True) -> ProcedureInfo | None:
    """Table row for (system, code), else what the order text and OBR-15 say, else None."""
    row = procedure_table().get((system or "", code.upper())) if use_table else None
    if row is not None:
        return ProcedureInfo(row["modality"], row["body_part"], row["laterality"] or laterality_from_text(description),
                             row["contrast"], f"table:{row['source']}")
    laterality = laterality_from_text(description)
    if laterality is None and not body_site:
        return None
    return ProcedureInfo(None, body_site or None, laterality, None, "order")
