"""``ri-gateway replay``: analyse stored messages again.

    ri-gateway replay CONTROL_ID...             these messages (MSH-10)
    ri-gateway replay --status failed           every message whose analysis failed
    ri-gateway replay ... --since DATE --sender APP^FAC --deliver all|results|none

The command only marks the messages (see :mod:`gateway.replay`); a running gateway
analyses them within its poll interval, a stopped one at its next start.
"""

from __future__ import annotations

from collections import Counter

import click

from gateway.audit import AuditLog, utc_now
from gateway.errors import NegativeOutcome
from gateway.replay import (
    ALL, DELIVERY, NONE, POLL_INTERVAL, REPLAYABLE, RESULTS_ONLY, ReplayRequest, request_replay,
)

from .options import DATE_HELP, config_option, db_option, parse_date, settings_from

__all__ = ["replay"]


def _sender(value: str | None) -> tuple[str | None, str | None]:
    """``APP^FAC``, ``APP`` or ``^FAC`` as (MSH-3, MSH-4); an empty part is not a filter."""
    if value is None:
        return None, None
    application, _, facility = value.partition("^")
    return application or None, facility or None


_SENDS = {ALL: "results and alerts are sent", RESULTS_ONLY: "results are sent, alerts are not",
          NONE: "nothing is sent"}
_AGAIN = {ALL: "results and alerts are sent again",
          RESULTS_ONLY: "results are sent again, alerts are not", NONE: "nothing is sent downstream"}


def _line(request: ReplayRequest) -> str:
    who = (f"message {request.message_id} {request.control_id or '-'} "
           f"from {request.sender or '-'}")
    if request.requested:
        return f"replay requested: {who} (was {request.status})"
    if request.waiting:
        return (f"already waiting for replay: {who} ({_SENDS[request.deliver or ALL]}, "
                "as first requested)")
    return f"not replayed: {who}: {request.reason or f'status {request.status}'}"


@click.command()
@click.argument("control_ids", nargs=-1, metavar="[CONTROL_ID]...")
@click.option("--status", "statuses", multiple=True, type=click.Choice(REPLAYABLE),
              help="Every message with this status (repeatable), instead of control ids.")
@click.option("--since", metavar="DATE",
              help=f"Only messages received at or after DATE ({DATE_HELP}).")
@click.option("--sender", metavar="APP[^FAC]",
              help="Only messages from this MSH-3 (and MSH-4).")
@click.option("--deliver", type=click.Choice(DELIVERY), default=RESULTS_ONLY, show_default=True,
              help="What to send downstream again under the current routes: all (results "
                   "and alerts: pages again), results (the result messages only), none.")
@config_option
@db_option
def replay(control_ids: tuple[str, ...], statuses: tuple[str, ...], since: str | None,
           sender: str | None, deliver: str, config_path: str | None,
           db_path: str | None) -> None:
    """Analyse stored messages again: by CONTROL_ID (MSH-10), or all with a --status.

    The running gateway picks them up within 5 seconds (a stopped one at its next start),
    replaces their inferences and sends their result messages again under the current
    routes (--deliver all: alerts too; none: nothing). The sender gets no second ACK.
    """
    if not control_ids and not statuses:
        raise click.UsageError("name the messages: CONTROL_ID... or --status STATUS")
    if control_ids and statuses:
        raise click.UsageError("give control ids or --status, not both")
    received_since = utc_now(parse_date(since)) if since is not None else None
    application, facility = _sender(sender)
    path = settings_from(config_path, {"storage.db": db_path}).storage.db
    # Marks only: a path that is no audit database yet (missing, empty, another program's
    # database) is refused rather than made one, in which every control id is "not found".
    with AuditLog(path, create=False) as audit:
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
    modes = Counter(r.deliver or ALL for r in waiting) or Counter({deliver: 0})
    if len(modes) == 1:
        sent = _AGAIN[next(iter(modes))]
    else:
        sent = ", ".join(f"for {count}: {_AGAIN[mode]}" for mode, count in sorted(modes.items()))
        sent += " (a message already waiting keeps its first request's --deliver)"
    click.echo(f"{len(waiting)} message(s) will be analysed again by the running gateway within "
               f"{POLL_INTERVAL:g} s, or at its next start; {sent}")
    if missing or any(not r.waiting and r.resent_as is None for r in done):
        raise NegativeOutcome("some messages were not replayed (see above)")
