"""Which inferences alert, by configuration."""

from __future__ import annotations

import pytest

from gateway.alerts import AlertConfigError, AlertPolicy, communication_of
from ri_engine.models import (
    AgeMismatchInference, AssessmentValueRange, CriticalResult, CriticalResultInference,
    FollowupCommunicationInference, FollowupRecommendationInference,
    GenericProcedureRecommendation, LateralityDiscrepancyInference, ScoringAndAssessmentInference,
    SexMismatchInference, SNOMED, concept,
)

CRIT = CriticalResultInference(result=CriticalResult(description="NEW FRACTURE"))
REC = FollowupRecommendationInference(
    recommended_procedure=GenericProcedureRecommendation(code=concept(SNOMED, "11429006", "CONSULTATION")))
HEDGED = FollowupRecommendationInference(
    is_hedging=True,
    recommended_procedure=GenericProcedureRecommendation(code=concept(SNOMED, "11429006", "CONSULTATION")))
LAT = LateralityDiscrepancyInference(discrepancy_type="orderLateralityMismatch")
SEX = SexMismatchInference(sex_indication=concept(SNOMED, "248153007", "MALE"))
AGE = AgeMismatchInference()


def score(category: str, value: str | None = None, low: str | None = None, high: str | None = None):
    rng = AssessmentValueRange(minimum=low, maximum=high) if low else None
    return ScoringAndAssessmentInference(category=category, category_description=category,
                                         single_value=value, range_value=rng)


ALL = [CRIT, REC, HEDGED, LAT, SEX, AGE, score("BI-RADS", "4B"), score("BIRADS", "3"),
       score("LUNG-RADS", "4X"), score("TI-RADS", "5"), score("BIRADS", low="3", high="4")]


def test_default_policy_alerts_on_critical_results_only():
    assert AlertPolicy().alerting(ALL) == [CRIT]


def test_every_class():
    policy = AlertPolicy.from_dict({"alert_on": ["actionable", "scores", "laterality", "sex", "age"]}, "r")
    assert policy.alerting(ALL) == [REC, LAT, SEX, AGE, ALL[6], ALL[8], ALL[10]]


def test_custom_score_rules():
    policy = AlertPolicy.from_dict(
        {"alert_on": ["scores"], "scores": [{"category": "TI-RADS", "values": ["5"]}]}, "r")
    assert policy.alerting(ALL) == [ALL[9]]


@pytest.mark.parametrize("data, key", [
    ({"alert_on": "critical"}, "r.alert_on"),
    ({"alert_on": ["pager"]}, "r.alert_on"),
    ({"scores": {"category": "BIRADS"}}, "r.scores"),
    ({"scores": [{"values": ["4"]}]}, "r.scores[0]"),
    ({"scores": [{"category": "BIRADS", "values": []}]}, "r.scores[0].values"),
])
def test_bad_settings_name_the_key(data, key):
    with pytest.raises(AlertConfigError) as info:
        AlertPolicy.from_dict(data, "r")
    assert info.value.key == key


def test_communication_of():
    comm = FollowupCommunicationInference(recipient=["nurse"])
    assert communication_of([CRIT, comm]) is comm
    assert communication_of([CRIT]) is None


def test_a_critical_result_mentioned_twice_alerts_once():
    again = CriticalResultInference(result=CriticalResult(description="New fracture"))
    other = CriticalResultInference(result=CriticalResult(description="PNEUMOTHORAX"))
    assert AlertPolicy().alerting([CRIT, again, other]) == [CRIT, other]
