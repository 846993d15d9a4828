"""Structured logging for the gateway: structlog, one processor chain for everything.

:func:`configure_logging` is called once by the CLI.  It sets up structlog to write
JSON lines on stdout when stdout is not a terminal (readable console lines when it
is) and routes Twisted's own log events (``twisted.logger``) through the same
processors, so a deployment sees one stream in one format.

No PHI in logs: :func:`redact` runs on every event before rendering.  It masks
values under keys that could hold message contents (``payload``, ``message``,
``segment``, ``text``, ...) when they are long or look like HL7 (contain ``|``), and
masks any value anywhere that contains an HL7 segment (``PID|...``), such as the text
of an exception raised while parsing.  Code should log control ids, counts and codes;
the processor is the safety net for what slips through.
"""

from __future__ import annotations

import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "configure_logging", "get_logger", "log_to_stderr", "redact",
           "twisted_observer"]

REDACTED = "[redacted]"

# Keys whose values may carry message or report content.
SENSITIVE_KEYS = frozenset({
    "payload", "message", "segment", "segments", "text", "raw", "content", "report",
    "body", "data", "value", "hl7", "msg",
})
# Short values under a sensitive key (an error text such as "missing PID") are kept.
MAX_SENSITIVE_LENGTH = 80
# Three-character segment id followed by the field separator, e.g. "PID|" or "OBX|".
_SEGMENT = re.compile(r"(?:^|[\r\n\s'\"])(?:MSH|[A-Z][A-Z0-9]{2})\|")

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def _looks_sensitive(key: str, value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if not isinstance(value, str):
        return False
    if "|" not in value:  # most values: no segment is possible, skip the regex
        return key in SENSITIVE_KEYS and len(value) > MAX_SENSITIVE_LENGTH
    return key in SENSITIVE_KEYS or bool(_SEGMENT.search(value))


def _scrub(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(key, v) for v in value]
    if _looks_sensitive(key, value):
        return REDACTED
    return value


def redact(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask anything that could be message contents."""
    for key in list(event_dict):
        event_dict[key] = _scrub(key, event_dict[key])
    return event_dict


def _processors(json: bool) -> list[Any]:
    renderer: Any = (structlog.processors.JSONRenderer(sort_keys=False) if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Exceptions are rendered to text first so redaction sees the text.
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]


_twisted_started = False


def twisted_observer(event: dict[str, Any]) -> None:
    """A ``twisted.logger`` observer that re-emits the event through structlog."""
    from twisted.logger import LogLevel, formatEvent

    level = event.get("log_level")
    name = {
        LogLevel.debug: "debug", LogLevel.info: "info", LogLevel.warn: "warning",
        LogLevel.error: "error", LogLevel.critical: "critical",
    }.get(level, "info")
    fields: dict[str, Any] = {"source": "twisted", "namespace": event.get("log_namespace")}
    failure = event.get("log_failure")
    if failure is not None:
        fields["error"] = failure.getTraceback()
    text = formatEvent(event) or (failure.getErrorMessage() if failure is not None else "")
    getattr(structlog.get_logger("twisted"), name)(text, **fields)


def configure_logging(level: str = "INFO", json: bool | None = None,
                      stream: TextIO | None = None) -> None:
    """Configure structlog (and hook Twisted's log events into it).

    ``json=None`` chooses JSON when ``stream`` (default stdout) is not a terminal.
    Safe to call more than once; Twisted's observer is installed only the first time.
    """
    global _twisted_started
    stream = sys.stdout if stream is None else stream
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    structlog.configure(
        processors=_processors(json),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    if not _twisted_started:
        from twisted.logger import globalLogBeginner

        globalLogBeginner.beginLoggingTo([twisted_observer], redirectStandardIO=False,
                                         discardBuffer=True)
        _twisted_started = True


class _StandardError:
    """``sys.stderr`` as it is at each write (a test runner may swap it after the call)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def log_to_stderr(level: str = "INFO") -> None:
    """For the commands whose standard output is their answer (``send``, ``sink``): the
    MLLP layer's log lines go to stderr, redacted like the gateway's, instead of
    structlog's unconfigured default, which printed them on stdout between the ACKs."""
    configure_logging(level, stream=_StandardError())  # type: ignore[arg-type]


def get_logger(name: str = "gateway", **bound: Any) -> Any:
    """A structlog logger bound to ``bound`` (``peer``, ``conn_id``, ``control_id``...)."""
    return structlog.get_logger(name).bind(**bound)
