"""``radiologyProcedure`` inferences (ri_contract §5.10): the exam that was performed.

Produced when the text describes an imaging procedure (a modality named outside
recommendations) and an order is present. ``imagingProcedures`` come from the ordered
procedure's description when it names a modality, else from the first procedure named in
the text (EXAM/TECHNIQUE first); one per body part ("head/brain" gives two).
``procedureCodes`` is the LOINC code of that exam; ``orderedProcedure`` echoes the client's
code (code only) and description. RI emits no token evidence for this kind.
"""

from __future__ import annotations

from ..context import AnalysisContext
from ..models import (
    CodeableConcept, Coding, Inference, OrderedProcedureRef, RadiologyProcedureInference,
)
from ..nlp.types import ProcedureMention
from .procedure_codes import imaging_procedures, loinc_for

_NOT_PERFORMED = frozenset({"RECOMMENDATION", "COMPARISON", "HISTORY", "INDICATION"})
_PREFERRED = ("EXAM", "TECHNIQUE")


def infer(ctx: AnalysisContext) -> list[Inference]:
    performed = [p for p in ctx.procedures if p.section_name not in _NOT_PERFORMED
                 and p.modality_key not in ("imaging", "biopsy")]
    if not performed or not ctx.ordered_procedures:
        return []
    chosen = _chosen(ctx, performed)
    # RI sends no token evidence for this kind, whatever includeEvidence says.
    procedures = imaging_procedures(ctx, chosen, evidence=False)
    loinc = loinc_for(ctx, chosen)
    order = ctx.ordered_procedures[0]
    client_code = next((c.code for c in (order.code.coding or []) if c.code), None) if order.code else None
    return [RadiologyProcedureInference(
        procedure_codes=[CodeableConcept(coding=[Coding(system=loinc.system, code=loinc.code,
                                                        display=loinc.display)])] if loinc else None,
        imaging_procedures=procedures,
        ordered_procedure=OrderedProcedureRef(
            code=CodeableConcept(coding=[Coding(code=client_code)]) if client_code else None,
            description=order.description))]


def _chosen(ctx: AnalysisContext, performed: list[ProcedureMention]) -> ProcedureMention:
    with_parts = [p for p in ctx.order_procedures if p.anatomy]
    if with_parts:
        return with_parts[0]
    if ctx.order_procedures:
        return ctx.order_procedures[0]
    for name in _PREFERRED:
        for p in performed:
            if p.section_name == name:
                return p
    with_text_parts = [p for p in performed if p.anatomy]
    return with_text_parts[0] if with_text_parts else performed[0]
