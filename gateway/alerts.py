"""Which inferences of a report are worth an alert, by configuration.

An alert route names the classes of inference it alerts on (``alert_on``):

    critical     criticalResult inferences (the default, and the reason alerts exist)
    actionable   followupRecommendation that is neither hedged nor a guideline quote
    scores       scoringAndAssessment whose category/value matches a score rule
                 (default rules: BI-RADS 4, 4A, 4B, 4C, 5 and Lung-RADS 4, 4A, 4B, 4X)
    laterality   lateralityDiscrepancy
    sex          sexMismatch
    age          ageMismatch

The same critical result mentioned twice (findings and impression) alerts once.
:func:`paged_keys` names what an alert pages, so that a later version of the report (a
correction, a resend) that pages nothing new is not sent again (:mod:`gateway.repeat_alerts`).
A report whose text already documents the communication of its result (a
``followupCommunication`` inference) still alerts; the alert says so.

Errors: ``AlertConfigError(key, message)`` for an invalid alert setting.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ri_engine.models import (
    CriticalResultInference, FollowupCommunicationInference, FollowupRecommendationInference, Inference,
    ScoringAndAssessmentInference,
)

ALERT_CLASSES = ("critical", "actionable", "scores", "laterality", "sex", "age")
_KIND_OF_CLASS = {
    "critical": "criticalResult",
    "laterality": "lateralityDiscrepancy",
    "sex": "sexMismatch",
    "age": "ageMismatch",
}


class AlertConfigError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def label_key(text: str) -> str:
    """What two spellings of one label share: "BI-RADS", "BIRADS" and "bi rads" are one
    category, and a critical-result description stated twice is one result."""
    return re.sub(r"[^0-9A-Z]", "", text.upper())


@dataclass(frozen=True)
class ScoreRule:
    """Alert when a score of ``category`` takes one of ``values``."""

    category: str
    values: frozenset[str]

    def matches(self, inf: ScoringAndAssessmentInference) -> bool:
        if label_key(inf.category) != label_key(self.category):
            return False
        wanted = {label_key(v) for v in self.values}
        if inf.single_value is not None:
            return label_key(inf.single_value) in wanted
        if inf.range_value is not None:
            # A range alerts when either end would.
            return bool({label_key(inf.range_value.minimum), label_key(inf.range_value.maximum)} & wanted)
        return False


DEFAULT_SCORE_RULES = (
    ScoreRule("BIRADS", frozenset({"4", "4A", "4B", "4C", "5"})),
    ScoreRule("LUNG-RADS", frozenset({"4", "4A", "4B", "4X"})),
)


@dataclass(frozen=True)
class AlertPolicy:
    on: frozenset[str] = frozenset({"critical"})
    score_rules: tuple[ScoreRule, ...] = DEFAULT_SCORE_RULES

    def is_alerting(self, inf: Inference) -> bool:
        for cls in self.on:
            if cls in _KIND_OF_CLASS and inf.kind == _KIND_OF_CLASS[cls]:
                return True
            if (cls == "actionable" and isinstance(inf, FollowupRecommendationInference)
                    and not inf.is_hedging and not inf.is_guideline):
                return True
            if cls == "scores" and isinstance(inf, ScoringAndAssessmentInference):
                if any(rule.matches(inf) for rule in self.score_rules):
                    return True
        return False

    def alerting(self, inferences: Iterable[Inference]) -> list[Inference]:
        """The alerting inferences; a critical result repeated (findings and impression)
        is alerted once, with its first mention."""
        out: list[Inference] = []
        seen: set[str] = set()
        for inf in inferences:
            if not self.is_alerting(inf):
                continue
            if isinstance(inf, CriticalResultInference):
                key = label_key(inf.result.description)
                if key in seen:
                    continue
                seen.add(key)
            out.append(inf)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> AlertPolicy:
        on = data.get("alert_on", ["critical"])
        if not isinstance(on, list) or not all(isinstance(v, str) for v in on):
            raise AlertConfigError(f"{prefix}.alert_on", "must be a list of strings")
        if not on:
            # An alert route that alerts on nothing would start and never send an alert.
            raise AlertConfigError(f"{prefix}.alert_on",
                                   f"must name at least one class ({', '.join(ALERT_CLASSES)})")
        for value in on:
            if value not in ALERT_CLASSES:
                raise AlertConfigError(f"{prefix}.alert_on",
                                       f"unknown class {value!r} (known: {', '.join(ALERT_CLASSES)})")
        rules = DEFAULT_SCORE_RULES
        if "scores" in data:
            raw = data["scores"]
            if not isinstance(raw, list):
                raise AlertConfigError(f"{prefix}.scores", "must be a list of tables")
            parsed = []
            for i, item in enumerate(raw):
                where = f"{prefix}.scores[{i}]"
                if not isinstance(item, Mapping) or not isinstance(item.get("category"), str):
                    raise AlertConfigError(where, 'needs category = "..." and values = [...]')
                values = item.get("values")
                if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                    raise AlertConfigError(f"{where}.values", "must be a non-empty list of strings")
                parsed.append(ScoreRule(item["category"], frozenset(values)))
            rules = tuple(parsed)
        return cls(on=frozenset(on), score_rules=rules)


def paged_keys(alerting: Iterable[Inference]) -> tuple[str, ...]:
    """What an alert with these alerting inferences pages, one key each, as two versions of
    a report (a correction, a resend) state it alike: a critical result by its description
    (``label_key``, as alerts and ``report critical`` tell one result), anything else by
    its content without the parts that move with the text (ids, evidence offsets)."""
    keys = []
    for inf in alerting:
        if isinstance(inf, CriticalResultInference):
            keys.append("criticalResult:" + label_key(inf.result.description))
            continue
        content = json.dumps(_without_positions(inf.to_json()), sort_keys=True)
        keys.append(f"{inf.kind}:" + hashlib.blake2b(content.encode(), digest_size=12).hexdigest())
    return tuple(dict.fromkeys(keys))


def _without_positions(value: Any) -> Any:
    """An inference's JSON without ``id`` and ``extension`` (evidence offsets, sections),
    which an addendum or a reworded sentence changes while the finding stays the same."""
    if isinstance(value, dict):
        return {k: _without_positions(v) for k, v in value.items() if k not in ("id", "extension")}
    if isinstance(value, list):
        return [_without_positions(v) for v in value]
    return value


def communication_of(inferences: Sequence[Inference]) -> FollowupCommunicationInference | None:
    """The report's own record of having communicated the result, if it has one."""
    for inf in inferences:
        if isinstance(inf, FollowupCommunicationInference):
            return inf
    return None
