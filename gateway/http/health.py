"""``GET /health``: liveness and readiness in one answer, for probes and load balancers.

    GET /health        200 when every readiness check passes, else 503
    GET /health/ready  the same
    GET /health/live   200 whenever the process answers at all

Checks are plain callables returning True when healthy (the database is
writable, the engine is loaded, the MLLP listener is up), or a Deferred that fires
with it (the database check is a write through the audit writer, answered once it
commits); one that raises counts as failing.  The body follows the shape of the IETF health-check draft::

    {"status": "pass", "checks": {"database": "pass", "engine": "pass"}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from gateway.logging import get_logger

from .read_only import ReadOnlyResource
from .responses import answer_later

__all__ = ["HealthCheck", "HealthResource"]

log = get_logger("gateway.http")

HealthCheck = Callable[[], "bool | Deferred[bool]"]


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
        names = list(self._checks)
        outcomes = gatherResults([self._run(name, check) for name, check in self._checks.items()])
        answer: list[bytes] = []
        outcomes.addCallback(lambda passed: answer.append(_answer(request, names, passed)))
        if answer:  # every check answered at once
            return answer[0]
        outcomes.addCallback(lambda _, later=answer_later(request): later(answer[0]))
        return NOT_DONE_YET

    @staticmethod
    def _run(name: str, check: HealthCheck) -> Deferred[bool]:
        def failed(failure: Failure) -> bool:  # a broken check is a failing check
            log.warning("health check raised", check=name, error_type=failure.type.__name__)
            return False

        return maybeDeferred(check).addCallbacks(bool, failed)


def _answer(request: Any, names: list[str], passed: list[bool]) -> bytes:
    results = {name: "pass" if ok else "fail" for name, ok in zip(names, passed)}
    healthy = all(passed)
    if not healthy:
        request.setResponseCode(503)
    return _body({"status": "pass" if healthy else "fail", "checks": results})


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8")
