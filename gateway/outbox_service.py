"""Wiring the outbox into the running gateway.

:func:`build_outbound_service` (called by ``gateway.service.build_gateway``) reads the
``[outbound]``, ``[destinations.*]`` and ``[routes.*]`` sections and:

* adds an :class:`OutboundHook` to the analysis pipeline: for every analysed OBR group it
  plans the result and alert messages of the matching routes and returns the outbox
  insert as an audit operation, so the outbound messages commit in the transaction that
  records the inferences;
* when the inbound MSH-16 asks for an application acknowledgement (enhanced mode: AL,
  or ER/SU by outcome), the same operation enqueues that ACK (AA after analysis, AE when
  the engine refused the report, AR when it failed) to
  ``[outbound] application_ack_destination``, the return route;
* sends a destination one alert for what one message pages: a report filed under several
  order groups (its text repeated under each OBR) alerted once per group, all alike but
  for the ORC/OBR; an alert of the same route equal to an earlier one of the message in
  every other segment (the same patient, the same OBX groups) is not queued (the results
  still go per group);
* queues no alert that pages nothing new for its study: a correction or a resend of a
  report whose critical result was paged already (:mod:`gateway.repeat_alerts`, checked in
  the transaction that would queue it); one whose earlier page is still pending is queued
  held, and sent only if that page is dead-lettered (:mod:`gateway.held_alerts`);
* queues no result of a version that a later version of its report superseded at the
  destination, its result delivered or pending (a replay of an older version:
  :mod:`gateway.superseded_results`), so the EHR never files the older one over it;
* routes nothing for a message this gateway sent itself (MSH-3/MSH-4 equal to
  ``[outbound]`` sending_application/sending_facility) that an interface engine routed
  back: audit event ``outbound_skipped``, so a result can never come back as a new page;
* wakes the destination workers right after each commit (the group committer's
  ``on_commit``), so an alert leaves as soon as it is durable;
* returns the :class:`~gateway.delivery.DeliveryService` (or None when no destination
  is configured), which delivers on its own database connection and thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

import structlog

from mappings.outbound import besides_the_order

from .delivery import DeliveryService, warn_unrouted
from .escalation import Escalation
from .audit import event_op
from .outbox import Outbox, OutboxError, enqueue_op
from .repeat_alerts import patient_digests, sort_repeats, withdrawals_op
from .superseded_results import unsent_superseded
from .routing import (  # _inferences: the inferences of a result, as the router reads them
    ALERTS, PlannedMessage, Router, _inferences, first_component, outbound_config,
    wants_application_ack,
)

_log = structlog.get_logger("ri_gateway.outbox")

__all__ = ["OutboundHook", "build_outbound_service"]


class OutboundHook:
    """``AnalysedHook`` for ``gateway.pipeline.AnalysisPipeline``: outbox rows per message."""

    def __init__(self, router: Router, *, now: Any = None, mapping_config: Any = None) -> None:
        self.router = router
        self.mapping_config = mapping_config  # how the patient's identifiers are read
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc).astimezone())
        self._lock = threading.Lock()
        self._written: set[str] = set()  # destinations with rows committed but not yet woken

    def __call__(self, message: Any, outcomes: Sequence[Any]) -> list[Any]:
        if self._is_own(message.header):
            # One of our results or alerts, routed back to us by an interface engine. It is
            # analysed like any ORU, but routing it again would answer it with another
            # result and another page for the same finding, which would come back too: a
            # loop paging the same critical result until the text ran out.
            _log.warning("outbox.own_message_not_routed", control_id=message.control_id,
                         message_id=message.message_id)
            return [event_op("outbound_skipped", message.control_id, message.message_id,
                             reason="own message")]
        now = self._now()
        planned: list[PlannedMessage] = []
        failures: list[Any] = []
        # (destination, route, what an alert says): the route too, as escalation follows
        # the route named on the outbox row (an alike alert of an escalating route stays).
        paged: set[tuple[str, str, bytes]] = set()
        identities: dict[str, Any] = {}  # the message's patients, read once when needed
        for outcome in outcomes:
            if outcome.result is None:
                continue
            try:
                for p in self.router.plan(
                        inbound_text=message.text, header=message.header, report=outcome.report,
                        result=outcome.result, now=now):
                    if p.purpose == ALERTS:
                        said = (p.destination, p.route, besides_the_order(p.payload))
                        if said in paged:
                            # One report filed under several orders (CT chest, abdomen and
                            # pelvis read together, its text under each OBR) paged the same
                            # results once per order; the first order's alert says it all.
                            _log.info("outbox.repeated_alert_not_sent",
                                      control_id=message.control_id, destination=p.destination,
                                      obr_index=getattr(outcome.report, "obr_index", None))
                            continue
                        paged.add(said)
                    planned.append(self._with_patient(message, outcome.report, p, identities))
            except Exception as exc:  # noqa: BLE001 - recorded; the analysis still commits
                # A message that cannot be built must not block recording the analysis
                # (it would be re-analysed at every start); the audit trail says why.
                failures.append(event_op(
                    "outbound_failed", message.control_id, message.message_id,
                    obr_index=getattr(outcome.report, "obr_index", None),
                    error=type(exc).__name__))
        # What this version states under each accession: a result an earlier version paged
        # and this one no longer states is withdrawn from that page (gateway.repeat_alerts).
        analysed = [(outcome.report.accession, _inferences(outcome.result)) for outcome in outcomes
                    if outcome.result is not None and getattr(outcome.report, "accession", None)]
        withdrawals = [withdrawals_op(analysed, message.message_id,
                                      self._patients(message, outcomes, identities))
                       ] if analysed else []
        if getattr(message, "deliver", "all") == "results":
            planned = [p for p in planned if p.purpose != ALERTS]  # a replay that pages no one
        app_ack = self._application_ack(message, outcomes, now)
        if app_ack is not None:
            planned.append(app_ack)
        if not planned:
            return [*failures, *withdrawals]
        destinations = {p.destination for p in planned}

        def op(conn: Any) -> list[int]:
            # In the transaction: a version committed in the same batch counts too.
            # A replay of an older version, or one analysed after a later version's result
            # was queued: the destination would file it over the later one.
            current = unsent_superseded(conn, planned, control_id=message.control_id,
                                        message_id=message.message_id)
            repeats = sort_repeats(conn, current, control_id=message.control_id,
                                   message_id=message.message_id)
            ids = enqueue_op(repeats.send, source_control_id=message.control_id,
                             message_id=message.message_id)(conn) if repeats.send else []
            if repeats.hold:
                Outbox.enqueue_in(
                    conn, [p for p, _ in repeats.hold], source_control_id=message.control_id,
                    message_id=message.message_id,
                    held=[{"reason": "earlier_alert_pending", "results": len(p.pages),
                           **cover.fields()} for p, cover in repeats.hold])
            with self._lock:
                self._written |= destinations
            return ids

        return [*failures, *withdrawals, op]

    def _with_patient(self, message: Any, report: Any, p: PlannedMessage,
                      identities: dict[str, Any]) -> PlannedMessage:
        """A result or an alert with the digests of its patient's identifiers, which tell
        whether an earlier message under its accession was of the same study
        (gateway.repeat_alerts, gateway.superseded_results)."""
        if not p.accession or (p.purpose == ALERTS and not p.pages):
            return p
        return dataclasses.replace(p, patients=self._digests(message, report, identities))

    def _patients(self, message: Any, outcomes: Sequence[Any],
                  identities: dict[str, Any]) -> dict[str, set[str]]:
        """The digests of the message's patient under each accession of its analysed
        reports (whose withdrawals may reach a held alert: gateway.repeat_alerts)."""
        found: dict[str, set[str]] = {}
        for outcome in outcomes:
            accession = getattr(outcome.report, "accession", None)
            if outcome.result is not None and accession:
                found.setdefault(accession, set()).update(
                    self._digests(message, outcome.report, identities))
        return found

    def _digests(self, message: Any, report: Any, identities: dict[str, Any]) -> tuple[str, ...]:
        if "groups" not in identities:
            from mappings.inbound import patient_identities

            try:
                identities["groups"] = patient_identities(message.text, self.mapping_config)
            except Exception:  # noqa: BLE001 - mapped before; without them the alert is sent
                identities["groups"] = {}
        return patient_digests(identities["groups"].get(getattr(report, "obr_index", 0), ()))

    def _is_own(self, header: Any) -> bool:
        """Whether MSH-3/MSH-4 are this gateway's own ([outbound] sending_application and
        sending_facility, first components as the routes read them)."""
        fmt = self.router.config.format
        return (header is not None
                and first_component(getattr(header, "sending_application", "")) == fmt.sending_application
                and first_component(getattr(header, "sending_facility", "")) == fmt.sending_facility)

    def take_written(self) -> set[str]:
        with self._lock:
            written, self._written = self._written, set()
        return written

    def _application_ack(self, message: Any, outcomes: Sequence[Any],
                         now: dt.datetime) -> PlannedMessage | None:
        header = message.header
        if self.router.config.application_ack_destination is None:
            return None
        if getattr(message, "replay", False):
            return None  # the sender had its application ACK when the message was analysed
        from mappings.ack import build_ack

        from .ack_policy import decide

        error = next((o.error for o in outcomes if o.error is not None), None)
        decision = decide(error)
        if not wants_application_ack(getattr(header, "application_ack_type", ""), decision.code):
            return None
        control_id = self.router.new_control_id()
        fmt = self.router.config.format
        # Encoded like every outbound message, in [outbound] charset; charset= makes MSH-18
        # name it where the sender's MSH-18 (echoed otherwise) names another, so the return
        # route does not read the echoed MSH-3/4 in the sender's charset from UTF-8 bytes.
        # MSH-15 AL asks for the accept ACK the outbox waits for: HL7 receivers do not
        # acknowledge acknowledgements otherwise, and each timeout resent the same ACK.
        text = build_ack(header, decision.code, control_id=control_id, now=now,
                         error=decision.error, sending_application=fmt.sending_application,
                         sending_facility=fmt.sending_facility, charset=fmt.codec,
                         accept_ack_type="AL")
        return self.router.plan_application_ack(text, control_id)


def build_outbound_service(app: Any) -> DeliveryService | None:
    """Hook the outbox into ``app`` (a ``gateway.service.GatewayApp``); None if unused."""
    config = outbound_config(app.settings.sections)
    if not config.destinations:
        # Messages queued while destinations were configured wait for them to return.
        try:
            outbox = Outbox.open(app.settings.storage.db, readonly=True)
            try:
                warn_unrouted(outbox.backlog(), ())
            finally:
                outbox.conn.close()
        except OutboxError:
            pass  # a warning only: the gateway runs without outbound either way
        return None
    from .commit import thread_writer

    # Checks the audit writer's files: the first of the two to find the database deleted or
    # replaced stops both (gateway.database_files).
    outbox = Outbox.open(app.settings.storage.db, clock=app.reactor,
                         files=app.writer_audit.files)
    # The metrics' reads, on the reactor thread: a connection of their own (WAL: a reader
    # never waits for a writer) that waits for no lock either (a failed read keeps the
    # previous values), never the writer thread's, which a scrape waited for.
    metrics_reader = Outbox.open(app.settings.storage.db, readonly=True, busy_timeout=0)
    run_db, stop_db = thread_writer(app.reactor)

    def stopped() -> None:
        stop_db()
        outbox.conn.close()
        metrics_reader.conn.close()

    service = DeliveryService(outbox, config.destinations, reactor=app.reactor,
                              run_db=lambda fn, *a, **kw: run_db(lambda: fn(*a, **kw)),
                              metrics=app.metrics, on_stop=stopped,
                              escalation=Escalation(config),
                              read_backlog=metrics_reader.backlog,
                              read_held=metrics_reader.held)
    service.setName("outbox")
    hook = OutboundHook(Router(config), mapping_config=app.settings.mapping_config)
    app.pipeline.add_hook(hook)
    previous = app.committer.on_commit

    def on_commit(size: int) -> None:
        if previous is not None:
            previous(size)
        written = hook.take_written()
        if written:
            service.notify(written)

    app.committer.on_commit = on_commit
    return service
