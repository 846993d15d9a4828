"""Which messages this receiver accepts: message type/event, processing id, version.

``check_acceptable`` (or :class:`AcceptancePolicy`, the same lists parsed once for a
receiver) raises ``UnsupportedMessage`` (answered with AR) with the table 0357 code of
the first check that fails, in this order: 200 message type (MSH-9.1), 201 event
(MSH-9.2), 202 processing id (MSH-11.1), 203 version (MSH-12.1). These checks read MSH
only, so an AR never needs the body parsed.

Decisions:

* An accepted entry is ``TYPE^EVENT`` or a bare ``TYPE`` that accepts every event.
* A message type sent without its trigger event (``ORU`` alone, as some v2.1-2.3 senders
  do) is read with the default event of ``default_events`` (``ORU`` -> ``R01``, the only
  unsolicited result event of those versions). A type with no default event and no
  trigger fails with 201.
* Comparisons ignore case; versions compare as sent (``2.5.1`` is not ``2.5``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import UnsupportedMessage
from .header import MessageHeader

SUPPORTED_VERSIONS = (
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2",
)
DEFAULT_EVENTS: Mapping[str, str] = {"ORU": "R01"}


def effective_event(header: MessageHeader, default_events: Mapping[str, str] = DEFAULT_EVENTS) -> str:
    """MSH-9.2, or the default event for a message type sent without one."""
    return header.trigger_event or default_events.get(header.message_type, "")


def check_acceptable(
    header: MessageHeader,
    *,
    message_types: Iterable[str] = ("ORU^R01",),
    versions: Iterable[str] = SUPPORTED_VERSIONS,
    processing_ids: Iterable[str] = ("P", "D", "T"),
    default_events: Mapping[str, str] = DEFAULT_EVENTS,
) -> None:
    """Raise UnsupportedMessage unless the header is one this receiver accepts."""
    AcceptancePolicy.from_lists(message_types=message_types, versions=versions,
                                processing_ids=processing_ids,
                                default_events=default_events).check(header)


@dataclass(frozen=True)
class AcceptancePolicy:
    """The accepted lists, parsed once: the receiver checks every message against it."""

    # message type -> accepted events (None: every event of this type)
    types: Mapping[str, frozenset[str] | None]
    versions: frozenset[str]
    processing_ids: frozenset[str]
    default_events: Mapping[str, str] = field(default_factory=lambda: DEFAULT_EVENTS)

    @classmethod
    def from_lists(
        cls,
        *,
        message_types: Iterable[str] = ("ORU^R01",),
        versions: Iterable[str] = SUPPORTED_VERSIONS,
        processing_ids: Iterable[str] = ("P", "D", "T"),
        default_events: Mapping[str, str] = DEFAULT_EVENTS,
    ) -> AcceptancePolicy:
        accepted: dict[str, set[str] | None] = {}
        for entry in message_types:
            mtype, _, event = entry.strip().upper().partition("^")
            if not event:
                accepted[mtype] = None  # every event of this type
                continue
            events = accepted.setdefault(mtype, set())
            if events is not None:
                events.add(event)
        return cls(
            types={t: None if e is None else frozenset(e) for t, e in accepted.items()},
            versions=frozenset(v.strip() for v in versions),
            processing_ids=frozenset(p.strip().upper() for p in processing_ids),
            default_events=default_events,
        )

    def check(self, header: MessageHeader) -> None:
        """Raise UnsupportedMessage unless ``header`` is accepted (module docstring)."""
        mtype = header.message_type
        if not mtype:
            raise UnsupportedMessage("MSH-9 message type is empty", err_code="200", location="MSH-9")
        if mtype not in self.types:
            raise UnsupportedMessage(f"message type {_safe(mtype)} is not accepted", err_code="200",
                                     location="MSH-9")
        events = self.types[mtype]
        event = effective_event(header, self.default_events)
        if events is not None and event not in events:
            shown = f"{mtype}^{_safe(event)}" if event else f"{mtype} without a trigger event"
            raise UnsupportedMessage(f"event {shown} is not accepted", err_code="201", location="MSH-9")
        if header.processing_id not in self.processing_ids:
            raise UnsupportedMessage(f"processing id {_safe(header.processing_id) or '(empty)'} is not accepted",
                                     err_code="202", location="MSH-11")
        if header.version not in self.versions:
            raise UnsupportedMessage(f"version {_safe(header.version) or '(empty)'} is not supported",
                                     err_code="203", location="MSH-12")


def _safe(value: str) -> str:
    """Header codes are short identifiers; cap length and drop control characters for ERR/logs."""
    return "".join(c for c in value[:20] if c.isprintable())
