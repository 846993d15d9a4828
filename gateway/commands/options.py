"""Options shared by several commands: where the configuration and the database are."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any

import click

from gateway.config import Settings, load_settings
from gateway.local_time import parse_local

__all__ = ["DATE_HELP", "config_option", "db_option", "parse_date", "settings_from"]

# How every DATE option reads its value, for its help.
DATE_HELP = "ISO 8601; local time without an offset"

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar="RI_GATEWAY_CONFIG",
    help="TOML configuration file (env RI_GATEWAY_CONFIG); embedded defaults without it.")

db_option = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False),
    help="Audit database file (overrides [storage] db).")


def settings_from(config_path: str | None, overrides: dict[str, Any],
                  cross_checks: bool = False) -> Settings:
    return load_settings(config_path, overrides, os.environ, cross_checks=cross_checks)


def with_settings(fn: Callable[..., Any]) -> Callable[..., Any]:
    return config_option(db_option(fn))


def parse_date(value: str) -> dt.datetime:
    """A DATE option (ISO 8601 date or date-time; local time when it has no offset:
    :mod:`gateway.local_time`)."""
    try:
        return parse_local(value)
    except ValueError:
        ctx = click.get_current_context(silent=True)
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time",
                                 ctx=ctx, param=_option_holding(ctx, value)) from None


def _option_holding(ctx: click.Context | None, value: str) -> click.Parameter | None:
    """The option given ``value``, so that the error names it ("Invalid value for
    '--since'"): a command has several DATE options and parses them in its body."""
    if ctx is None:
        return None
    return next((p for p in ctx.command.params if ctx.params.get(p.name) == value), None)
