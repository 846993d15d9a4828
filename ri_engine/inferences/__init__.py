"""Inference builders, one module per RI kind: ``infer(ctx: AnalysisContext) -> list[Inference]``.

``BUILDERS`` maps each RI kind name to its builder. Modules are found by name from
``KIND_MODULES``; a module that does not exist (yet) is simply not registered, so a new
builder plugs in by adding its file. A module serving several kinds (order discrepancies)
may return inferences of all of them from one ``infer``: both kinds then map to the same
function, the engine calls it once and keeps the kinds that were requested. A module may
instead expose ``BUILDERS = {kind: fn}``. Any other import error is a real bug and
propagates.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..context import AnalysisContext
from ..models import Inference

Builder = Callable[[AnalysisContext], list[Inference]]

# Kind -> module under ri_engine.inferences. The order is the order of kinds in a result
# (RI puts findings first; ri_contract §3.2).
KIND_MODULES: dict[str, str] = {
    "finding": "finding",
    "completeOrderDiscrepancy": "order_discrepancy",
    "ageMismatch": "age_mismatch",
    "sexMismatch": "sex_mismatch",
    "lateralityDiscrepancy": "laterality",
    "followupRecommendation": "followup_recommendation",
    "followupCommunication": "followup_communication",
    "criticalResult": "critical_result",
    "limitedOrderDiscrepancy": "order_discrepancy",
    "radiologyProcedure": "radiology_procedure",
    "scoringAndAssessment": "scoring",
    "qualityMeasure": "quality_measures",
    "guidance": "guidance",
}


def _load() -> dict[str, Builder]:
    builders: dict[str, Builder] = {}
    for kind, module_name in KIND_MODULES.items():
        qualified = f"{__name__}.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name == qualified:
                continue
            raise
        table = getattr(module, "BUILDERS", None)
        if isinstance(table, dict):
            if kind in table:
                builders[kind] = table[kind]
        elif hasattr(module, "infer"):
            builders[kind] = module.infer
    return builders


BUILDERS: dict[str, Builder] = _load()

__all__ = ["BUILDERS", "KIND_MODULES", "Builder"]
