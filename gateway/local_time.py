"""Times as administrators read and type them: the local time of the machine the gateway
runs on (the TZ it runs under).

The audit log stores UTC (ISO 8601 with ``Z``, ``gateway.audit.utc_now``) and JSON output
keeps it, for programs. People work in the hospital's local time, as the gateway's own ACKs
do (MSH-7 without an offset) and as journalctl or an interface engine's dashboard read a
date: so a date typed without an offset is local, a calendar day is a local day, and a time
printed for people carries its offset, so that it cannot be taken for UTC or the other way
round.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["WIDTH", "local", "local_date", "local_text", "parse_local"]

WIDTH = len("2026-11-30T18:30:00-05:00")  # a column of local_text() times


def parse_local(value: str) -> dt.datetime:
    """An ISO 8601 date or date-time, as given when it has an offset (``Z``, ``+01:00``),
    else in local time. Raises ``ValueError`` when it is neither."""
    when = dt.datetime.fromisoformat(value)
    # astimezone() on a naive value reads it as local time, with the offset in force on
    # that day (a date in winter and one in summer get different offsets).
    return when if when.tzinfo is not None else when.astimezone()


def local(stamp: str) -> dt.datetime:
    """A stored UTC time (``2026-11-30T23:30:00.000Z``) in local time. Raises
    ``ValueError`` when it is not an ISO 8601 date-time."""
    when = dt.datetime.fromisoformat(stamp)
    if when.tzinfo is None:  # stored times are UTC, with or without their Z
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone()


def local_date(stamp: str) -> dt.date:
    """The local calendar day of a stored UTC time."""
    return local(stamp).date()


def local_text(stamp: str, *, milliseconds: bool = False) -> str:
    """A stored UTC time for people: local, with its offset
    (``2026-11-30T18:30:00-05:00``); a value that is not a time is shown as it is."""
    try:
        when = local(stamp)
    except ValueError:
        return stamp
    return when.isoformat(timespec="milliseconds" if milliseconds else "seconds")

