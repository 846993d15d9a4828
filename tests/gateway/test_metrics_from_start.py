"""``/metrics`` of a gateway that has just started: the counters an alert rule is written
on are there at 0, so that the first event they count is an increase."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from gateway_process import WAIT, GatewayProcess


def test_counters_an_alert_rule_watches_are_exported_at_zero_from_the_start(tmp_path):
    gateway = GatewayProcess(tmp_path / "audit.sqlite3", RI_GATEWAY_HTTP_ENABLED="true",
                             RI_GATEWAY_HTTP_ENDPOINT="tcp:0:interface=127.0.0.1").start()
    try:
        port = gateway.http_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as reply:
            text = reply.read().decode()
    finally:
        gateway.stop()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    # Before, each appeared only with its first count: Prometheus' increase() takes a new
    # series' first sample as its start, so an alert on the first worker death, content
    # error or escalation never fired.
    expected = {
        ("ri_gateway_empty_frames_total", ()),
        ("ri_gateway_content_errors_total", ()),
        ("ri_gateway_duplicates_total", ()),
        ("ri_gateway_replays_total", ()),
        ("ri_gateway_bytes_outside_frames_total", ()),
        ("ri_gateway_escalations_total", (("reason", "dead_lettered"),)),
        ("ri_gateway_escalations_total", (("reason", "undelivered"),)),
        ("ri_gateway_analysis_pool_restarts_total", (("reason", "timeout"),)),
        ("ri_gateway_analysis_pool_restarts_total", (("reason", "worker_died"),)),
    }
    assert {key: samples.get(key) for key in expected} == dict.fromkeys(expected, 0.0)
