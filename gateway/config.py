"""Gateway settings: one frozen :class:`Settings` object built by :func:`load_settings`.

Sources, later ones winning:

1. defaults embedded here (``serve`` runs with no file at all);
2. a TOML file (``config/gateway.toml`` documents every key);
3. environment variables ``RI_GATEWAY_<SECTION>_<KEY>`` (``RI_GATEWAY_MLLP_ENDPOINT``),
   and ``RI_GATEWAY_<SECTION>_<NAME>_<KEY>`` for a named table
   (``RI_GATEWAY_DESTINATIONS_PAGER_ENDPOINT`` sets ``[destinations.pager] endpoint``);
   ``RI_GATEWAY_API_KEYS`` is accepted as a short form of ``RI_GATEWAY_HTTP_API_KEYS``;
4. command-line overrides, given as ``{"section.key": value}``.

Every value is checked here, so a bad one fails at start with a :class:`ConfigError`
naming the key.  Unknown sections and keys are errors too (a typo must not be
silently ignored).

Sections owned by other modules (``[routes]``, ``[destinations]``) are registered
with :func:`register_section`; their parsed value is ``settings.section(name)``.
Modules listed in :data:`SECTION_PROVIDERS` are imported before parsing so that
their registrations exist whatever the caller imported first.
"""

from __future__ import annotations

import codecs
import importlib
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .config_origins import ENV_PREFIX, Origins
from .errors import ConfigError

__all__ = [
    "AnalysisSettings", "ConfigError", "HTTPSettings", "LoggingSettings", "MLLPSettings",
    "SECTION_PROVIDERS", "Settings", "StorageSettings", "load_settings", "register_cross_check",
    "register_section",
]


HL7_VERSIONS = (
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1",
    "2.8", "2.8.1", "2.8.2",
)


def _check_endpoint(key: str, value: str) -> None:
    # Parsing the description builds the endpoint object without listening, so a
    # typo ("tpc:2575") or a missing TLS key file is reported at start.
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(None, value)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad value
        raise ConfigError(key, f"invalid Twisted endpoint {value!r}: {exc}") from None
    # Twisted reads the port with int() alone; one out of range would only fail at bind(),
    # after start, without the key. TCP4/TCP6/SSL4ServerEndpoint keep the parsed port here.
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ConfigError(key, f"invalid Twisted endpoint {value!r}: port {port} is not in 0-65535")


def _check_charset(key: str, value: str) -> None:
    # The receiver decodes with mappings.decoding, which also takes HL7 names ("8859/1")
    # and refuses Python codecs that are not character sets for HL7 text ("hex", "idna"):
    # checked by the same function, so a default accepted here is one decoding can use.
    from mappings.decoding import charset_codec

    if charset_codec(value) is not None:
        return
    try:
        codecs.lookup(value)
    except (LookupError, ValueError):
        raise ConfigError(key, f"unknown character set {value!r}") from None
    raise ConfigError(key, f"{value!r} is a Python codec but not a character set HL7 text "
                           "can be written in (ASCII characters must keep their bytes)")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be greater than 0, got {value}")


def _not_negative(key: str, value: float | None) -> None:
    if value is not None and value < 0:
        raise ConfigError(key, f"must not be negative, got {value}")


def _non_empty(key: str, value: tuple[str, ...]) -> None:
    if not value:
        raise ConfigError(key, "must list at least one value")


def _inference_types(key: str, value: tuple[str, ...]) -> None:
    from ri_engine.models import INFERENCE_TYPES

    _known(key, value, INFERENCE_TYPES)


def _measure_types(key: str, value: tuple[str, ...]) -> None:
    from ri_engine.models import QUALITY_MEASURE_TYPES

    _known(key, value, QUALITY_MEASURE_TYPES)


def _known(key: str, value: tuple[str, ...], known: tuple[str, ...]) -> None:
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ConfigError(key, f"unknown value {unknown[0]!r}; one of: {', '.join(known)}")


def _map_before_ack_alias(value: Any) -> Any:
    if isinstance(value, bool):
        return "full" if value else "none"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return "full" if value.strip().lower() == "true" else "none"
    return value


def check(fn: Callable[[str, Any], None]) -> Any:
    """A dataclass field default carrying a validator (applied after type coercion)."""
    return {"check": fn}


@dataclass(frozen=True)
class MLLPSettings:
    endpoint: str = field(default="tcp:2575:interface=127.0.0.1",
                          metadata=check(_check_endpoint))
    max_frame_size: int = field(default=16 * 1024 * 1024, metadata=check(_positive))
    lenient_end: bool = False
    # Seconds without a byte before a connection is closed; 0 disables the timeout.
    idle_timeout: float = field(default=300.0, metadata=check(_not_negative))
    max_connections: int = field(default=100, metadata=check(_positive))
    default_charset: str = field(default="utf-8", metadata=check(_check_charset))
    accepted_message_types: tuple[str, ...] = field(default=("ORU^R01",),
                                                    metadata=check(_non_empty))
    accepted_versions: tuple[str, ...] = field(default=HL7_VERSIONS, metadata=check(_non_empty))
    accepted_processing_ids: tuple[str, ...] = field(default=("P", "D", "T"),
                                                     metadata=check(_non_empty))
    # How much of the ORU is read before the ACK (config/gateway.toml): "check" (content
    # rules answered AE, mapping in the workers), "full" (mapped before the ACK), "none"
    # (MSH only).  true/false, the earlier boolean form, mean "full"/"none".
    map_before_ack: Literal["full", "check", "none"] = field(
        default="check", metadata={"before": _map_before_ack_alias})

    def __post_init__(self) -> None:
        # MLLPSettings(map_before_ack=False) from code gets the same reading as the file.
        object.__setattr__(self, "map_before_ack", _map_before_ack_alias(self.map_before_ack))


def _expand_home(value: Any) -> Any:
    # No shell reads a TOML file or a service's environment: "~/audit.sqlite3" was taken
    # literally, and the gateway made a directory named "~" wherever it was started.
    return os.path.expanduser(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class StorageSettings:
    db: str = field(default="./var/ri-gateway.sqlite3", metadata={"before": _expand_home})
    # Most messages committed in one transaction (group commit while the previous
    # commit is still being written).
    max_batch: int = field(default=256, metadata=check(_positive))
    # SQLite ``synchronous``: FULL survives power loss, NORMAL only a process crash.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


@dataclass(frozen=True)
class AnalysisSettings:
    # 0 means one worker per CPU core.
    workers: int = field(default=0, metadata=check(_not_negative))
    executor: Literal["process", "thread"] = "process"
    # CPU priority of the worker processes: "idle" (SCHED_IDLE, else nice), "low" (nice
    # +10) or "normal" (config/gateway.toml).
    # "low", not "idle": on a saturated host SCHED_IDLE could starve analysis, and with it
    # critical-result alerts; nice +10 still leaves the ACK path first.
    worker_priority: Literal["idle", "low", "normal"] = "low"
    ack_after: Literal["persistence", "analysis"] = "persistence"
    # Analysis waits while messages keep arriving less than quiet_period seconds apart,
    # at most max_wait seconds per message (gateway.pipeline); 0 disables either.
    quiet_period: float = field(default=0.05, metadata=check(_not_negative))
    max_wait: float = field(default=5.0, metadata=check(_not_negative))
    # Reports held in memory waiting for analysis; beyond them routine reports wait in the
    # database only (gateway.overflow), about 8 KB of memory each otherwise; 0: no bound.
    max_backlog: int = field(default=10000, metadata=check(_not_negative))
    # Seconds an analysis may take from its submission to the pool before it is given up
    # (the message recorded failed; process workers killed and replaced); 0: no limit.
    # Reports take milliseconds; the margin covers a worker's start after a restart.
    timeout: float = field(default=120.0, metadata=check(_not_negative))
    # Seconds a stop waits, once the rest has stopped, for analyses still running (threads
    # that cannot be stopped) and worker processes to end before the process ends without
    # them (gateway.process_exit); 0: no wait.
    stop_grace: float = field(default=5.0, metadata=check(_not_negative))
    # What the engine is asked for on every report the gateway receives (the REST API takes
    # these from each request instead).  Empty inference_types: every kind.
    inference_types: tuple[str, ...] = field(default=(), metadata=check(_inference_types))
    quality_measures: tuple[str, ...] = field(default=(), metadata=check(_measure_types))
    include_evidence: bool = True


@dataclass(frozen=True)
class HTTPSettings:
    enabled: bool = True
    endpoint: str = field(default="tcp:8080:interface=127.0.0.1", metadata=check(_check_endpoint))
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = field(default=1024 * 1024, metadata=check(_positive))
    # Connections open at once; more are closed on arrival (they would share the process's
    # file descriptors with the MLLP listener).
    max_connections: int = field(default=100, metadata=check(_positive))
    # Jobs accepted but not finished at once; a PUT beyond them gets 429 (REST jobs share
    # the analysis pool with the reports arriving over MLLP).
    max_unfinished_jobs: int = field(default=1000, metadata=check(_positive))


@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: JSON when stdout is not a terminal, readable console lines when it is.
    format: Literal["auto", "json", "console"] = "auto"


BUILTIN_SECTIONS: dict[str, type] = {
    "mllp": MLLPSettings,
    "storage": StorageSettings,
    "analysis": AnalysisSettings,
    "http": HTTPSettings,
    "logging": LoggingSettings,
}

SectionParser = Callable[[Mapping[str, Any]], Any]
_REGISTERED: dict[str, SectionParser] = {}
# Sections made of named tables ([destinations.NAME]): the keys of each table and the type
# an environment value is read as.
_TABLE_KEYS: dict[str, Mapping[str, Any]] = {}
# The same for the keys of a registered section that is one table ([outbound]).
_SECTION_KEYS: dict[str, Mapping[str, Any]] = {}

# Modules that register sections of their own, imported (when present) before parsing.
SECTION_PROVIDERS: tuple[str, ...] = ("gateway.routing", "gateway.outbox")


def register_section(name: str, parser: SectionParser,
                     table_keys: Mapping[str, Any] | None = None,
                     keys: Mapping[str, Any] | None = None) -> None:
    """Register a top-level TOML table owned by another module.

    ``parser(table)`` receives the merged table (file, then environment overrides as
    strings parsed as TOML values) and returns the value kept in ``settings.section(name)``;
    it raises ``ConfigError("<name>.<key>", ...)`` for a bad value.  It is also called
    with ``{}`` when the file has no such table, so it decides the defaults.

    ``table_keys`` declares a section of named tables (``[name.NAME]``): the keys each
    table takes and their types (``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``
    for a list, anything else for a TOML value).  The environment then sets
    ``RI_GATEWAY_<SECTION>_<NAME>_<KEY>`` (see :func:`_set_in_named_table`).

    ``keys`` declares the types of a one-table section's keys in the same way, so that
    ``RI_GATEWAY_<SECTION>_<KEY>`` is read as its key's type.  An undeclared key's value is
    read as a TOML value when it parses as one: ``RI_GATEWAY_OUTBOUND_VERSION=2.6`` would
    be the number 2.6, which a key holding text refuses.
    """
    if name in BUILTIN_SECTIONS or name == "mappings":
        raise ValueError(f"section [{name}] is built in")
    _REGISTERED[name] = parser
    if table_keys is not None:
        _TABLE_KEYS[name] = table_keys
    if keys is not None:
        _SECTION_KEYS[name] = keys


# Checks across the parsed registered sections (``settings.sections``), run by
# load_settings(cross_checks=True): serve runs them before it creates anything.
_CROSS_CHECKS: list[Callable[[Mapping[str, Any]], Any]] = []


def register_cross_check(check: Callable[[Mapping[str, Any]], Any]) -> None:
    """Register ``check(sections)``, which raises ConfigError for settings that are valid
    one by one but not together."""
    if check not in _CROSS_CHECKS:
        _CROSS_CHECKS.append(check)


@dataclass(frozen=True)
class Settings:
    mllp: MLLPSettings = field(default_factory=MLLPSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    http: HTTPSettings = field(default_factory=HTTPSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # The [mappings] table as written, and what mappings.config made of it
    # (None = the mapping defaults).
    mappings: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    mapping_config: Any = None
    sections: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    source: str | None = None
    # Where each setting was given (gateway.config_origins), for errors found after loading
    # (a listener that cannot listen); None when built without load_settings.
    origins: Origins | None = field(default=None, compare=False, repr=False)

    def section(self, name: str) -> Any:
        """The parsed value of a registered section (KeyError when none is registered)."""
        return self.sections[name]


# --- coercion ---------------------------------------------------------------------------

def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or fail naming the key."""
    origin = typing.get_origin(tp)
    from_env = isinstance(value, str)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if from_env and value.strip().lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env:
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if tp is float or tp == (float | None):
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif from_env:
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None:
            raise ConfigError(key, f"expected a number, got {value!r}")
        # TOML and float() both read nan and inf. NaN passes every comparison a validator
        # makes (nan <= 0 is false) and no setting has a use for an infinite one: 0 is how
        # a timeout or a wait is turned off.
        if not math.isfinite(number):
            raise ConfigError(key, f"must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, str):
            for option in allowed:
                if value.strip().lower() == option.lower():
                    return option
        raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            # Environment form: comma-separated.
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(key, f"expected a list of strings, got {value!r}")
    raise ConfigError(key, f"unsupported value {value!r}")  # pragma: no cover - schema bug


def _build_section(name: str, cls: type, table: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"unknown key (known: {', '.join(known)})")
    kwargs = {}
    for key, value in table.items():
        dotted = f"{name}.{key}"
        before = known[key].metadata.get("before")  # an accepted older spelling
        coerced = _coerce(dotted, hints[key], before(value) if before else value)
        validator = known[key].metadata.get("check")
        if validator is not None:
            validator(dotted, coerced)
        kwargs[key] = coerced
    return cls(**kwargs)


def _env_value(raw: str) -> Any:
    """An environment value for a free-form section: a TOML value if it parses, else text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _typed_env_value(key: str, tp: Any, raw: str) -> Any:
    """An environment value for a key of a registered section whose type is ``tp`` (None:
    not declared); a list as TOML gives it, which is what the section parsers take."""
    if tp in (str, bool, int, float) or typing.get_origin(tp) is tuple:
        value = _coerce(key, tp, raw)
        return list(value) if isinstance(value, tuple) else value
    return _env_value(raw)


def _mapping_key_types() -> dict[str, Any]:
    """The type each ``[mappings]`` key's environment value is read as, from the mapping's
    own defaults: lists comma-separated and text kept as text, as in the other sections
    (``RI_GATEWAY_MAPPINGS_PATIENT_ID_AUTHORITY=1234`` is the text "1234").  Tables
    (``sex_map``) are not declared: their value is read as a TOML inline table."""
    from mappings.config import MappingConfig

    defaults = MappingConfig()
    types_: dict[str, Any] = {}
    for f in fields(MappingConfig):
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            types_[f.name] = bool
        elif isinstance(default, tuple):
            types_[f.name] = tuple[str, ...]
        elif isinstance(default, str) or default is None:
            types_[f.name] = str
    return types_


def _env_overrides(environ: Mapping[str, str],
                   section_names: list[str]) -> list[tuple[str, str, str, str]]:
    """``(variable, section, key, value)`` for each ``RI_GATEWAY_*`` variable; the key is
    what follows the section's name, lower-cased."""
    out: list[tuple[str, str, str, str]] = []
    # Longest names first so a section whose name has an underscore wins over a prefix.
    names = sorted(section_names, key=len, reverse=True)
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX):].lower()
        if rest == "api_keys":
            out.append((var, "http", "api_keys", raw))
            continue
        if rest == "config":
            continue  # the config file path, read by the CLI
        for name in names:
            if rest.startswith(name + "_"):
                out.append((var, name, rest[len(name) + 1:], raw))
                break
        else:
            raise ConfigError(var, f"environment variable names no known section "
                                   f"({', '.join(sorted(section_names))})")
    return out


def _set_in_named_table(var: str, section_name: str, section: dict[str, Any], rest: str,
                        raw: str, origins: Origins) -> None:
    """Set ``RI_GATEWAY_<SECTION>_<NAME>_<KEY>`` (``rest`` is ``<name>_<key>``) in
    ``section``, the named tables read from the file.

    Names may hold underscores and so may keys: the key is the longest known one that
    ends ``rest``.  Variable names are case-insensitive, so a name is lower case unless
    the file already has a table of that name in another case, or with "-" where the
    variable has "_".
    """
    keys = _TABLE_KEYS[section_name]
    for key in sorted(keys, key=len, reverse=True):
        if rest.endswith("_" + key) and len(rest) > len(key) + 1:
            name = rest[:-len(key) - 1]
            break
    else:
        raise ConfigError(var, f"names no key of a [{section_name}.NAME] table "
                               f"({ENV_PREFIX}{section_name.upper()}_<NAME>_<KEY>, KEY one of: "
                               f"{', '.join(sorted(keys))})")
    # A variable's name cannot hold "-": its "_" also stands for the "-" of a table the
    # file names so ([routes.critical-to-pager]); an exact name is preferred.
    name = (next((n for n in section if n.lower() == name), None)
            or next((n for n in section if n.lower().replace("-", "_") == name), name))
    origins.set_table(f"{section_name}.{name}", var)
    origins.set(f"{section_name}.{name}.{key}", var)
    table = section.setdefault(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{section_name}.{name}", f"must be a table ([{section_name}.NAME])")
    table[key] = _typed_env_value(f"{section_name}.{name}.{key}", keys[key], raw)


def _set_in_sub_table(var: str, section_name: str, section: dict[str, Any], sub: str,
                      keys: Mapping[str, Any], rest: str, raw: str, origins: Origins) -> None:
    """Set ``RI_GATEWAY_<SECTION>_<SUB>_<KEY>`` in the table ``[section.sub]``
    (``RI_GATEWAY_OUTBOUND_IDENTIFIERS_CRITICALRESULT``).  Variable names are
    case-insensitive, so the key is the one of ``keys`` that matches whatever its case."""
    key = next((k for k in keys if k.lower() == rest), None)
    if key is None:
        raise ConfigError(var, f"names no key of [{section_name}.{sub}] "
                               f"(KEY one of: {', '.join(sorted(keys))})")
    origins.set_table(f"{section_name}.{sub}", var)
    origins.set(f"{section_name}.{sub}.{key}", var)
    table = section.setdefault(sub, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{section_name}.{sub}", "must be a table")
    table[key] = _typed_env_value(f"{section_name}.{sub}.{key}", keys[key], raw)


def _import_providers() -> None:
    for module in SECTION_PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but is broken: say so
                raise


def _parse_mappings(table: Mapping[str, Any]) -> Any:
    if not table:
        return None
    from mappings.config import MappingConfig, MappingConfigError

    try:
        return MappingConfig.from_dict(dict(table))
    except MappingConfigError as exc:
        key = getattr(exc, "key", "")
        message = getattr(exc, "message", str(exc))
        # MappingConfigError keys are already dotted ("mappings.validation").
        raise ConfigError(key or "mappings", message) from None


def load_settings(path: str | None = None, overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None, cross_checks: bool = False
                  ) -> Settings:
    """Build the settings from defaults, ``path`` (TOML), ``environ`` and ``overrides``.

    ``overrides`` maps dotted keys to values (``{"mllp.endpoint": "tcp:2600"}``); None
    values are ignored so CLI options left unset do not override anything.
    ``cross_checks`` also runs the checks registered with :func:`register_cross_check`
    (a route naming a destination that does not exist).  A ConfigError names where the
    bad value was given: the file and its line, or the environment variable.
    """
    _import_providers()
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError("", f"cannot read configuration file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path} is not valid TOML: {exc}") from None

    origins = Origins(path)
    origins.add_file(data)
    try:
        settings = _build_settings(path, data, environ, overrides, origins)
        if cross_checks:
            for check_sections in _CROSS_CHECKS:
                check_sections(settings.sections)
    except ConfigError as exc:
        raise origins.located(exc) from None
    return settings


def _build_settings(path: str | None, data: Mapping[str, Any], environ: Mapping[str, str],
                    overrides: Mapping[str, Any] | None, origins: Origins) -> Settings:
    all_sections = [*BUILTIN_SECTIONS, "mappings", *_REGISTERED]
    tables: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if name not in all_sections:
            raise ConfigError(name, f"unknown section [{name}] (known: {', '.join(all_sections)})")
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table")
        tables[name] = dict(table)

    for var, name, key, raw in _env_overrides(environ, all_sections):
        section = tables.setdefault(name, {})
        if name in _TABLE_KEYS:
            _set_in_named_table(var, name, section, key, raw, origins)
            continue
        keys = _mapping_key_types() if name == "mappings" else _SECTION_KEYS.get(name, {})
        sub = next((k for k, tp in keys.items()
                    if isinstance(tp, Mapping) and key.startswith(k + "_")), None)
        if sub is not None:
            _set_in_sub_table(var, name, section, sub, keys[sub], key[len(sub) + 1:], raw,
                              origins)
            continue
        origins.set(f"{name}.{key}", var)
        if name in BUILTIN_SECTIONS:
            section[key] = raw
        else:
            section[key] = _typed_env_value(f"{name}.{key}", keys.get(key), raw)

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        name, _, key = dotted.partition(".")
        if name not in all_sections or not key:
            raise ConfigError(dotted, "unknown setting")
        origins.set(dotted, "the command line")
        tables.setdefault(name, {})[key] = value

    built = {name: _build_section(name, cls, tables.get(name, {}))
             for name, cls in BUILTIN_SECTIONS.items()}
    mappings_table = tables.get("mappings", {})
    registered = {name: parser(tables.get(name, {})) for name, parser in _REGISTERED.items()}
    settings = Settings(
        **built,
        mappings=types.MappingProxyType(mappings_table),
        mapping_config=_parse_mappings(mappings_table),
        sections=types.MappingProxyType(registered),
        source=path,
        origins=origins,
    )
    # Port 0 asks the system for a free port, so two listeners on "tcp:0" do not collide.
    if (settings.http.enabled and settings.http.endpoint == settings.mllp.endpoint
            and not re.match(r"^(tcp|ssl):0(:|$)", settings.http.endpoint)):
        raise ConfigError("http.endpoint", "must differ from mllp.endpoint")
    return settings

