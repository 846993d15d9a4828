"""``GET /health``: liveness and readiness in one answer, for probes and load balancers.

    GET /health        200 when every readiness check passes, else 503
    GET /health/ready  the same
    GET /health/live   200 whenever the process answers at all

Checks are plain callables returning True when healthy (the database is
writable, the engine is loaded, the MLLP listener is up); one that raises
counts as failing.  The body follows the shape of the IETF health-check draft::

    {"status": "pass", "checks": {"database": "pass", "engine": "pass"}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from gateway.logging import get_logger

from .read_only import ReadOnlyResource

__all__ = ["HealthCheck", "HealthResource"]

log = get_logger("gateway.http")

HealthCheck = Callable[[], bool]


class HealthResource(ReadOnlyResource):
    def __init__(self, checks: Mapping[str, HealthCheck]) -> None:
        super().__init__()
        self._checks = dict(checks)

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's method naming
        request.setHeader("Content-Type", "application/json; charset=utf-8")
        request.setHeader("Cache-Control", "no-store")
        where = [p for p in request.postpath if p]
        if where == [b"live"]:
            return _body({"status": "pass"})
        if where not in ([], [b"ready"]):
            request.setResponseCode(404)
            return _body({"status": "fail", "reason": "unknown health endpoint"})
        results = {name: "pass" if self._run(name, check) else "fail"
                   for name, check in self._checks.items()}
        healthy = all(r == "pass" for r in results.values())
        if not healthy:
            request.setResponseCode(503)
        return _body({"status": "pass" if healthy else "fail", "checks": results})

    @staticmethod
    def _run(name: str, check: HealthCheck) -> bool:
        try:
            return bool(check())
        except Exception as exc:  # noqa: BLE001 - a broken check is a failing check
            log.warning("health check raised", check=name, error_type=type(exc).__name__)
            return False


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8")
