"""Where each configuration value was given (the TOML file and its line, an environment
variable, the command line), so that :func:`gateway.config.load_settings` reports an
invalid value where it can be corrected and not only by its key: a value from the
environment overrides the file's, which then looks right."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["ENV_PREFIX", "Origins"]

ENV_PREFIX = "RI_GATEWAY_"

# A table header ("[destinations.pager]") and a key ("endpoint =", "a.b =") of a TOML line.
_TOML_NAME = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_TOML_HEADER = re.compile(rf"^\[\s*({_TOML_NAME}(?:\s*\.\s*{_TOML_NAME})*)\s*\]\s*(?:#.*)?$")
_TOML_KEY = re.compile(rf"^({_TOML_NAME}(?:\s*\.\s*{_TOML_NAME})*)\s*=")
_TOML_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


def _toml_parts(dotted: str) -> list[str]:
    return ["".join(groups) for groups in _TOML_PART.findall(dotted)]


class Origins:
    """Where each setting was given, by dotted key (``destinations.pager.endpoint``) or
    table (``destinations.pager``)."""

    _FILE = ""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.by_key: dict[str, str] = {}

    def add_file(self, tables: Mapping[str, Any], prefix: str = "") -> None:
        for key, value in tables.items():
            dotted = f"{prefix}{key}"
            self.by_key[dotted] = self._FILE
            if isinstance(value, Mapping):
                self.add_file(value, dotted + ".")

    def set(self, dotted: str, origin: str) -> None:
        self.by_key[dotted] = origin

    def set_table(self, dotted: str, origin: str) -> None:
        # A table the environment creates is its variable's; one in the file stays there.
        self.by_key.setdefault(dotted, origin)

    def located(self, exc: ConfigError) -> ConfigError:
        """``exc`` with where its key's value came from appended."""
        where = self.where(exc.key)
        return exc if where is None else ConfigError(exc.key, f"{exc.message} ({where})")

    def where(self, dotted: str) -> str | None:
        """Where the value of ``dotted`` (a key, or a key of a table) was given, in words:
        ``in FILE, line N``, ``set by RI_GATEWAY_...``, ``set on the command line``; None for
        a default."""
        parts = dotted.split(".") if dotted else []
        for n in range(len(parts), 0, -1):
            origin = self.by_key.get(".".join(parts[:n]))
            if origin is not None:
                break
        else:
            return None
        if origin == self._FILE:
            line = self._line_of(parts[:n])
            return f"in {self.path}" + (f", line {line}" if line else "")
        if n < len(parts):  # a key missing from a table the environment made
            return f"[{'.'.join(parts[:n])}] made by {origin}"
        return f"set by {origin}" if origin.startswith(ENV_PREFIX) else f"set on {origin}"

    def _line_of(self, parts: list[str]) -> int | None:
        """The line of the file that sets ``parts`` (a key or a table header), if found."""
        try:
            with open(self.path or "", encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return None
        table: list[str] = []
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            header = _TOML_HEADER.match(stripped)
            if header:
                table = _toml_parts(header.group(1))
                if table == parts:
                    return number
                continue
            key = _TOML_KEY.match(stripped)
            if key and table + _toml_parts(key.group(1)) == parts:
                return number
        return None
