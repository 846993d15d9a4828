"""A PUT body read as JSON, strictly: what RI's JSON is and Python's ``json`` module is not.

``json.loads`` accepts more than RFC 8259 JSON, and some of what it accepts cannot be
handled further on:

- ``NaN``, ``Infinity`` and ``-Infinity``, and numbers such as ``1e400`` that overflow
  to infinity: not JSON; stored as they are, they came back as invalid JSON with
  ``expand=jobData``;
- integers longer than Python converts (4300 digits): a ``ValueError``, answered 500;
- deep nesting: a ``RecursionError`` in the parser, or later in any code that walks the
  value (the models, ``json.dumps`` of the stored request), answered 500;
- a ``\\ud800``-style escape that is not half of a surrogate pair: a string that is no
  Unicode text, which the engine's tokenizer cannot encode (the job failed with
  InternalError).

Each is refused here with 400 ``InvalidRequestBody``, naming the field where there is one.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from .errors import ApiError

__all__ = ["MAX_DEPTH", "read_json"]

# Objects and arrays inside one another.  The deepest RI request (an ordered procedure's
# coding extension, or a FHIR resource in clinicalInfo) is about a dozen levels; the limit
# leaves ample room for that while keeping every later recursive walk of the value far
# from Python's recursion limit.
MAX_DEPTH = 64

_CONTAINERS = (dict, list)  # what json.loads builds objects and arrays as
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# The escape of a surrogate code unit that is not half of a pair: a high one not followed
# by a low one, or a low one not preceded by a high one.
_LONE_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


class _NotJson(ValueError):
    """Raised from the parser's hooks for a value RFC 8259 JSON cannot hold."""


def read_json(raw: bytes) -> Any:
    """The JSON value of a request body; raises :class:`ApiError` (400) when it is not JSON."""
    if not raw.strip():
        raise _invalid("The request body is empty.")
    try:
        # RI takes UTF-8 JSON (a byte order mark is tolerated).
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid("The request body is not UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        # The position only: the decoder's message never quotes the document.
        raise _invalid(f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                       f"column {exc.colno}.") from None
    except _NotJson as exc:
        raise _invalid(f"The request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        # The one other ValueError json.loads raises: int() refusing a very long integer.
        raise _invalid("The request body is not valid JSON: an integer has more than "
                       f"{sys.get_int_max_str_digits()} digits.") from None
    _check_depth(raw, value)
    # str.find first: the regular expression costs ten times as much on a body without any.
    if ("\\ud" in text or "\\uD" in text) and _LONE_SURROGATE_ESCAPE.search(text):
        _check_surrogates(value)
    return value


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NotJson(f"the number {text[:40]} is out of range")
    return number


def _check_depth(raw: bytes, value: Any) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH`, measured without recursion.

    A body with no more brackets than that cannot nest deeper (the usual case: one count
    in C); otherwise the containers alone are walked, scalars are only looked at.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    level: list[Any] = [value]
    depth = 1
    while level:  # one nesting level at a time
        if depth > MAX_DEPTH:
            raise _too_deep()
        inner: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            inner += [child for child in children if type(child) in _CONTAINERS]
        level = inner
        depth += 1


def _check_surrogates(value: Any) -> None:
    """Refuse a string holding an unpaired surrogate, naming where it is.

    Only called when the body has an unpaired surrogate escape (decoded UTF-8 never holds
    a surrogate, and a pair such as ``\\ud83d\\ude00`` becomes one character), so the path
    of every value is built only then.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, path)
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, path)


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    if text.isascii():
        return
    found = _LONE_SURROGATE.search(text)
    if found:
        raise ApiError(
            400, "InvalidRequestBody",
            f"The request body holds an unpaired surrogate escape (\\u{ord(found.group()):04x}), "
            "which is not a Unicode character.", target=_json_path(path) or None)


def _json_path(path: tuple[str | int, ...]) -> str:
    """``jobData.patients[0].id``: the form the models use in their error targets."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _too_deep() -> ApiError:
    return _invalid(f"The request body is nested deeper than {MAX_DEPTH} levels.")


def _invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidRequestBody", message)
