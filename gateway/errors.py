"""Errors the gateway application raises itself.

    GatewayError
    ├── ConfigError        a configuration value is invalid; ``key`` names it
    │                      (``mllp.max_frame_size``); the CLI exits 2 with the message
    ├── AuditError         the audit database cannot be opened or written
    │   └── DatabaseLost   its file or WAL was deleted or replaced under the running
    │                      gateway: nothing can be stored until a restart
    ├── InputError         a file given to a CLI command cannot be used (not HL7, not
    │                      JSON, unreadable); the CLI exits 2 with the message
    ├── NegativeOutcome    a command did its work and the answer is "no" (an ACK other
    │                      than AA/CA, an unknown control id); the CLI exits 1
    └── PeerUnavailable    the gateway or a downstream peer cannot be reached; exit 3

HL7 content errors are ``mappings.errors.HL7Error``; engine errors are
``ri_engine.errors.EngineError``.  They are translated to ACK codes in exactly one
place (:mod:`gateway.ack_policy`) and to CLI exit codes at the CLI boundary.
"""

from __future__ import annotations

__all__ = [
    "AuditError", "ConfigError", "DatabaseLost", "GatewayError", "InputError", "NegativeOutcome",
    "PeerUnavailable", "audit_reason",
]


class GatewayError(Exception):
    """Base class of the gateway's own errors."""


class ConfigError(GatewayError):
    """An invalid configuration value; ``key`` is the dotted key (``section.name``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class AuditError(GatewayError):
    """The audit database cannot be opened, created or written."""


class DatabaseLost(AuditError):
    """The database file or its WAL a running gateway writes was deleted or replaced
    (``gateway.database_files``): every later write fails with this, until a restart."""


def audit_reason(error: BaseException | None) -> str | None:
    """What a log line says of a failed audit write: the text of an :class:`AuditError`
    (the file and SQLite's own error, such as "database is locked"; never message
    content), None for any other error, whose text may quote what it failed on."""
    return str(error) if isinstance(error, AuditError) else None


class InputError(GatewayError):
    """A file or value given on the command line cannot be used."""


class NegativeOutcome(GatewayError):
    """A command did its work and the outcome is negative."""


class PeerUnavailable(GatewayError):
    """A peer (the gateway, a downstream system) cannot be reached."""
