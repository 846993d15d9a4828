"""Where results and alerts go: destinations, routes, and the messages a report produces.

Configuration (gateway.toml; every section optional, no routes = nothing is sent)::

    [outbound]                      how messages are written (mappings.outbound.OutboundFormat)
    sending_application = "RI-GATEWAY"
    application_ack_destination = "ris"   # enhanced-mode application ACKs go here

    [destinations.pager]            one MLLP peer
    endpoint = "tcp:host=127.0.0.1:port=2576"   # Twisted client endpoint; TLS: tls:host=H:port=P
    receiving_application = "PAGER"
    ack_timeout = 30.0 ...

    [routes.critical-to-pager]      a rule; every matching route sends
    type = "alerts"                 # "results" (full result ORU) or "alerts"
    destinations = ["pager"]
    alert_on = ["critical"]         # alerts only; see gateway.alerts
    kinds = [...], critical = true, modalities = [...], sending_facilities = [...],
    sending_applications = [...], result_statuses = [...]   # match conditions, all optional

A route matches a report when every condition it gives holds. When several routes of the
same type target one destination, the destination gets that message once, an alert with
the alerting inferences of all of them.

Errors: configuration problems raise ``gateway.errors.ConfigError`` naming the key.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappings.ack import encode_message
from mappings.outbound import (
    DEFAULT_IDENTIFIERS, Addressing, OutboundConfigError, OutboundFormat, Report, build_alert_oru,
    build_result_oru,
)
from ri_engine.models import Inference, InferenceResult

from .alerts import AlertConfigError, AlertPolicy, communication_of, paged_keys
from .config import register_cross_check, register_section
from .errors import ConfigError

__all__ = [
    "Destination", "OutboundConfig", "PlannedMessage", "Route", "Router", "new_control_id",
    "outbound_config", "parse_destinations", "parse_outbound", "parse_routes",
]

RESULTS, ALERTS, APPLICATION_ACK = "results", "alerts", "application_ack"
ROUTE_TYPES = (RESULTS, ALERTS)


@dataclass(frozen=True)
class Destination:
    """One downstream MLLP peer and how deliveries to it are retried."""

    name: str
    endpoint: str
    addressing: Addressing = Addressing()
    ack_timeout: float = 30.0        # seconds to wait for the ACK before closing and retrying
    max_attempts: int = 10           # attempts before a message is dead-lettered
    backoff_initial: float = 1.0     # seconds before the first retry
    backoff_max: float = 300.0       # longest wait between attempts
    backoff_multiplier: float = 2.0
    jitter: float = 0.2              # +/- fraction of randomness applied to every wait
    lenient_end: bool = False        # accept an ACK frame that ends with FS alone (no CR)


@dataclass(frozen=True)
class Route:
    name: str
    type: str
    destinations: tuple[str, ...]
    kinds: frozenset[str] | None = None
    critical: bool | None = None
    modalities: frozenset[str] | None = None
    sending_applications: frozenset[str] | None = None
    sending_facilities: frozenset[str] | None = None
    result_statuses: frozenset[str] | None = None
    alert: AlertPolicy = AlertPolicy()
    send_empty: bool = True
    # Alerts only: where an alert goes when it cannot reach its destination (see
    # gateway.escalation): when it is dead-lettered, or still undelivered after
    # escalate_after seconds (None: only when dead-lettered).
    escalate_to: tuple[str, ...] = ()
    escalate_after: float | None = None

    def matches(self, inferences: Sequence[Inference], *, modality: str | None,
                sending_application: str, sending_facility: str, result_status: str | None) -> bool:
        kinds = {inf.kind for inf in inferences}
        if self.kinds is not None and not kinds & self.kinds:
            return False
        if self.critical is not None and ("criticalResult" in kinds) != self.critical:
            return False
        if self.modalities is not None and (modality or "").upper() not in self.modalities:
            return False
        if self.sending_applications is not None and sending_application not in self.sending_applications:
            return False
        if self.sending_facilities is not None and sending_facility not in self.sending_facilities:
            return False
        if self.result_statuses is not None and (result_status or "").upper() not in self.result_statuses:
            return False
        return True


@dataclass(frozen=True)
class OutboundConfig:
    format: OutboundFormat = OutboundFormat()
    destinations: Mapping[str, Destination] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    application_ack_destination: str | None = None


@dataclass(frozen=True)
class PlannedMessage:
    """One message to put in the outbox."""

    destination: str
    route: str
    purpose: str          # results | alerts | application_ack
    control_id: str       # MSH-10 of the outbound message
    payload: bytes
    # The study: its accession and digests of the patient's identifiers (set by the outbox
    # hook, which reads them from the message), which tell the versions of a report apart
    # (gateway.superseded_results); alerts only, what the alert pages
    # (gateway.alerts.paged_keys), for one page per result per study (gateway.repeat_alerts).
    accession: str | None = None
    pages: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()


def new_control_id() -> str:
    # 20 characters: the MSH-10 length limit of HL7 v2.5.
    return "RI" + uuid.uuid4().hex[:18].upper()


def first_component(value: Any) -> str:
    return str(value or "").split("^")[0]


class Router:
    """Turns an analysed report into the outbound messages its matching routes call for."""

    def __init__(self, config: OutboundConfig, *, control_ids: Callable[[], str] = new_control_id) -> None:
        self.config = config
        self._control_ids = control_ids

    def new_control_id(self) -> str:
        return self._control_ids()

    def plan(self, *, inbound_text: str, header: Any, report: Report,
             result: InferenceResult | Sequence[Inference], now: dt.datetime) -> list[PlannedMessage]:
        """Messages for one analysed OBR group (``header`` is the inbound MessageHeader)."""
        inferences = _inferences(result)
        # (destination, type) -> the first matching route's name (of those with escalate_to,
        # if any) and the chosen inferences
        wanted: dict[tuple[str, str], tuple[str, list[Inference]]] = {}
        escalates = {route.name: bool(route.escalate_to) for route in self.config.routes}
        for route in self.config.routes:
            if not route.matches(
                    inferences, modality=getattr(report, "modality_hint", None),
                    sending_application=first_component(getattr(header, "sending_application", "")),
                    sending_facility=first_component(getattr(header, "sending_facility", "")),
                    result_status=report.result_status):
                continue
            selected = route.alert.alerting(inferences) if route.type == ALERTS else inferences
            if route.type == ALERTS and not selected:
                continue
            if route.type == RESULTS and not selected and not route.send_empty:
                continue
            for name in route.destinations:
                named, first = wanted.setdefault((name, route.type), (route.name, []))
                if route.escalate_to and not escalates.get(named):
                    # The outbox row names one route, and escalation follows it: an alert
                    # several routes page at once escalates as the first of them that does.
                    wanted[(name, route.type)] = (route.name, first)
                # One message per destination and type: it carries what every matching route
                # chose (an alert route on critical results and one on scores, both to the
                # pager, page once with both; the second route's inferences were dropped).
                first.extend(inf for inf in selected if not any(inf is f for f in first))
        planned: list[PlannedMessage] = []
        for (name, kind), (route_name, chosen) in wanted.items():
            selected = [inf for inf in inferences if any(inf is c for c in chosen)]  # engine order
            dest = self.config.destinations[name]
            control_id = self.new_control_id()
            if kind == ALERTS:
                msg = build_alert_oru(inbound_text, report, selected, control_id=control_id,
                                      now=now, addressing=dest.addressing,
                                      communicated=communication_of(inferences),
                                      fmt=self.config.format)
                planned.append(PlannedMessage(
                    name, route_name, kind, control_id, msg.payload(),
                    accession=getattr(report, "accession", None), pages=paged_keys(selected)))
                continue
            msg = build_result_oru(inbound_text, report, selected, control_id=control_id,
                                   now=now, addressing=dest.addressing, fmt=self.config.format)
            planned.append(PlannedMessage(name, route_name, kind, control_id, msg.payload(),
                                          accession=getattr(report, "accession", None)))
        return planned

    def plan_application_ack(self, ack_text: str, control_id: str) -> PlannedMessage | None:
        """An enhanced-mode application ACK (built by mappings.ack) for the return route,
        encoded in ``[outbound] charset`` as the results and alerts are."""
        name = self.config.application_ack_destination
        if name is None:
            return None
        return PlannedMessage(name, "application_ack", APPLICATION_ACK, control_id,
                              encode_message(ack_text, self.config.format.codec))


def wants_application_ack(application_ack_type: str | None, ack_code: str) -> bool:
    """Whether MSH-16 asks for an application ACK with this code (AL, ER, SU; NE/empty: no)."""
    kind = (application_ack_type or "").upper()
    accepted = ack_code.upper() in ("AA", "CA")
    return kind == "AL" or (kind == "ER" and not accepted) or (kind == "SU" and accepted)


def _inferences(result: InferenceResult | Sequence[Inference]) -> list[Inference]:
    if isinstance(result, InferenceResult):
        return [inf for pr in result.patient_results for inf in pr.inferences]
    return list(result)


# --- configuration ----------------------------------------------------------------------

_DEST_NUMBERS = {"ack_timeout": float, "backoff_initial": float, "backoff_max": float,
                 "backoff_multiplier": float, "jitter": float, "max_attempts": int}
# The keys of a [destinations.NAME] and a [routes.NAME] table, with the type an environment
# value is read as (gateway.config: RI_GATEWAY_DESTINATIONS_<NAME>_<KEY>); ``list`` is a
# TOML value (the score rules, a list of tables).
DESTINATION_KEYS: dict[str, Any] = {
    "endpoint": str, "receiving_application": str, "receiving_facility": str,
    "lenient_end": bool, **_DEST_NUMBERS}
_STRINGS = tuple[str, ...]
ROUTE_KEYS: dict[str, Any] = {
    "type": str, "destinations": _STRINGS, "kinds": _STRINGS, "critical": bool,
    "modalities": _STRINGS, "sending_applications": _STRINGS, "sending_facilities": _STRINGS,
    "result_statuses": _STRINGS, "alert_on": _STRINGS, "scores": list, "send_empty": bool,
    "escalate_to": _STRINGS, "escalate_after": float}


def _check_client_endpoint(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a Twisted client endpoint string")
    from twisted.internet.endpoints import clientFromString

    try:
        endpoint = clientFromString(None, value)  # parsed only, never connected
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad value
        raise ConfigError(key, f"invalid Twisted client endpoint {value!r}: "
                               f"{_endpoint_problem(exc)}") from None
    # Twisted reads the port with int() alone: one out of range failed only at connect(),
    # so every message to the destination was retried and dead-lettered, the gateway up.
    # tcp:/ssl: keep the parsed port on the endpoint, tls: on the endpoint it wraps.
    port = getattr(endpoint, "_port", getattr(getattr(endpoint, "_wrappedEndpoint", None), "_port", None))
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise ConfigError(key, f"invalid Twisted client endpoint {value!r}: "
                               f"port {port} is not in 1-65535")
    from twisted.internet.ssl import CertificateOptions

    if isinstance(getattr(endpoint, "_sslContextFactory", None), CertificateOptions):
        # Twisted's ssl: client without hostname= checks no host name (and without
        # caCertsDir no certificate at all): results and alerts, PHI, would go to any peer
        # holding a certificate from a trusted CA. tls: checks the host name by default.
        raise ConfigError(key, f"{value!r} would not verify the peer's host name: use "
                               "tls:host=H:port=P (trustRoots=DIR for a private CA), or add "
                               "hostname=H to the ssl: endpoint")
    return value


def _endpoint_problem(exc: BaseException) -> str:
    """What is wrong with an endpoint string, from the exception Twisted raised."""
    from twisted.python.filepath import UnlistableError

    if isinstance(exc, UnlistableError):
        # tls: lists trustRoots=DIR; the error it raises has no text of its own, only the
        # OSError behind it (a directory that is missing, a file, unreadable).
        cause = exc.originalException
        return f"trustRoots {getattr(cause, 'filename', '')}: {getattr(cause, 'strerror', cause)}"
    return str(exc) or type(exc).__name__


def parse_destinations(table: Mapping[str, Any]) -> dict[str, Destination]:
    out: dict[str, Destination] = {}
    for name, spec in table.items():
        where = f"destinations.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(where, "must be a table ([destinations.NAME])")
        for key in spec:
            if key not in DESTINATION_KEYS:
                raise ConfigError(f"{where}.{key}",
                                  f"unknown key (known: {', '.join(sorted(DESTINATION_KEYS))})")
        if "endpoint" not in spec:
            raise ConfigError(f"{where}.endpoint", "is required")
        kwargs: dict[str, Any] = {"endpoint": _check_client_endpoint(f"{where}.endpoint", spec["endpoint"])}
        for key, tp in _DEST_NUMBERS.items():
            if key not in spec:
                continue
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and not isinstance(value, int)):
                raise ConfigError(f"{where}.{key}", f"expected {'an integer' if tp is int else 'a number'}, got {value!r}")
            if not math.isfinite(value):  # TOML reads nan and inf; nan passes the checks below
                raise ConfigError(f"{where}.{key}", f"must be a finite number, got {value!r}")
            if value < 0 or (key != "jitter" and value == 0):
                raise ConfigError(f"{where}.{key}", f"must be greater than 0, got {value}")
            kwargs[key] = tp(value)
        if kwargs.get("jitter", 0) >= 1:
            raise ConfigError(f"{where}.jitter", "must be below 1")
        if kwargs.get("backoff_multiplier", 2.0) < 1:
            raise ConfigError(f"{where}.backoff_multiplier", "must be at least 1")
        if "lenient_end" in spec:
            if not isinstance(spec["lenient_end"], bool):
                raise ConfigError(f"{where}.lenient_end", f"must be true or false, got {spec['lenient_end']!r}")
            kwargs["lenient_end"] = spec["lenient_end"]
        addressing = {}
        for key in ("receiving_application", "receiving_facility"):
            if key in spec:
                if not isinstance(spec[key], str):
                    raise ConfigError(f"{where}.{key}", "must be a string")
                addressing[key] = spec[key]
        out[name] = Destination(name=name, addressing=Addressing(**addressing), **kwargs)
    return out


def _string_set(key: str, value: Any, upper: bool = False) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "must be a list of strings")
    return frozenset(v.upper() if upper else v for v in value)


def parse_routes(table: Mapping[str, Any]) -> tuple[Route, ...]:
    from ri_engine.models import INFERENCE_TYPES

    routes = []
    for name, spec in table.items():
        where = f"routes.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(where, "must be a table ([routes.NAME])")
        for key in spec:
            if key not in ROUTE_KEYS:
                raise ConfigError(f"{where}.{key}",
                                  f"unknown key (known: {', '.join(sorted(ROUTE_KEYS))})")
        kind = spec.get("type", RESULTS)
        if kind not in ROUTE_TYPES:
            raise ConfigError(f"{where}.type", f"must be one of {', '.join(ROUTE_TYPES)}; got {kind!r}")
        if "destinations" not in spec:
            raise ConfigError(f"{where}.destinations", "is required")
        dests = spec["destinations"]
        if not isinstance(dests, list) or not dests or not all(isinstance(d, str) for d in dests):
            raise ConfigError(f"{where}.destinations", "must be a non-empty list of destination names")
        kwargs: dict[str, Any] = {}
        if "kinds" in spec:
            kinds = _string_set(f"{where}.kinds", spec["kinds"])
            unknown = kinds - set(INFERENCE_TYPES)
            if unknown:
                raise ConfigError(f"{where}.kinds", f"unknown inference kind(s): {', '.join(sorted(unknown))}")
            kwargs["kinds"] = kinds
        for key in ("critical", "send_empty"):
            if key in spec:
                if not isinstance(spec[key], bool):
                    raise ConfigError(f"{where}.{key}", "must be true or false")
                kwargs[key] = spec[key]
        if "modalities" in spec:
            kwargs["modalities"] = _string_set(f"{where}.modalities", spec["modalities"], upper=True)
        if "result_statuses" in spec:
            kwargs["result_statuses"] = _string_set(f"{where}.result_statuses", spec["result_statuses"], upper=True)
        for key in ("sending_applications", "sending_facilities"):
            if key in spec:
                kwargs[key] = _string_set(f"{where}.{key}", spec[key])
        if kind == RESULTS and ("alert_on" in spec or "scores" in spec):
            raise ConfigError(f"{where}.alert_on", 'only applies to routes of type "alerts"')
        try:
            kwargs["alert"] = AlertPolicy.from_dict(spec, where)
        except AlertConfigError as exc:
            raise ConfigError(exc.key, exc.message) from None
        kwargs.update(_escalation(where, kind, spec, dests))
        routes.append(Route(name=name, type=kind, destinations=tuple(dests), **kwargs))
    return tuple(routes)


def _escalation(where: str, kind: str, spec: Mapping[str, Any], dests: list[str]
                ) -> dict[str, Any]:
    """``escalate_to`` and ``escalate_after`` of an alert route, checked."""
    found: dict[str, Any] = {}
    if "escalate_to" in spec:
        if kind != ALERTS:
            raise ConfigError(f"{where}.escalate_to", 'only applies to routes of type "alerts"')
        to = spec["escalate_to"]
        if not isinstance(to, list) or not to or not all(isinstance(d, str) and d for d in to):
            raise ConfigError(f"{where}.escalate_to", "must be a non-empty list of destination names")
        if set(to) & set(dests):
            # The alert would go back to the destination it could not reach, as a new message.
            raise ConfigError(f"{where}.escalate_to",
                              "must not name the route's own destinations: "
                              + ", ".join(sorted(set(to) & set(dests))))
        found["escalate_to"] = tuple(dict.fromkeys(to))
    if "escalate_after" in spec:
        after = spec["escalate_after"]
        if "escalate_to" not in spec:
            raise ConfigError(f"{where}.escalate_after", "needs escalate_to")
        if (isinstance(after, bool) or not isinstance(after, (int, float))
                or not math.isfinite(after) or after <= 0):
            raise ConfigError(f"{where}.escalate_after", "must be a number of seconds above 0")
        found["escalate_after"] = float(after)
    return found


# The [outbound] keys the environment can set, and their types; [outbound.identifiers] is
# a table of its own, set as RI_GATEWAY_OUTBOUND_IDENTIFIERS_<KEY>.
OUTBOUND_KEYS: dict[str, Any] = {
    "sending_application": str, "sending_facility": str, "version": str, "charset": str,
    "local_system": str, "evidence": bool, "application_ack_destination": str,
    "identifiers": {key: str for key in DEFAULT_IDENTIFIERS}}


def parse_outbound(table: Mapping[str, Any]) -> tuple[OutboundFormat, str | None]:
    data = dict(table)
    ack_dest = data.pop("application_ack_destination", None)
    if ack_dest is not None and not isinstance(ack_dest, str):
        raise ConfigError("outbound.application_ack_destination", "must be a destination name")
    try:
        return OutboundFormat.from_dict(data), ack_dest
    except OutboundConfigError as exc:
        raise ConfigError(exc.key, exc.message) from None


def outbound_config(sections: Mapping[str, Any]) -> OutboundConfig:
    """Assemble and cross-check the parsed sections (``settings.sections``)."""
    destinations = sections.get("destinations") or {}
    routes = sections.get("routes") or ()
    fmt, ack_dest = sections.get("outbound") or (OutboundFormat(), None)
    for route in routes:
        for key in ("destinations", "escalate_to"):
            for name in getattr(route, key):
                if name not in destinations:
                    raise ConfigError(f"routes.{route.name}.{key}",
                                      f"names unknown destination {name!r}")
    if ack_dest is not None and ack_dest not in destinations:
        raise ConfigError("outbound.application_ack_destination",
                          f"names unknown destination {ack_dest!r}")
    return OutboundConfig(format=fmt, destinations=destinations, routes=routes,
                          application_ack_destination=ack_dest)


def parse_outbound_config(data: Mapping[str, Any]) -> OutboundConfig:
    """The outbound configuration from a whole TOML document (tests, tools)."""
    return outbound_config({
        "destinations": parse_destinations(data.get("destinations", {})),
        "routes": parse_routes(data.get("routes", {})),
        "outbound": parse_outbound(data.get("outbound", {})),
    })


register_section("destinations", parse_destinations, table_keys=DESTINATION_KEYS)
register_section("routes", parse_routes, table_keys=ROUTE_KEYS)
register_section("outbound", parse_outbound, keys=OUTBOUND_KEYS)
register_cross_check(outbound_config)
