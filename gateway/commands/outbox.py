"""``ri-gateway outbox``: look at and act on the outbound queue.

    ri-gateway outbox list [--status pending|held|delivered|dead] [--destination NAME] [-n N]
                           [--json]
    ri-gateway outbox retry ID...        put dead (or waiting) messages back in the queue now
    ri-gateway outbox retry --dead       every dead-lettered message (optionally --destination),
                                         but an alert already delivered by escalation and a
                                         result a later version of its report replaced
    ri-gateway outbox purge --delivered --before DATE

A running gateway picks re-queued messages up within its poll interval (5 s).
DATE is ISO 8601 (``2024-01-31`` or ``2024-01-31T12:00:00+01:00``); without an offset it
is UTC.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from gateway.audit import AuditLog
from gateway.errors import AuditError, NegativeOutcome
from gateway.local_time import local_text
from gateway.outbox import (
    DEAD, DELIVERED, HELD, PENDING, NotRequeued, Outbox, OutboxError, OutboxRow,
)

from .options import DATE_HELP, config_option, db_option, parse_date, settings_from

__all__ = ["outbox"]


def _open(config_path: str | None, db_path: str | None, *, readonly: bool = False) -> Outbox:
    settings = settings_from(config_path, {"storage.db": db_path})
    path = settings.storage.db
    # The outbox lives in the audit database: a path that is not one (missing, empty,
    # another program's database) is refused before the outbox table would be created in it.
    AuditLog(path, readonly=True).close()
    try:
        return Outbox.open(path, readonly=readonly)
    except OutboxError as exc:
        raise AuditError(str(exc)) from None


# How a later version's result stands, by its status.
_WAS = {DELIVERED: "was delivered", PENDING: "is queued"}


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_dict(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id, "status": row.status, "destination": row.destination, "route": row.route,
        "purpose": row.purpose, "control_id": row.control_id,
        "source_control_id": row.source_control_id, "attempts": row.attempts,
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == PENDING else None,
        "delivered_at": _iso(row.delivered_at), "ack_code": row.ack_code,
        "last_error": row.last_error, "size": len(row.payload),
        "escalated_from": row.escalated_from,
    }


@click.group()
def outbox() -> None:
    """The outbound queue: results and alerts waiting for, or done with, delivery."""


@outbox.command("list")
@config_option
@db_option
@click.option("--status", type=click.Choice([PENDING, HELD, DELIVERED, DEAD]),
              help="Only this status (held: an alert waiting for an earlier alert of its "
                   "study, sent only if that one is dead-lettered).")
@click.option("--destination", help="Only this destination.")
@click.option("-n", "--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Most rows shown (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(config_path: str | None, db_path: str | None, status: str | None,
          destination: str | None, limit: int, as_json: bool) -> None:
    """List outbox messages (never their content)."""
    box = _open(config_path, db_path, readonly=True)
    try:
        rows = box.list(status=status, destination=destination, limit=limit)
    except OutboxError as exc:  # not a database, a corrupt one: exit 3 as when it is missing
        raise AuditError(str(exc)) from None
    finally:
        box.conn.close()
    for row in rows:
        item = _as_dict(row)
        if as_json:
            click.echo(json.dumps(item))
        else:
            # When it was delivered, is due next, or was dead-lettered (its last change);
            # a dead message showed when it was created, hiding how long it has been dead.
            # Local, with its offset, as the other tables; --json keeps UTC.
            when = local_text(item["delivered_at"] or item["next_attempt_at"]
                              or item["updated_at"])
            error = f"  {row.last_error}" if row.last_error and row.status != DELIVERED else ""
            escalates = f"  escalates {row.escalated_from}" if row.escalated_from else ""
            click.echo(f"{row.id:>6}  {row.status:<9} {row.destination:<12} {row.purpose:<15} "
                       f"{row.control_id:<20} from {row.source_control_id or '-':<20} "
                       f"attempts={row.attempts} {when}{error}{escalates}")


@outbox.command()
@config_option
@db_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--dead", is_flag=True, help="Re-queue every dead-lettered message.")
@click.option("--destination", help="With --dead: only this destination.")
def retry(config_path: str | None, db_path: str | None, ids: tuple[int, ...], dead: bool,
          destination: str | None) -> None:
    """Re-queue messages by ID, or all dead-lettered ones with --dead.

    --dead keeps dead an alert whose escalated copy (or whose original) was delivered,
    and says so: the result reached someone already. It keeps dead a result whose report's
    later version (a correction, a resend) was delivered or is queued to that destination:
    sent after it, the older version would be filed as the current result. Name its ID to
    send it again (a warning says so). An unknown or delivered ID re-queues nothing and
    exits 1.
    """
    if not ids and not dead:
        raise click.UsageError("give the IDs of the messages to re-queue, or --dead")
    if ids and dead:
        raise click.UsageError("give message IDs or --dead, not both")
    if destination is not None and not dead:
        # Ignored here, it would re-queue IDs of other destinations than the one named.
        raise click.UsageError("--destination applies only with --dead")
    box = _open(config_path, db_path)
    try:
        if dead:
            done = box.retry_dead(destination)
        else:
            rows = box.retry(*ids)
            later = box.later_versions(rows)
    except NotRequeued as exc:
        # The command ran and the answer is no, as for a control id replay does not find.
        raise NegativeOutcome(str(exc)) from None
    except OutboxError as exc:  # the database failed: exit 3, as when it cannot be opened
        raise AuditError(str(exc)) from None
    finally:
        box.conn.close()
    if not dead:
        for row in rows:
            click.echo(f"re-queued {row.id} ({row.status} -> pending) for {row.destination}")
        retried = {row.id for row in rows}
        for row in rows:
            # A later version named with it goes out after it (first in, first out).
            if row.id in later and later[row.id][0] not in retried:
                # Sent as asked; the destination will take it for the current result.
                outbox_id, _, status = later[row.id]
                click.echo(f"warning: {row.id} is an older version of a report whose later "
                           f"version {_WAS[status]} to {row.destination} as {outbox_id}: "
                           f"{row.destination} may file it as the current result", err=True)
        return
    click.echo(f"re-queued {len(done.requeued)} dead-lettered message(s)")
    for row, reached in done.skipped:
        # Its escalated copy (or its original) was delivered: someone was paged already.
        click.echo(f"kept dead {row.id} for {row.destination}: the same alert was delivered "
                   f"as {reached} (name it to send it again: outbox retry {row.id})")
    for row, later, status in done.superseded:
        # Sent after its correction, the older version would be filed as the current one.
        click.echo(f"kept dead {row.id} for {row.destination}: a later version of the report "
                   f"{_WAS[status]} as {later} (name it to send it again: outbox retry {row.id})")


@outbox.command()
@config_option
@db_option
@click.option("--delivered", is_flag=True, required=True,
              help="Purge delivered messages (the only kind that may be purged).")
@click.option("--before", "before", required=True, metavar="DATE",
              help=f"Only messages delivered before DATE ({DATE_HELP}).")
def purge(config_path: str | None, db_path: str | None, delivered: bool, before: str) -> None:
    """Delete delivered messages older than DATE (pending and dead ones are kept, and the
    alerts of reports still in the audit log: `audit purge` removes those with them)."""
    cutoff = parse_date(before).timestamp()
    box = _open(config_path, db_path)
    try:
        count, kept = box.purge_delivered(cutoff)
    except OutboxError as exc:  # a lock held too long, a full disk: exit 3, as audit purge
        raise AuditError(str(exc)) from None
    finally:
        box.conn.close()
    alerts = f"; kept {kept} delivered alert(s) of reports still in the audit log" if kept else ""
    click.echo(f"purged {count} delivered message(s){alerts}")
