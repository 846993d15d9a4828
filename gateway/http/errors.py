"""REST errors, and the one place where any failure becomes an HTTP status and RI error body.

Radiology Insights answers every failure with the Azure error envelope::

    {"error": {"code": "...", "message": "...", "target": "...", "details": [...]}}

plus the header ``x-ms-error-code`` carrying the same code.  A job that fails
after it was accepted carries the same ``{code, message, target}`` object in its
``error`` field.

Errors::

    Exception
    └── ApiError            status, code, message, target: raised by the REST
                            layer itself (bad id, bad api-version, no key, ...)

Everything else that can reach the REST layer is translated by
:func:`api_error_from` (and :func:`job_error_from` for failed jobs):

    ri_engine.errors.RequestError   -> 400, the engine's code and target
    ri_engine.models.ModelError     -> 400 InvalidRequestBody, target = JSON path
    ri_engine.errors.AnalysisFailure-> 500 InternalError
    gateway.errors.DatabaseLost     -> 503 ServiceUnavailable (the database file was
                                       deleted or replaced: nothing is stored until a
                                       restart)
    anything else                   -> 500 InternalError (message never leaks
                                       internals or report text)
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import DatabaseLost
from ri_engine.errors import AnalysisFailure, RequestError
from ri_engine.models import ErrorDetail, ModelError

__all__ = ["ApiError", "api_error_from", "error_body", "job_error_from", "render_error"]

_INTERNAL_MESSAGE = "The server failed to analyse the request; the error has been logged."
# No path: the logs name the file (audit.database_lost), a client needs only to know.
_LOST_MESSAGE = ("The gateway's database was deleted or replaced while it ran; no job can be "
                 "stored or read until the gateway is restarted.")


class ApiError(Exception):
    """A request the REST layer refuses, with the HTTP status to answer it with."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = dict(headers or {})

    def detail(self) -> ErrorDetail:
        return ErrorDetail(code=self.code, message=self.message, target=self.target)


def api_error_from(exc: BaseException) -> ApiError:
    """Translate any exception raised while serving a request into an :class:`ApiError`."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestError):
        return ApiError(400, exc.code, exc.message, target=exc.target)
    if isinstance(exc, ModelError):
        return ApiError(400, "InvalidRequestBody", exc.message, target=exc.path or None)
    if isinstance(exc, AnalysisFailure):
        return ApiError(500, exc.code or "InternalError", _INTERNAL_MESSAGE)
    if isinstance(exc, DatabaseLost):
        return ApiError(503, "ServiceUnavailable", _LOST_MESSAGE)
    return ApiError(500, "InternalError", _INTERNAL_MESSAGE)


def job_error_from(exc: BaseException) -> ErrorDetail:
    """The ``error`` object of a job whose analysis ended with ``exc``."""
    return api_error_from(exc).detail()


def error_body(error: ApiError) -> bytes:
    """The JSON body RI sends with an error status."""
    payload: dict[str, Any] = {"error": error.detail().to_json()}
    return json.dumps(payload).encode("utf-8")


JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def render_error(request: Any, exc: BaseException) -> bytes:
    """Set status and headers on a twisted.web ``request`` for ``exc``; return the body."""
    error = api_error_from(exc)
    request.setResponseCode(error.status)
    request.setHeader("Content-Type", JSON_CONTENT_TYPE)
    request.setHeader("x-ms-error-code", error.code)
    for name, value in error.headers.items():
        request.setHeader(name, value)
    return error_body(error)
