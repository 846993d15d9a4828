"""Metrics render valid Prometheus text that prometheus_client's own parser reads back."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import DEFAULT_BUCKETS, Metrics, MetricsError


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _types(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_empty_registry_renders_nothing() -> None:
    assert Metrics().render() == ""


def test_counter_gauge_and_labels_round_trip() -> None:
    m = Metrics()
    m.inc("ri_gateway_messages_total", {"message_type": "ORU^R01", "ack_code": "AA"})
    m.inc("ri_gateway_messages_total", {"message_type": "ORU^R01", "ack_code": "AA"}, 2)
    m.inc("ri_gateway_messages_total", {"ack_code": "AE", "message_type": "ORU^R01"})
    m.set("ri_gateway_connections_open", 3)
    m.set("ri_gateway_connections_open", 2)
    m.inc("ri_gateway_frames_total")

    text = m.render()
    assert _samples(text) == {
        ("ri_gateway_messages_total", (("ack_code", "AA"), ("message_type", "ORU^R01"))): 3.0,
        ("ri_gateway_messages_total", (("ack_code", "AE"), ("message_type", "ORU^R01"))): 1.0,
        ("ri_gateway_connections_open", ()): 2.0,
        ("ri_gateway_frames_total", ()): 1.0,
    }
    # The parser names counter families without the _total suffix.
    assert _types(text) == {
        "ri_gateway_messages": "counter",
        "ri_gateway_connections_open": "gauge",
        "ri_gateway_frames": "counter",
    }
    assert "# HELP ri_gateway_frames_total MLLP frames received.\n" in text
    assert "# TYPE ri_gateway_frames_total counter\n" in text


def test_histogram_buckets_are_cumulative() -> None:
    m = Metrics()
    for value in (0.003, 0.2, 0.2, 7.0, 120.0):
        m.observe("ri_gateway_analysis_seconds", value)

    samples = _samples(m.render())
    buckets = {labels[0][1]: v for (name, labels), v in samples.items()
               if name == "ri_gateway_analysis_seconds_bucket"}
    expected = {}
    for bound in DEFAULT_BUCKETS:
        expected[repr(bound)] = float(sum(1 for v in (0.003, 0.2, 0.2, 7.0, 120.0) if v <= bound))
    expected["+Inf"] = 5.0
    assert buckets == expected
    assert samples[("ri_gateway_analysis_seconds_count", ())] == 5.0
    assert samples[("ri_gateway_analysis_seconds_sum", ())] == pytest.approx(127.403)
    assert m.get("ri_gateway_analysis_seconds") == 5.0


def test_histogram_with_labels_and_custom_buckets() -> None:
    m = Metrics(buckets={"job_seconds": [1, 10]})
    m.observe("job_seconds", 5, {"queue": "a"})
    assert _samples(m.render()) == {
        ("job_seconds_bucket", (("le", "1.0"), ("queue", "a"))): 0.0,
        ("job_seconds_bucket", (("le", "10.0"), ("queue", "a"))): 1.0,
        ("job_seconds_bucket", (("le", "+Inf"), ("queue", "a"))): 1.0,
        ("job_seconds_sum", (("queue", "a"),)): 5.0,
        ("job_seconds_count", (("queue", "a"),)): 1.0,
    }


def test_label_values_are_escaped() -> None:
    m = Metrics()
    awkward = 'a "quoted"\\path\nnext'
    m.inc("ri_gateway_deliveries_total", {"destination": awkward, "outcome": "ok"})
    text = m.render()
    assert 'destination="a \\"quoted\\"\\\\path\\nnext"' in text
    assert _samples(text) == {
        ("ri_gateway_deliveries_total", (("destination", awkward), ("outcome", "ok"))): 1.0,
    }


def test_unknown_names_get_help_from_constructor() -> None:
    m = Metrics(help={"custom_things_total": "Things, with a \\ and\na newline."})
    m.inc("custom_things_total")
    text = m.render()
    assert "# HELP custom_things_total Things, with a \\\\ and\\na newline.\n" in text
    family = next(iter(text_string_to_metric_families(text)))
    assert family.documentation == "Things, with a \\ and\na newline."


def test_non_integer_values_keep_precision() -> None:
    m = Metrics()
    m.set("ri_gateway_outbox_oldest_pending_seconds", 12.625, {"destination": "ris"})
    m.set("temperature", float("inf"))
    assert _samples(m.render()) == {
        ("ri_gateway_outbox_oldest_pending_seconds", (("destination", "ris"),)): 12.625,
        ("temperature", ()): float("inf"),
    }


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda m: m.inc("bad name"), "invalid metric name"),
        (lambda m: m.inc("x_total", {"bad-label": "v"}), "invalid label name"),
        (lambda m: m.inc("x_total", {"__reserved": "v"}), "invalid label name"),
        (lambda m: m.inc("x_total", value=-1), "can only go up"),
        (lambda m: m.set("ri_gateway_frames_total", 1), "is a counter, not a gauge"),
        (lambda m: m.observe("h", 1, {"le": "1"}), "label named 'le'"),
        (lambda m: (m.inc("y"), m.set("y", 1)), "is a counter, not a gauge"),
    ],
)
def test_misuse_is_refused(action, message) -> None:
    with pytest.raises(MetricsError, match=message):
        action(Metrics())


def test_bad_buckets_are_refused() -> None:
    with pytest.raises(MetricsError):
        Metrics(buckets={"h": [2, 1]})


def test_collectors_refresh_gauges_at_render_time() -> None:
    m = Metrics()
    depth = {"ris": 4}
    m.add_collector(lambda reg: [reg.set("ri_gateway_outbox_depth", n, {"destination": d})
                                 for d, n in depth.items()])
    assert _samples(m.render())[("ri_gateway_outbox_depth", (("destination", "ris"),))] == 4.0
    depth["ris"] = 1
    assert _samples(m.render())[("ri_gateway_outbox_depth", (("destination", "ris"),))] == 1.0


def test_get_reads_current_values() -> None:
    m = Metrics()
    assert m.get("ri_gateway_http_requests_total", {"status": "200"}) == 0.0
    m.inc("ri_gateway_http_requests_total", {"status": "200"})
    assert m.get("ri_gateway_http_requests_total", {"status": "200"}) == 1.0


def test_concurrent_increments_are_not_lost() -> None:
    m = Metrics()

    def work() -> None:
        for _ in range(2000):
            m.inc("ri_gateway_frames_total")
            m.observe("ri_gateway_analysis_seconds", 0.01)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.get("ri_gateway_frames_total") == 8000.0
    assert m.get("ri_gateway_analysis_seconds") == 8000.0
