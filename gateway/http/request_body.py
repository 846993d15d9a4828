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
The surrogate check is :mod:`gateway.json_text`'s, so ``ri-gateway analyze`` refuses the
same requests.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from ..json_text import find_lone_surrogate
from .errors import ApiError

__all__ = ["MAX_DEPTH", "read_json"]

# Objects and arrays inside one another.  The deepest RI request (an ordered procedure's
# coding extension, or a FHIR resource in clinicalInfo) is about a dozen levels; the limit
# leaves ample room for that while keeping every later recursive walk of the value far
# from Python's recursion limit.
MAX_DEPTH = 64

_CONTAINERS = (dict, list)  # what json.loads builds objects and arrays as


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
    surrogate = find_lone_surrogate(text, value)
    if surrogate is not None:
        raise ApiError(400, "InvalidRequestBody", f"The request body {surrogate.message}.",
                       target=surrogate.path or None)
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


def _too_deep() -> ApiError:
    return _invalid(f"The request body is nested deeper than {MAX_DEPTH} levels.")


def _invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidRequestBody", message)
