"""Routing configuration and the outbound messages a report produces."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.routing import (
    OutboundConfig, Router, outbound_config, parse_outbound_config, wants_application_ack,
)
from ri_engine.models import (
    CriticalResult, CriticalResultInference, DocumentContent, FindingInference,
    FollowupCommunicationInference, Observation, PatientDocument, PatientRecord,
    RadiologyInsightsData, ScoringAndAssessmentInference,
)

NOW = dt.datetime(2024, 1, 15, 10, 20)
INBOUND = ("MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115101500||ORU^R01|IN1|P|2.5.1\r"
           "PID|1||MRN1\rOBR|1|P1|F1|71045^XR CHEST^C4||||||||||||||ACC1|||||||F\r"
           "OBX|1|TX|18782-3^Findings^LN||Large pneumothorax.||||||F\r")

CONFIG = """
[outbound]
sending_application = "RIGW"
application_ack_destination = "ris"

[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port=2576"
receiving_application = "PAGER"
receiving_facility = "HOSP"
ack_timeout = 5
max_attempts = 3

[destinations.ehr]
endpoint = "tcp:host=127.0.0.1:port=2577"
receiving_application = "EHR"

[destinations.ris]
endpoint = "tcp:host=127.0.0.1:port=2578"

[routes.all-results]
type = "results"
destinations = ["ehr"]

[routes.critical-to-pager]
type = "alerts"
destinations = ["pager"]

[routes.scores-to-pager]
type = "alerts"
destinations = ["pager"]
alert_on = ["critical", "scores"]
modalities = ["MG"]
"""


@dataclass(frozen=True)
class Header:
    sending_application: str = "RIS"
    sending_facility: str = "HOSP"


@dataclass(frozen=True)
class Report:
    request: RadiologyInsightsData
    obr_index: int = 1
    result_status: str | None = "F"
    modality_hint: str | None = "CR"


def report(**kw) -> Report:
    doc = PatientDocument(id="d", content=DocumentContent(value="Large pneumothorax."))
    return Report(request=RadiologyInsightsData(patients=[PatientRecord(id="MRN1", patient_documents=[doc])]), **kw)


def crit() -> CriticalResultInference:
    return CriticalResultInference(result=CriticalResult(description="PNEUMOTHORAX"))


def birads(value: str) -> ScoringAndAssessmentInference:
    return ScoringAndAssessmentInference(category="BIRADS", category_description="BI-RADS",
                                         single_value=value)


def finding() -> FindingInference:
    return FindingInference(finding=Observation(status="unknown"))


def router(config: OutboundConfig | None = None) -> Router:
    ids = iter(f"OUT{n}" for n in range(1, 100))
    return Router(config or parse_outbound_config(tomllib.loads(CONFIG)), control_ids=lambda: next(ids))


def plan(inferences, **kw):
    planned = router().plan(inbound_text=INBOUND, header=Header(), report=report(**kw),
                            result=inferences, now=NOW)
    return [(p.destination, p.route, p.purpose, p.control_id) for p in planned], planned


def test_critical_result_goes_to_ehr_as_result_and_to_pager_as_one_alert():
    summary, planned = plan([finding(), crit()])
    assert summary == [("ehr", "all-results", "results", "OUT1"),
                       ("pager", "critical-to-pager", "alerts", "OUT2")]
    alert = planned[1].payload.decode()
    assert alert.split("\r")[0].split("|")[4:6] == ["PAGER", "HOSP"]
    assert [s.split("|")[3] for s in alert.split("\r") if s.startswith("OBX")] == [
        "RI-CRIT^Critical result^RIGW"]
    result = planned[0].payload.decode()
    assert [s.split("|")[3] for s in result.split("\r") if s.startswith("OBX")] == [
        "RI-FIND^Finding^RIGW", "RI-CRIT^Critical result^RIGW"]


def test_no_critical_result_means_no_alert():
    summary, _ = plan([finding()])
    assert summary == [("ehr", "all-results", "results", "OUT1")]


def test_score_alerts_only_on_matching_modality_and_values():
    assert plan([birads("4A")], modality_hint="MG")[0] == [
        ("ehr", "all-results", "results", "OUT1"), ("pager", "scores-to-pager", "alerts", "OUT2")]
    assert plan([birads("2")], modality_hint="MG")[0] == [("ehr", "all-results", "results", "OUT1")]
    assert plan([birads("5")], modality_hint="CT")[0] == [("ehr", "all-results", "results", "OUT1")]


def test_one_alert_per_destination_when_several_alert_routes_match():
    summary, planned = plan([crit(), birads("5")], modality_hint="MG")
    assert summary == [("ehr", "all-results", "results", "OUT1"),
                       ("pager", "critical-to-pager", "alerts", "OUT2")]
    # The one alert carries what each matching route alerts on (the score was dropped).
    assert [s.split("|")[3] for s in planned[1].payload.decode().split("\r")
            if s.startswith("OBX")][:2] == ["RI-CRIT^Critical result^RIGW",
                                            "RI-SCORE^Scoring and assessment^RIGW"]


def test_already_communicated_alert_is_marked():
    comm = FollowupCommunicationInference(recipient=["doctor"], was_acknowledged=True)
    _, planned = plan([crit(), comm])
    alert = planned[1].payload.decode()
    assert "OBX|2|CWE|COMMUNICATED^Already communicated^RIGW|2|Y^Yes^HL70136||||||F" in alert.split("\r")


def test_match_conditions():
    config = parse_outbound_config({
        "destinations": {"d": {"endpoint": "tcp:host=127.0.0.1:port=1"}},
        "routes": {
            "corrections": {"destinations": ["d"], "result_statuses": ["c"]},
            "from-other": {"destinations": ["d"], "sending_facilities": ["OTHER"]},
            "non-critical": {"destinations": ["d"], "critical": False, "kinds": ["finding"],
                             "send_empty": False},
        }})
    r = router(config)

    def routes(inferences, status="F"):
        return [p.route for p in r.plan(inbound_text=INBOUND, header=Header(),
                                        report=report(result_status=status), result=inferences, now=NOW)]

    assert routes([finding()]) == ["non-critical"]
    assert routes([finding(), crit()]) == []
    assert routes([crit()], status="C") == ["corrections"]
    assert routes([]) == []


def test_application_ack_goes_to_the_return_destination():
    planned = router().plan_application_ack("MSH|...\rMSA|AA|IN1", "OUT9")
    assert (planned.destination, planned.purpose, planned.control_id, planned.payload) == (
        "ris", "application_ack", "OUT9", b"MSH|...\rMSA|AA|IN1")
    assert [wants_application_ack(t, c) for t, c in [
        ("AL", "AA"), ("AL", "AE"), ("ER", "AA"), ("ER", "AE"), ("SU", "AA"), ("SU", "AR"),
        ("NE", "AE"), (None, "AE")]] == [True, True, False, True, True, False, False, False]


@pytest.mark.parametrize("toml, key", [
    ('[destinations.p]\nendpoint = "tpc:host=x"', "destinations.p.endpoint"),
    ('[destinations.p]\nreceiving_application = "X"', "destinations.p.endpoint"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nack_timeout = 0', "destinations.p.ack_timeout"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nmax_attempts = 2.5', "destinations.p.max_attempts"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\njitter = 1.5', "destinations.p.jitter"),
    # TOML reads nan and inf; nan passes every comparison (jitter = nan is not >= 1).
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\njitter = nan', "destinations.p.jitter"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nack_timeout = nan', "destinations.p.ack_timeout"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nbackoff_max = inf', "destinations.p.backoff_max"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nbackoff_initial = nan', "destinations.p.backoff_initial"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nbackoff_multiplier = inf',
     "destinations.p.backoff_multiplier"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nretries = 3', "destinations.p.retries"),
    ('[destinations.p]\nendpoint = "tcp:host=h:port=1"\nlenient_end = "yes"', "destinations.p.lenient_end"),
    ('[routes.r]\ndestinations = ["nowhere"]', "routes.r.destinations"),
    ('[routes.r]\ntype = "pages"\ndestinations = ["x"]', "routes.r.type"),
    ('[routes.r]\ntype = "alerts"\ndestinations = ["x"]\nalert_on = ["everything"]', "routes.r.alert_on"),
    ('[routes.r]\ndestinations = ["x"]\nalert_on = ["critical"]', "routes.r.alert_on"),
    ('[routes.r]\ndestinations = ["x"]\nkinds = ["criticalResults"]', "routes.r.kinds"),
    ('[routes.r]\ntype = "alerts"\ndestinations = ["x"]\nscores = [{category = "BIRADS"}]',
     "routes.r.scores[0].values"),
    ('[outbound]\napplication_ack_destination = "nowhere"', "outbound.application_ack_destination"),
    ('[outbound]\ncharset = "EBCDIC"', "outbound.charset"),
])
def test_config_errors_name_the_key(toml, key):
    with pytest.raises(ConfigError) as info:
        parse_outbound_config(tomllib.loads(toml))
    assert info.value.key == key


def test_sections_register_with_the_gateway_settings_loader(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    settings = load_settings(str(path), environ={})
    config = outbound_config(settings.sections)
    assert sorted(config.destinations) == ["ehr", "pager", "ris"]
    assert [r.name for r in config.routes] == ["all-results", "critical-to-pager", "scores-to-pager"]
    assert config.destinations["pager"].ack_timeout == 5.0
    assert config.format.sending_application == "RIGW"
    assert outbound_config(load_settings(None, environ={}).sections).routes == ()


def test_documented_config_file_holds_the_defaults_and_every_key():
    from pathlib import Path

    from mappings.outbound import OutboundFormat
    from mappings.outbound_obx import DEFAULT_IDENTIFIERS

    path = Path(__file__).parents[2] / "config" / "gateway.toml"
    assert outbound_config(load_settings(str(path), environ={}).sections) == OutboundConfig()
    text = path.read_text()
    keys = ["sending_application", "sending_facility", "version", "charset", "local_system",
            "evidence", "application_ack_destination", "endpoint", "receiving_application",
            "receiving_facility", "ack_timeout", "max_attempts", "backoff_initial",
            "backoff_multiplier", "backoff_max", "jitter", "type", "destinations", "alert_on",
            "scores", "kinds", "critical", "modalities", "sending_applications",
            "sending_facilities", "result_statuses", "send_empty", *DEFAULT_IDENTIFIERS]
    for key in keys:
        assert f"{key} = " in text, f"{key} undocumented"
    assert OutboundFormat().sending_application in text
