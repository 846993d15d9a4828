"""The Radiology Insights-style analysis engine (``from ri_engine import Engine``)."""

from __future__ import annotations

from .engine import MODEL_VERSION, Engine
from .errors import AnalysisFailure, EngineError, RequestError

__all__ = sorted(["AnalysisFailure", "Engine", "EngineError", "MODEL_VERSION", "RequestError"])
