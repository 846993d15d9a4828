"""Checks on JSON text shared by the REST API (:mod:`gateway.http.request_body`) and the
command line's inputs (:mod:`gateway.inputs`), so both refuse the same requests.

``json.loads`` turns a ``\\ud800``-style escape that is not half of a surrogate pair into
a string that is no Unicode text: the engine's tokenizer cannot encode it, and the request
failed as an analysis failure instead of being refused as bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["LoneSurrogate", "find_lone_surrogate", "json_path"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# The escape of a surrogate code unit that is not half of a pair: a high one not followed
# by a low one, or a low one not preceded by a high one.
_LONE_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


@dataclass(frozen=True)
class LoneSurrogate:
    """Where an unpaired surrogate is: ``path`` in the form the models use in their error
    targets (``jobData.patients[0].id``; empty for the top-level value)."""

    code_point: int
    path: str

    @property
    def message(self) -> str:
        return (f"holds an unpaired surrogate escape (\\u{self.code_point:04x}), "
                "which is not a Unicode character")


def find_lone_surrogate(text: str, value: Any) -> LoneSurrogate | None:
    """The first unpaired surrogate in ``value``, the result of ``json.loads(text)``.

    ``value`` is walked only when ``text`` has an unpaired surrogate escape (decoded
    UTF-8 never holds a surrogate, and a pair such as ``\\ud83d\\ude00`` becomes one
    character), so the path of every value is built only then.
    """
    # str.find first: the regular expression costs ten times as much on text without any.
    if not ("\\ud" in text or "\\uD" in text) or not _LONE_SURROGATE_ESCAPE.search(text):
        return None
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                found = _in_text(key, path)
                if found:
                    return found
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
        elif isinstance(item, str):
            found = _in_text(item, path)
            if found:
                return found
    return None


def _in_text(text: str, path: tuple[str | int, ...]) -> LoneSurrogate | None:
    if text.isascii():
        return None
    found = _LONE_SURROGATE.search(text)
    return LoneSurrogate(ord(found.group()), json_path(path)) if found else None


def json_path(path: tuple[str | int, ...]) -> str:
    """``jobData.patients[0].id``: the form the models use in their error targets."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
