"""``ri-gateway audit``: read the audit log (``tail`` and ``show``) and apply a retention
policy to it (``purge``, see :mod:`gateway.retention`)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from gateway.audit import AuditLog
from gateway.errors import NegativeOutcome
from gateway.local_time import local_text

from .options import DATE_HELP, config_option, db_option, settings_from

__all__ = ["audit", "event_line"]

_KEYS = ("time", "event", "control_id", "message_type", "sender", "ack_code")


def event_line(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of an event: the standard keys first, then the event's own fields."""
    line = {key: event.get(key) for key in _KEYS}
    line["message_id"] = event.get("message_id")
    for key, value in event.get("fields", {}).items():
        line.setdefault(key, value)
    return line


def _text_line(event: dict[str, Any]) -> str:
    fields = " ".join(f"{k}={v}" for k, v in event.get("fields", {}).items()
                      if k not in _KEYS)
    # Local, with its offset, as a log one tails; --json keeps the stored UTC time.
    parts = [local_text(event["time"], milliseconds=True), f"{event['event']:<15}",
             event.get("control_id") or "-",
             event.get("message_type") or "-", event.get("sender") or "-",
             event.get("ack_code") or "-", fields]
    return " ".join(p for p in parts if p)


def _open(config_path: str | None, db_path: str | None) -> AuditLog:
    settings = settings_from(config_path, {"storage.db": db_path})
    return AuditLog(settings.storage.db, readonly=True)


@click.group()
def audit() -> None:
    """Read the audit log (the database named by [storage] db or --db), or purge it."""


@audit.command()
@click.option("-n", "lines", default=20, show_default=True, type=click.IntRange(min=0),
              help="How many of the latest events to print.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--interval", default=0.5, hidden=True, type=click.FloatRange(min=0.01),
              help="Seconds between polls with --follow.")
@config_option
@db_option
def tail(lines: int, follow: bool, as_json: bool, interval: float, config_path: str | None,
         db_path: str | None) -> None:
    """Print the latest events (time, event, control id, type, sender, ACK code)."""
    with _open(config_path, db_path) as log:
        events = log.events(last=lines) if lines else []
        last_id = events[-1]["id"] if events else (log.events(last=1) or [{"id": 0}])[-1]["id"]

        def show(items: list[dict[str, Any]]) -> None:
            for event in items:
                click.echo(json.dumps(event_line(event)) if as_json else _text_line(event))

        try:
            show(events)
            while follow:
                time.sleep(interval)
                log.check_same_file()
                new = log.events(after_id=last_id)
                if new:
                    show(new)
                    last_id = new[-1]["id"]
        except KeyboardInterrupt:
            # Ctrl-C is how one stops reading (following), not a failure: no "Aborted!",
            # exit 0.
            return


@audit.command()
@click.argument("control_id")
@config_option
@db_option
def show(control_id: str, config_path: str | None, db_path: str | None) -> None:
    """Everything recorded for CONTROL_ID (MSH-10) as JSON lines: events, then inferences."""
    with _open(config_path, db_path) as log:
        events = log.events(control_id=control_id)
        messages = log.messages_for(control_id)
        if not events and not messages:
            raise NegativeOutcome(f"no message with control id {control_id} in {log.path}")
        for event in events:
            click.echo(json.dumps(event_line(event)))
        for message in messages:
            for inference in log.inferences_for(message["id"]):
                click.echo(json.dumps({
                    "time": message["analysed_at"], "event": "inference",
                    "control_id": control_id, "message_type": message["message_type"],
                    "sender": message["sender"], "ack_code": message["ack_code"],
                    "message_id": message["id"], **inference}))


@audit.command()
@click.option("--before", required=True, metavar="DATE",
              help=f"Purge messages received before DATE ({DATE_HELP}).")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The counts as one JSON object.")
@config_option
@db_option
def purge(before: str, dry_run: bool, as_json: bool, config_path: str | None,
          db_path: str | None) -> None:
    """Delete finished messages received before DATE, with their events, inferences and
    delivered or dead outbox messages (a retention policy for the PHI the log holds)."""
    from gateway.audit import utc_now
    from gateway.retention import purge as purge_before

    from .options import parse_date

    cutoff = utc_now(parse_date(before))
    settings = settings_from(config_path, {"storage.db": db_path})
    with AuditLog(settings.storage.db, create=False) as log:
        counts = purge_before(log, cutoff, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"before": cutoff, "dry_run": dry_run, **counts.as_json()}))
        return
    verb = "would purge" if dry_run else "purged"
    kept = ", ".join(f"{n} {why}" for why, n in sorted(counts.kept.items())) or "none"
    click.echo(f"{verb} {counts.messages} message(s) received before {local_text(cutoff)}, "
               f"{counts.events} event(s), {counts.inferences} inference(s), "
               f"{counts.outbox} outbox message(s); kept as unfinished: {kept}")
