"""``GET /health``: liveness and readiness in one answer, for probes and load balancers.

    GET /health        200 when every readiness check passes, else 503
    GET /health/ready  the same
    GET /health/live   200 whenever the process answers at all

Checks are plain callables returning True when healthy (the database is
writable, the engine is loaded, the MLLP listener is up), or a Deferred that fires
with it (the database check is a write through the audit writer, answered once it
commits); one that raises, or has not answered within ``timeout`` seconds, counts as
failing (a writer stuck behind a hung disk must turn the probe red, not leave it
without an answer until the probe's own timeout).  The body follows the shape of the
IETF health-check draft::

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

# Seconds a check may take before it counts as failing: a database write that takes
# longer is as good as down, and a probe allowed longer gets a 503 rather than nothing.
CHECK_TIMEOUT = 5.0


class HealthResource(ReadOnlyResource):
    def __init__(self, checks: Mapping[str, HealthCheck], *, clock: Any = None,
                 timeout: float = CHECK_TIMEOUT) -> None:
        super().__init__()
        self._checks = dict(checks)
        self._clock = clock
        self._timeout = timeout

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

    def _run(self, name: str, check: HealthCheck) -> Deferred[bool]:
        def failed(failure: Failure) -> bool:  # a broken check is a failing check
            log.warning("health check raised", check=name, error_type=failure.type.__name__)
            return False

        d = maybeDeferred(check)
        if self._clock is not None and not d.called:
            # Cancelling a write queued in the audit writer only drops our interest in
            # it: the write itself still commits (its Deferred ignores the late result).
            d.addTimeout(self._timeout, self._clock)
        return d.addCallbacks(bool, failed)


def _answer(request: Any, names: list[str], passed: list[bool]) -> bytes:
    results = {name: "pass" if ok else "fail" for name, ok in zip(names, passed)}
    healthy = all(passed)
    if not healthy:
        request.setResponseCode(503)
    return _body({"status": "pass" if healthy else "fail", "checks": results})


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8")
