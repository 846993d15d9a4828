"""The Radiology Insights-style analysis engine (``from ri_engine import Engine``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import AnalysisFailure, EngineError, RequestError

if TYPE_CHECKING:
    from .engine import MODEL_VERSION, Engine

__all__ = sorted(["AnalysisFailure", "Engine", "EngineError", "MODEL_VERSION", "RequestError"])


def __getattr__(name: str) -> Any:
    # The engine (spaCy and the knowledge files) loads on first use, not with the package:
    # every command imports ri_engine's errors and models, and most never analyse anything
    # (send, audit, outbox, report), yet each paid about a second of start-up for spaCy.
    if name in ("Engine", "MODEL_VERSION"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
