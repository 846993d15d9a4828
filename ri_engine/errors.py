"""Errors the engine raises.

    EngineError
    ├── RequestError          the request breaks an RI rule (limits, locale, missing field);
    │                         the caller's fault: REST 400, CLI exit 2, HL7 AE
    └── AnalysisFailure       the engine itself failed on a valid request: REST 500, HL7 AR

Each carries ``code`` (RI-style error code string) and ``target`` (the request path at fault).
"""

from __future__ import annotations


class EngineError(Exception):
    code = "InternalError"

    def __init__(self, message: str, *, code: str | None = None, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.target = target


class RequestError(EngineError):
    """The request is not one RI would accept (ri_contract §1.1)."""

    code = "BadRequest"


class AnalysisFailure(EngineError):
    """The engine failed while analysing an acceptable request."""

    code = "InternalError"
