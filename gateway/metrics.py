"""Process-wide metrics, rendered in the Prometheus text exposition format 0.0.4.

The format is small enough to write by hand, which keeps the runtime free of a
metrics dependency (``prometheus_client`` is used only by the tests, to parse
what :meth:`Metrics.render` produces).

Three kinds of metric exist, each created on first use by the method that
touches it: :meth:`Metrics.inc` makes a counter, :meth:`Metrics.set` a gauge and
:meth:`Metrics.observe` a histogram (values in seconds).  Names the gateway
reports are listed in :data:`KNOWN_METRICS` with their help text; any other
valid name is accepted too.

Errors::

    ValueError
    └── MetricsError      invalid name or label, a name reused with another
                          kind, or a counter decremented

All methods are safe to call from any thread (the analysis pool runs off the
reactor thread).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COUNTERS_FROM_START",
    "DEFAULT_BUCKETS",
    "KNOWN_METRICS",
    "Metrics",
    "MetricsError",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds.  Analysis of one report takes from a few milliseconds (short
# reports) to a few seconds (a cold pipeline); delivery ages can reach minutes.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

# name -> (kind, help text).  Every metric the gateway itself reports.
KNOWN_METRICS: dict[str, tuple[str, str]] = {
    "ri_gateway_connections_total": (COUNTER, "MLLP connections accepted."),
    "ri_gateway_connections_open": (GAUGE, "MLLP connections currently open."),
    "ri_gateway_frames_total": (COUNTER, "MLLP frames received."),
    "ri_gateway_bytes_outside_frames_total": (
        COUNTER, "Bytes received outside any MLLP frame and discarded."),
    "ri_gateway_empty_frames_total": (
        COUNTER, "MLLP frames holding no message (empty or blank), left unanswered."),
    "ri_gateway_messages_total": (
        COUNTER, "HL7 messages received, by message type and ACK code sent."),
    "ri_gateway_duplicates_total": (
        COUNTER, "HL7 messages recognised as duplicates of one already accepted."),
    "ri_gateway_content_errors_total": (
        COUNTER, "Messages ACKed before mapping whose content then failed to map."),
    "ri_gateway_analysis_seconds": (HISTOGRAM, "Time spent analysing one report, in seconds."),
    "ri_gateway_analysis_waiting_in_database": (
        GAUGE, "Reports waiting for analysis in the database only, the backlog in memory "
               "being full ([analysis] max_backlog)."),
    "ri_gateway_inferences_total": (COUNTER, "Inferences produced, by kind."),
    "ri_gateway_replays_total": (
        COUNTER, "Stored messages handed to analysis again on request (ri-gateway replay)."),
    "ri_gateway_outbox_depth": (GAUGE, "Messages waiting in the outbox, by destination."),
    "ri_gateway_outbox_oldest_pending_seconds": (
        GAUGE, "Age of the oldest message waiting in the outbox, by destination, in seconds."),
    "ri_gateway_outbox_held": (
        GAUGE, "Alerts held in the outbox behind an earlier alert of their study that is "
               "still pending, by destination."),
    "ri_gateway_deliveries_total": (
        COUNTER, "Outbound delivery attempts, by destination and outcome."),
    "ri_gateway_escalations_total": (
        COUNTER, "Alerts sent on to a route's escalate_to destinations, by reason."),
    "ri_gateway_http_requests_total": (COUNTER, "REST requests answered, by HTTP status."),
    "ri_gateway_analysis_pool_restarts_total": (
        COUNTER, "Analysis pools replaced after a worker died or an analysis timed "
                 "out, by reason."),
}

# Counters shown from the start, at 0, with every label value they can take: Prometheus'
# increase() and rate() count a series from its first sample, so the first content error,
# empty frame or worker death of a counter created by it went unseen by every alert rule
# on it, and a rule on a missing series (a typo, a scrape of the wrong port) cannot be
# told from a quiet one.  Counters labelled by destination, kind or status are created
# as those appear.
COUNTERS_FROM_START: dict[str, tuple[Mapping[str, str] | None, ...]] = {
    "ri_gateway_connections_total": (None,),
    "ri_gateway_frames_total": (None,),
    "ri_gateway_bytes_outside_frames_total": (None,),
    "ri_gateway_empty_frames_total": (None,),
    "ri_gateway_duplicates_total": (None,),
    "ri_gateway_content_errors_total": (None,),
    "ri_gateway_replays_total": (None,),
    "ri_gateway_escalations_total": ({"reason": "dead_lettered"}, {"reason": "undelivered"}),
    "ri_gateway_analysis_pool_restarts_total": ({"reason": "worker_died"}, {"reason": "timeout"}),
}

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelKey = tuple[tuple[str, str], ...]


class MetricsError(ValueError):
    """A metric was used in a way the exposition format cannot express."""


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class _Family:
    kind: str
    help: str
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    series: dict[LabelKey, float | _Histogram] = field(default_factory=dict)


class Metrics:
    """A registry of counters, gauges and histograms.

    ``buckets`` overrides the histogram buckets per metric name; ``help``
    adds or replaces help text per metric name.
    """

    def __init__(
        self,
        *,
        buckets: Mapping[str, Iterable[float]] | None = None,
        help: Mapping[str, str] | None = None,  # noqa: A002 - the format's own word
    ) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._buckets = {name: _check_buckets(b) for name, b in (buckets or {}).items()}
        self._help = dict(help or {})
        self._collectors: list[Callable[[Metrics], None]] = []

    # -- recording -----------------------------------------------------------

    def inc(self, name: str, labels: Mapping[str, str] | None = None, value: float = 1) -> None:
        """Add ``value`` (>= 0) to a counter."""
        if value < 0 or math.isnan(value):
            raise MetricsError(f"counter {name} can only go up, got {value!r}")
        key = _label_key(labels)
        with self._lock:
            family = self._family(name, COUNTER)
            family.series[key] = family.series.get(key, 0.0) + float(value)  # type: ignore[operator]

    def set(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set a gauge to ``value``."""
        key = _label_key(labels)
        with self._lock:
            self._family(name, GAUGE).series[key] = float(value)

    def observe(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Record one observation (seconds) in a histogram."""
        key = _label_key(labels)
        if "le" in dict(key):
            raise MetricsError(f"histogram {name} cannot have a label named 'le'")
        with self._lock:
            family = self._family(name, HISTOGRAM)
            hist = family.series.get(key)
            if hist is None:
                hist = _Histogram(family.buckets, [0] * len(family.buckets))
                family.series[key] = hist
            assert isinstance(hist, _Histogram)
            for i, bound in enumerate(hist.buckets):
                if value <= bound:
                    hist.counts[i] += 1
            hist.total += float(value)
            hist.count += 1

    def start_counters(self, counters: Mapping[str, Iterable[Mapping[str, str] | None]]
                       = COUNTERS_FROM_START) -> None:
        """Show each of ``counters`` (name -> label sets) at 0 until it counts something."""
        for name, label_sets in counters.items():
            for labels in label_sets:
                self.inc(name, labels, value=0)

    def add_collector(self, collector: Callable[[Metrics], None]) -> None:
        """Call ``collector(self)`` at the start of every :meth:`render`.

        For values cheaper to read on demand than to keep up to date, such as
        the outbox depth: the collector calls :meth:`set` with the current value.
        """
        with self._lock:
            self._collectors.append(collector)

    # -- reading -------------------------------------------------------------

    def get(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """Current value of a counter or gauge, or the observation count of a
        histogram; 0 for a series never touched."""
        key = _label_key(labels)
        with self._lock:
            family = self._families.get(name)
            value = family.series.get(key) if family else None
        if value is None:
            return 0.0
        if isinstance(value, _Histogram):
            return float(value.count)
        return value

    def render(self) -> str:
        """All metrics in the Prometheus text format, version 0.0.4."""
        with self._lock:
            collectors = list(self._collectors)
        for collector in collectors:
            collector(self)
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._families):
                family = self._families[name]
                lines.append(f"# HELP {name} {_escape_help(family.help)}")
                lines.append(f"# TYPE {name} {family.kind}")
                for key in sorted(family.series):
                    value = family.series[key]
                    if isinstance(value, _Histogram):
                        lines.extend(_histogram_lines(name, key, value))
                    else:
                        lines.append(f"{name}{_labels_text(key)} {_number(value)}")
        return "\n".join(lines) + "\n" if lines else ""

    # -- internals -----------------------------------------------------------

    def _family(self, name: str, kind: str) -> _Family:
        family = self._families.get(name)
        if family is None:
            if not _NAME.match(name):
                raise MetricsError(f"invalid metric name {name!r}")
            known_kind, known_help = KNOWN_METRICS.get(name, (kind, ""))
            if known_kind != kind:
                raise MetricsError(f"{name} is a {known_kind}, not a {kind}")
            help_text = self._help.get(name) or known_help or name.replace("_", " ")
            family = _Family(kind, help_text, self._buckets.get(name, DEFAULT_BUCKETS))
            self._families[name] = family
        elif family.kind != kind:
            raise MetricsError(f"{name} is a {family.kind}, not a {kind}")
        return family


def _check_buckets(buckets: Iterable[float]) -> tuple[float, ...]:
    result = tuple(float(b) for b in buckets if not math.isinf(b))
    if not result or list(result) != sorted(set(result)):
        raise MetricsError("histogram buckets must be a non-empty increasing sequence")
    return result


def _label_key(labels: Mapping[str, str] | None) -> LabelKey:
    if not labels:
        return ()
    # Counters are bumped for every message with the same few label sets: validating and
    # sorting them once per distinct set keeps that off the ACK path.
    raw = tuple(labels.items())
    try:
        key = _LABEL_KEYS.get(raw)
    except TypeError:  # an unhashable label value: validated and converted every time
        raw, key = (), None
    if key is None:
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise MetricsError(f"invalid label name {label!r}")
        key = tuple(sorted((k, str(v)) for k, v in raw))
        if raw and len(_LABEL_KEYS) < _LABEL_KEYS_MAX:
            _LABEL_KEYS[raw] = key
    return key


# Distinct label sets seen (bounded: labels built from input never grow it without limit).
_LABEL_KEYS: dict[tuple[tuple[str, Any], ...], LabelKey] = {}
_LABEL_KEYS_MAX = 4096


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(key: LabelKey) -> str:
    if not key:
        return ""
    inner = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in key)
    return "{" + inner + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _histogram_lines(name: str, key: LabelKey, hist: _Histogram) -> list[str]:
    lines = []
    for bound, count in zip(hist.buckets, hist.counts):
        le_key = key + (("le", _number_le(bound)),)
        lines.append(f"{name}_bucket{_labels_text(le_key)} {count}")
    lines.append(f"{name}_bucket{_labels_text(key + (('le', '+Inf'),))} {hist.count}")
    lines.append(f"{name}_sum{_labels_text(key)} {_number(hist.total)}")
    lines.append(f"{name}_count{_labels_text(key)} {hist.count}")
    return lines


def _number_le(bound: float) -> str:
    # prometheus_client writes bucket bounds as floats ("1.0"); do the same so
    # dashboards built against it match.
    return repr(float(bound))
