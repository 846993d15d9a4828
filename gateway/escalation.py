"""Escalation: an alert that cannot reach its pager goes to another destination.

A critical result paged to a pager that is down, or that refuses the message, reaches no
one: the outbox retries with backoff and finally dead-letters it, which only the audit log
and a metric show.  An alert route can name where its alerts go then::

    [routes.critical-to-pager]
    type = "alerts"
    destinations = ["pager"]
    escalate_to = ["backup-pager"]   # another pager, the reading room's system, a service desk
    escalate_after = 120             # seconds; optional

An alert of the route is sent on to every ``escalate_to`` destination, as a copy addressed
to it (MSH-5/MSH-6 of that destination, a new MSH-10, every other byte as sent), when

* it is dead-lettered at its destination (AR/CR, or ``max_attempts`` failed attempts); or
* with ``escalate_after``, it is still not delivered that many seconds after it was queued
  (checked every few seconds; the original keeps being tried as well, so the first pager
  may still get it).  That time runs on while the gateway is stopped, but an alert queued
  before a start escalates no sooner than ``min(escalate_after, ack_timeout)`` seconds
  after it, so that its own destination is tried first, unless that destination has failed
  it since it became overdue (:meth:`Escalation.due`).

Each alert is escalated at most once, and an escalated copy is not escalated again.  The
copies are outbox messages like any other (delivered, retried, dead-lettered, audited) whose
``escalated_from`` names the alert they escalate; the alert gets an ``escalated`` event
(``reason``: ``dead_lettered`` or ``undelivered``, ``to``: the destinations).  Escalation
follows the route named on the outbox row (when several alert routes sent one message to a
destination, the first matching route with ``escalate_to``, else the first matching one).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from mappings.outbound import OutboundMappingError, readdress

from .outbox import OutboxRow
from .routing import ALERTS, OutboundConfig, PlannedMessage, new_control_id

__all__ = ["Escalation"]

_log = structlog.get_logger("ri_gateway.escalation")


class Escalation:
    """Which alerts escalate where, and the copies that carry them."""

    def __init__(self, config: OutboundConfig, *,
                 control_ids: Callable[[], str] = new_control_id) -> None:
        self.routes = {route.name: route for route in config.routes if route.escalate_to}
        self.destinations = config.destinations
        self._control_ids = control_ids
        # escalate_after -> the routes that escalate after that long (one query each).
        self.by_delay: dict[float, list[str]] = {}
        for name, route in self.routes.items():
            if route.escalate_after is not None:
                self.by_delay.setdefault(route.escalate_after, []).append(name)

    def __bool__(self) -> bool:
        return bool(self.routes)

    def due(self, row: OutboxRow, after: float, *, now: float, started: float) -> bool:
        """Whether ``row``, undelivered ``after`` seconds since it was queued, escalates now
        in a gateway started at ``started``.

        The time counts from the queueing, through a stop: a critical result that waited out
        an outage has waited, and should not wait ``escalate_after`` more.  But an alert
        queued before the start first gets its own destination's turn: it escalates once it
        is still undelivered ``min(escalate_after, ack_timeout)`` seconds after the start
        (time for one attempt).  Escalated at once, every alert pending through the outage
        paged the backup too, while the first pager took them a moment later.  That turn is
        owed only to an alert its destination has not failed since it became overdue: one
        it has (in this run or an earlier one) escalates now, or a gateway restarting faster
        than the turn (a crash loop) never escalated anything queued before.
        """
        if row.created_at >= started:
            return True
        if row.attempts and row.updated_at is not None and row.updated_at >= row.created_at + after:
            return True
        destination = self.destinations.get(row.destination)
        turn = min(after, destination.ack_timeout) if destination is not None else 0.0
        return now >= started + turn

    def plan(self, row: OutboxRow) -> list[PlannedMessage]:
        """The copies of ``row`` for its route's ``escalate_to``; none when it does not
        escalate (not an alert, no such route, itself an escalation)."""
        route = self.routes.get(row.route)
        if route is None or row.purpose != ALERTS or row.escalated_from is not None:
            return []
        planned = []
        for name in route.escalate_to:
            control_id = self._control_ids()
            try:
                payload = readdress(row.payload, self.destinations[name].addressing, control_id)
            except OutboundMappingError as exc:  # not expected of a message we built
                _log.error("outbox.escalation_failed", outbox_id=row.id, destination=name,
                           error=str(exc))
                continue
            planned.append(PlannedMessage(name, row.route, ALERTS, control_id, payload))
        return planned
