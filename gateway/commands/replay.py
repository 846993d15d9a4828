"""``ri-gateway replay``: analyse stored messages again.

    ri-gateway replay CONTROL_ID...             these messages (MSH-10)
    ri-gateway replay --status failed           every message whose analysis failed
    ri-gateway replay ... --since DATE --sender APP^FAC --no-deliver

The command only marks the messages (see :mod:`gateway.replay`); a running gateway
analyses them within its poll interval, a stopped one at its next start.
"""

from __future__ import annotations

import os

import click

from gateway.audit import AuditLog, utc_now
from gateway.errors import AuditError, NegativeOutcome
from gateway.replay import POLL_INTERVAL, REPLAYABLE, ReplayRequest, request_replay

from .options import config_option, db_option, parse_date, settings_from

__all__ = ["replay"]


def _sender(value: str | None) -> tuple[str | None, str | None]:
    """``APP^FAC``, ``APP`` or ``^FAC`` as (MSH-3, MSH-4); an empty part is not a filter."""
    if value is None:
        return None, None
    application, _, facility = value.partition("^")
    return application or None, facility or None


def _line(request: ReplayRequest) -> str:
    who = (f"message {request.message_id} {request.control_id or '-'} "
           f"from {request.sender or '-'}")
    if request.requested:
        return f"replay requested: {who} (was {request.status})"
    if request.waiting:
        sends = "results and alerts are sent" if request.deliver else "nothing is sent"
        return f"already waiting for replay: {who} ({sends}, as first requested)"
    return f"not replayed: {who}: {request.reason or f'status {request.status}'}"


@click.command()
@click.argument("control_ids", nargs=-1, metavar="[CONTROL_ID]...")
@click.option("--status", "statuses", multiple=True, type=click.Choice(REPLAYABLE),
              help="Every message with this status (repeatable), instead of control ids.")
@click.option("--since", metavar="DATE",
              help="Only messages received at or after DATE (ISO 8601; UTC without an offset).")
@click.option("--sender", metavar="APP[^FAC]",
              help="Only messages from this MSH-3 (and MSH-4).")
@click.option("--deliver/--no-deliver", default=True, show_default=True,
              help="Route the new results and alerts downstream again, or only record them.")
@config_option
@db_option
def replay(control_ids: tuple[str, ...], statuses: tuple[str, ...], since: str | None,
           sender: str | None, deliver: bool, config_path: str | None,
           db_path: str | None) -> None:
    """Analyse stored messages again: by CONTROL_ID (MSH-10), or all with a --status.

    The running gateway picks them up within 5 seconds (a stopped one at its next start),
    replaces their inferences and, unless --no-deliver, sends their results and alerts
    again under the current routes. The sender is not sent another ACK.
    """
    if not control_ids and not statuses:
        raise click.UsageError("name the messages: CONTROL_ID... or --status STATUS")
    if control_ids and statuses:
        raise click.UsageError("give control ids or --status, not both")
    received_since = utc_now(parse_date(since)) if since is not None else None
    application, facility = _sender(sender)
    path = settings_from(config_path, {"storage.db": db_path}).storage.db
    if not os.path.exists(path):
        raise AuditError(f"no audit database at {path}")
    with AuditLog(path) as audit:
        done = request_replay(audit, control_ids=control_ids, statuses=statuses,
                              since=received_since, sending_application=application,
                              sending_facility=facility, deliver=deliver)
    for request in done:
        click.echo(_line(request))
    found = {r.control_id for r in done}
    missing = [cid for cid in dict.fromkeys(control_ids) if cid not in found]
    for control_id in missing:
        click.echo(f"not replayed: no stored message with control id {control_id} matches")
    waiting = [r for r in done if r.waiting]
    # A message already waiting keeps the delivery of its earlier request: say so.
    delivering = sum(bool(r.deliver) for r in waiting)
    if delivering == len(waiting):
        sent = "results and alerts are sent again" if waiting or deliver else \
            "nothing is sent downstream"
    elif not delivering:
        sent = "nothing is sent downstream"
    else:
        sent = (f"results and alerts are sent again for {delivering} of them (a message "
                "already waiting keeps its first request's --deliver/--no-deliver)")
    click.echo(f"{len(waiting)} message(s) will be analysed again by the running gateway within "
               f"{POLL_INTERVAL:g} s, or at its next start; {sent}")
    if missing or any(not r.waiting and r.resent_as is None for r in done):
        raise NegativeOutcome("some messages were not replayed (see above)")
