"""``GET /metrics``: every gateway metric in the Prometheus text format."""

from __future__ import annotations

from typing import Any

from gateway.metrics import CONTENT_TYPE, Metrics

from .read_only import ReadOnlyResource

__all__ = ["MetricsResource"]


class MetricsResource(ReadOnlyResource):
    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's method naming
        request.setHeader("Content-Type", CONTENT_TYPE)
        request.setHeader("Cache-Control", "no-store")
        return self._metrics.render().encode("utf-8")
