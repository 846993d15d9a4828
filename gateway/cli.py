"""The ``ri-gateway`` command line.

Each subcommand lives in ``gateway/commands/<name>.py`` and defines a click command
(or group) of the same name; :data:`COMMAND_MODULES` lists them.  Commands raise the
project's exceptions; this module alone turns them into messages and exit codes:

====  ==================================================================
code  meaning
====  ==================================================================
0     success
1     the command ran but the outcome is negative (an ACK other than
      AA/CA, an analysis that failed, a control id not in the audit log,
      an outbox id that cannot be re-queued)
2     bad usage or input: invalid configuration value (names the key),
      unreadable file, a message or request that cannot be used
3     the gateway or a peer cannot be reached, or the audit database fails
128+N ``serve`` forced to stop by a second stop signal N (130: SIGINT;
      gateway.process_exit)
====  ==================================================================
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from . import stop_signals

# Before the imports below (about a second): a stop signal then must stop `serve` as it
# does later, not end it at once (gateway.stop_signals). Only `serve` is a service; the
# group's own options (--help, --version) come before a command, so it is argv[1].
if sys.argv[1:2] == ["serve"]:
    stop_signals.catch()

import click  # noqa: E402 - after the stop signals are caught

from .errors import (  # noqa: E402
    AuditError, ConfigError, GatewayError, InputError, NegativeOutcome, PeerUnavailable,
)

__all__ = ["COMMAND_MODULES", "exit_code", "main"]

COMMAND_MODULES = ("serve", "send", "sink", "audit", "replay", "report", "map", "analyze",
                   "outbox", "evaluate")
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def exit_code(exc: BaseException) -> int:
    from mappings.errors import HL7Error
    from ri_engine.errors import RequestError
    from ri_engine.models import ModelError

    if isinstance(exc, NegativeOutcome):
        return 1
    if isinstance(exc, (ConfigError, InputError, HL7Error, RequestError, ModelError)):
        return 2
    if isinstance(exc, (PeerUnavailable, AuditError)):
        return 3
    return 1


def _known_errors() -> tuple[type[BaseException], ...]:
    from mappings.errors import HL7Error
    from ri_engine.errors import EngineError
    from ri_engine.models import ModelError

    return (GatewayError, HL7Error, EngineError, ModelError)


def describe(exc: BaseException) -> str:
    """One line for the user: what is wrong and where (a key, a field, a segment)."""
    if isinstance(exc, ConfigError):
        return str(exc)
    message = getattr(exc, "message", None) or str(exc)
    where = getattr(exc, "location", "") or getattr(exc, "target", "") or getattr(exc, "path", "")
    return f"{where}: {message}" if where and not message.startswith(where) else message


class GatewayGroup(click.Group):
    """Turns the project's exceptions into a message on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _known_errors() as exc:
            click.echo(f"ri-gateway: {describe(exc)}", err=True)
            ctx.exit(exit_code(exc))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ri-gateway")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "unknown"


@click.group(cls=GatewayGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(_version(), "--version", prog_name="ri-gateway")
def main() -> None:
    """HL7 v2 gateway with a local Radiology Insights-style report analysis engine."""


def _register() -> None:
    for name in COMMAND_MODULES:
        module_name = f"gateway.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a command not installed in this tree
            raise
        main.add_command(getattr(module, name), name)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
