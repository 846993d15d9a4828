"""The Radiology Insights job endpoints and the twisted.web site that serves them.

    PUT /health-insights/radiology-insights/jobs/{id}?api-version=2024-10-01[&expand=jobData]
        201 (new job) or 200 (replaced) with the job, ``Operation-Location``
        (absolute URL to poll) and ``Retry-After``
    GET /health-insights/radiology-insights/jobs/{id}?api-version=2024-10-01[&expand=jobData]
        200 with the job: notStarted | running | succeeded (``result``) |
        failed (``error``); ``Retry-After`` while it is not finished

A PUT is answered once the job is committed (the audit writer's commit, off the
listener's thread: :mod:`gateway.http.job_store`), so a job a client was told about
survives a crash; a GET reads the stored job at once.

Every response carries ``x-ms-request-id``; every error is RI's error body with
``x-ms-error-code`` (see :mod:`gateway.http.errors`).  Request bodies larger
than ``max_body_bytes`` are refused with 413 as soon as the declared length (or
the bytes received) exceed it, without reading the rest.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from gateway.errors import DatabaseLost
from gateway.logging import get_logger
from gateway.metrics import Metrics
from ri_engine.errors import EngineError
from ri_engine.models import ModelError

from .auth import HEADER, ApiKeys
from .errors import JSON_CONTENT_TYPE, ApiError, error_body, render_error
from .job_runner import API_VERSIONS, JobRunner
from .job_store import ACTIVE_STATUSES, JobRecord
from .request_body import read_json
from .responses import answer_later

__all__ = ["GatewaySite", "JOBS_PATH", "JobsResource", "RootResource"]

log = get_logger("gateway.http")

JOBS_PATH = "/health-insights/radiology-insights/jobs"
_JOB_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]+[a-zA-Z0-9]")
MAX_JOB_ID = 36
HTTP_REQUESTS = "ri_gateway_http_requests_total"


class JobsResource(Resource):
    """``/health-insights/radiology-insights/jobs/{id}``."""

    isLeaf = True

    def __init__(self, runner: JobRunner, api_keys: ApiKeys, *, retry_after: int | None = 1,
                 base_url: str | None = None) -> None:
        super().__init__()
        self._runner = runner
        self._keys = api_keys
        self._retry_after = retry_after
        self._base_url = base_url.rstrip("/") if base_url else None

    def render(self, request: Any) -> bytes:
        try:
            self._keys.check(request.getHeader(HEADER))
            if request.method not in (b"GET", b"PUT"):
                raise ApiError(405, "MethodNotAllowed",
                               "Only GET and PUT are supported on a job.",
                               headers={"Allow": "GET, PUT"})
            job_id = _job_id(request.postpath)
            api_version = _api_version(request)
            if request.method == b"PUT":
                return self._put(request, job_id, api_version)
            return self._get(request, job_id)
        except Exception as exc:  # noqa: BLE001 - answered as 500, never as a dropped request
            return _error_response(request, exc)

    def _put(self, request: Any, job_id: str, api_version: str) -> Any:
        _check_content_encoding(request)
        body = _read_json(request)
        stored = self._runner.accept(job_id, body, api_version)
        answer = answer_later(request)

        def accepted(outcome: tuple[JobRecord, bool]) -> None:
            record, created = outcome
            request.setResponseCode(201 if created else 200)
            request.setHeader("Operation-Location", self._job_url(request, job_id, api_version))
            answer(self._job_response(request, record))
            self._runner.start(record)  # stored: it runs whether or not the client stayed

        def refused(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, (ApiError, EngineError, ModelError, DatabaseLost)):
                log.error("REST job not stored", error_type=failure.type.__name__)
                error = ApiError(500, "InternalError", "The job could not be stored; the "
                                 "error has been logged. Send the job again later.")
            answer(render_error(request, error))

        stored.addCallbacks(accepted, refused).addErrback(
            lambda f: log.error("REST job not started", error_type=f.type.__name__))
        return server.NOT_DONE_YET

    def _get(self, request: Any, job_id: str) -> bytes:
        record = self._runner.store.get(job_id, self._runner.now())
        if record is None:
            raise ApiError(404, "NotFound",
                           f"There is no job '{job_id}' (jobs expire 24 hours after they are created).",
                           target="id")
        return self._job_response(request, record)

    def _job_response(self, request: Any, record: JobRecord) -> bytes:
        request.setHeader("Content-Type", JSON_CONTENT_TYPE)
        if record.status in ACTIVE_STATUSES and self._retry_after is not None:
            request.setHeader("Retry-After", str(self._retry_after))
        job = record.to_json(expand_job_data=_expand_job_data(request))
        return json.dumps(job).encode("utf-8")

    def _job_url(self, request: Any, job_id: str, api_version: str) -> str:
        base = self._base_url or _request_base(request)
        return f"{base}{JOBS_PATH}/{quote(job_id)}?api-version={api_version}"


def _error_response(request: Any, exc: BaseException) -> bytes:
    """The error answer for ``exc``; an unexpected one (a 500) is logged, by type only."""
    # DatabaseLost is logged once where it was found (audit.database_lost).
    if not isinstance(exc, (ApiError, EngineError, ModelError, DatabaseLost)):
        log.error("REST request failed", error_type=type(exc).__name__,
                  method=request.method.decode("ascii", "replace"))
    return render_error(request, exc)


class RootResource(Resource):
    """The site root: named children, and RI's error body for every unknown path."""

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802 - twisted naming
        return _NotFound()

    def render(self, request: Any) -> bytes:
        return _NotFound().render(request)


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return render_error(request, ApiError(404, "NotFound", "There is no resource at this path."))


class _Request(server.Request):
    """A request that refuses an oversize body before reading it, and carries a request id."""

    _refused = False
    _received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - twisted naming
        if length is not None and length > self.channel.site.max_body_bytes:
            self._refuse_oversize()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - twisted naming
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.channel.site.max_body_bytes:
            self._refuse_oversize()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if self._refused:
            return
        self.setHeader("x-ms-request-id", str(uuid.uuid4()))
        self._started = time.monotonic()
        super().process()

    def _refuse_oversize(self) -> None:
        """Answer 413 at once and close: the rest of the body is never read."""
        self._refused = True
        # No "100 Continue" for a body we will not read: the 413 is the answer.
        self.requestHeaders.removeHeader(b"Expect")
        site: GatewaySite = self.channel.site
        limit = site.max_body_bytes
        error = ApiError(413, "RequestEntityTooLarge",
                         f"The request body is larger than the limit of {limit} bytes.")
        body = error_body(error)
        head = (
            f"HTTP/1.1 413 Request Entity Too Large\r\n"
            f"Content-Type: {JSON_CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-ms-error-code: {error.code}\r\n"
            f"x-ms-request-id: {uuid.uuid4()}\r\n"
            f"Connection: close\r\n\r\n"
        ).encode("ascii")
        self.channel.transport.write(head + body)
        self.channel.loseConnection()
        site.count_request(413)
        log.info("REST request refused", status=413, limit=limit)


class GatewaySite(server.Site):
    """The REST site: counts requests by status and starts/stops the job machinery
    with the listener (``startFactory``/``stopFactory``)."""

    requestFactory = _Request
    displayTracebacks = False
    noisy = False

    def __init__(self, resource: Resource, *, runner: JobRunner, metrics: Metrics,
                 max_body_bytes: int, purge_interval: float,
                 reactor: IReactorTime | None = None) -> None:
        # The channels' idle timeouts run on the same clock as the jobs, so a site built on a
        # test clock leaves nothing behind in the global reactor.
        super().__init__(resource, reactor=reactor)
        self.runner = runner
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._purge_interval = purge_interval

    def startFactory(self) -> None:  # noqa: N802 - twisted naming
        super().startFactory()
        self.runner.resume()
        self.runner.start_purging(self._purge_interval)

    def stopFactory(self) -> None:  # noqa: N802 - twisted naming
        self.runner.stop_purging()
        super().stopFactory()

    def count_request(self, status: int) -> None:
        self.metrics.inc(HTTP_REQUESTS, {"status": str(status)})

    def log(self, request: Any) -> None:
        """One line and one count per answered request (never headers or body)."""
        self.count_request(request.code)
        started = getattr(request, "_started", None)
        log.info("REST request", method=request.method.decode("ascii", "replace"),
                 path=request.path.decode("ascii", "replace"), status=request.code,
                 seconds=round(time.monotonic() - started, 4) if started else None)


def _api_version(request: Any) -> str:
    values = request.args.get(b"api-version")
    if not values:
        raise ApiError(400, "MissingApiVersionParameter",
                       "The api-version query parameter is required "
                       f"({', '.join(API_VERSIONS)}).", target="api-version")
    version = values[0].decode("utf-8", "replace")
    if version not in API_VERSIONS:
        raise ApiError(400, "UnsupportedApiVersion",
                       f"The api-version '{version[:40]}' is not supported; "
                       f"use one of {', '.join(API_VERSIONS)}.", target="api-version")
    return version


def _job_id(postpath: list[bytes]) -> str:
    if len(postpath) != 1 or not postpath[0]:
        raise ApiError(404, "NotFound", "A job URL is .../jobs/{id}.")
    job_id = postpath[0].decode("utf-8", "replace")
    if len(job_id) > MAX_JOB_ID or not _JOB_ID.fullmatch(job_id):
        raise ApiError(
            400, "InvalidJobId",
            f"The job id '{job_id[:60]}' is invalid: use 3 to {MAX_JOB_ID} letters, digits, "
            "'-' or '_', starting and ending with a letter or digit.", target="id")
    return job_id


def _check_content_encoding(request: Any) -> None:
    """A compressed body would otherwise be read as text and refused as "not UTF-8"."""
    encoding = (request.getHeader(b"content-encoding") or b"").decode("latin-1").strip()
    if encoding and encoding.lower() != "identity":
        raise ApiError(415, "UnsupportedMediaType",
                       f"Content-Encoding '{encoding[:40]}' is not supported; send the request "
                       "body uncompressed.", target="Content-Encoding")


def _read_json(request: Any) -> Any:
    return read_json(request.content.read() if request.content is not None else b"")


def _expand_job_data(request: Any) -> bool:
    values = request.args.get(b"expand", [])
    wanted = {part.strip().lower() for v in values for part in v.split(b",")}
    return b"jobdata" in wanted


def _request_base(request: Any) -> str:
    scheme = "https" if request.isSecure() else "http"
    host = request.getHeader(b"host")
    if host:
        return f"{scheme}://{host.decode('ascii', 'replace')}"
    # No Host header (HTTP/1.0): the listening address, an IPv6 one in brackets (RFC 3986).
    address = request.getHost()
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{scheme}://{host}:{address.port}"
