"""JSON (de)serialisation shared by every RI model.

The RI wire format is camelCase JSON that omits absent fields. Models are plain
dataclasses with snake_case attributes; this module converts between the two by
reading the dataclass type hints, so a model class is just its field list.

Per-field metadata:
- ``json``: the wire name when it is not the camelCase of the attribute (``class_``).
- ``aliases``: other wire names accepted on input (RI accepts ``QualityMeasureOptions``
  as well as ``qualityMeasureOptions``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T", bound="Model")


class ModelError(ValueError):
    """A JSON value does not fit the model it is read into (path says where)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def camel(name: str) -> str:
    name = name.rstrip("_")
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def wire_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("json") or camel(f.name)


class Model:
    """Mixin: ``to_json()`` and ``from_json()`` for a dataclass."""

    # No instance dict of its own, so that subclasses may be slotted (the FHIR values are:
    # a report's inferences hold about a thousand of them).
    __slots__ = ()

    # Subclasses that are members of a tagged union set this (``kind`` values).
    kind_value: ClassVar[str | None] = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                continue
            out[wire_name(f)] = _dump(value)
        return out

    @classmethod
    def from_json(cls: type[T], data: Any, path: str = "") -> T:
        if not isinstance(data, dict):
            raise ModelError(path, f"expected an object, got {json_type(data)}")
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            names = (wire_name(f), *f.metadata.get("aliases", ()))
            for name in names:
                if name in data:
                    sub = f"{path}.{name}" if path else name
                    kwargs[f.name] = _load(hints[f.name], data[name], sub)
                    break
            else:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ModelError(path, f"missing required field '{wire_name(f)}'")
        return cls(**kwargs)


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_json()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _load(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    if _is_union(tp):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        models = [o for o in options if isinstance(o, type) and issubclass(o, Model)]
        if len(models) > 1:
            return _load_tagged(models, value, path)
        errors = []
        for option in options:
            try:
                return _load(option, value, path)
            except ModelError as exc:
                errors.append(exc)
        raise errors[0]
    origin = get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise ModelError(path, "expected an array")
        (item,) = get_args(tp)
        return [_load(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ModelError(path, "expected an object")
        return dict(value)
    if origin is typing.Literal:
        if value not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            raise ModelError(path, f"{shown(value)} is not one of {allowed}")
        return value
    if isinstance(tp, type) and issubclass(tp, Model):
        if tp.kind_value is None and _subclasses_with_kind(tp):
            return _load_tagged(_subclasses_with_kind(tp), value, path)
        return tp.from_json(value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        # RI's own documentation sends "valueBoolean": "true"; accept the string forms.
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ModelError(path, "expected a boolean")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ModelError(path, "expected a number")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ModelError(path, "expected an integer")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ModelError(path, "expected a string")
    return value


_SHOWN_CHARACTERS = 40


def json_type(value: Any) -> str:
    """What a JSON value is, in JSON's words (not Python's: null, not NoneType)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def shown(value: Any) -> str:
    """A wrong value as an error message quotes it: short, whatever was sent.

    The message goes back to the client and often into its logs, so a value that is
    long (a report pasted into the wrong field) or structured is described, not copied.
    """
    if isinstance(value, str):
        if len(value) <= _SHOWN_CHARACTERS:
            return repr(value)
        return f"{value[:_SHOWN_CHARACTERS]!r}... ({len(value)} characters)"
    if isinstance(value, (list, dict)):
        return json_type(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARACTERS else json_type(value)


def _subclasses_with_kind(base: type) -> list[type[Model]]:
    found: list[type[Model]] = []
    stack = list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        if getattr(cls, "kind_value", None):
            found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def _load_tagged(options: list[type[Model]], value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise ModelError(path, "expected an object")
    kind = value.get("kind")
    for option in options:
        if option.kind_value == kind:
            return option.from_json(value, path)
    known = ", ".join(sorted(str(o.kind_value) for o in options))
    raise ModelError(path, f"unknown kind {shown(kind)} (known: {known})")


def field(*, json: str | None = None, aliases: tuple[str, ...] = (), default: Any = None,
          factory: Any = None) -> Any:
    """A dataclass field with wire-name metadata; optional fields default to None."""
    metadata: dict[str, Any] = {}
    if json:
        metadata["json"] = json
    if aliases:
        metadata["aliases"] = aliases
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def required(*, json: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    metadata: dict[str, Any] = {}
    if json:
        metadata["json"] = json
    if aliases:
        metadata["aliases"] = aliases
    return dataclasses.field(metadata=metadata)
