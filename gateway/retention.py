"""Retention: deleting what the audit log holds about messages received before a date.

The audit log keeps every inbound message whole (the raw HL7, patient identifiers
included), its events, its inferences and the result and alert messages built from it.
Nothing is ever deleted by the gateway itself; a site's retention policy decides how
long that PHI stays, and :func:`purge` (``ri-gateway audit purge --before DATE``) applies
it:

* a message received before the date is deleted with its events, its inferences and its
  delivered or dead-lettered outbox messages, once it is finished: analysed, skipped,
  failed or rejected, none of its outbox messages is still waiting to be delivered, and
  none of its follow-up recommendations is still to come due (today or later).
  An unfinished one (``received``, ``replay``), one with a pending (or held) outbox message or one
  with a recommendation not yet due is kept, and counted, so that purging never loses
  work in progress nor a loop ``report followups`` has yet to close;
* events of no message (a duplicate of a message that could not be stored, ...) older
  than the date go too;
* one ``purged`` event records the date and the counts; a purge that fails part-way (a
  lock held too long by another writer, a full disk, Ctrl-C) records what it had deleted
  in a ``purged`` event with ``complete: false`` before it reports the failure, so the log
  never loses the trace of rows that are gone.  Running it again finishes the job.  When
  even that event cannot be written, the error gives the counts.

The deletes run a few messages per transaction, so a running gateway's ACK path waits
for at most one such transaction; the ids are read a chunk at a time, and each message is
checked again in the transaction that deletes it (a ``replay`` or an ``outbox retry``
meanwhile keeps it).  SQLite reuses the freed pages; the file itself only
shrinks with ``VACUUM``, which needs the gateway stopped.

What a purge takes away: a message resent later with the MSH-3/MSH-4/MSH-10 of a purged
one is no longer a duplicate (it is accepted and analysed again), ``replay`` and
``audit show`` no longer find it, and ``report followups`` no longer sees the purged
exams that could have completed a recommendation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from .audit import AuditLog, Op, event_op, has_table, utc_now
from .errors import AuditError

__all__ = ["FINISHED", "PURGE_CHUNK", "PurgeCounts", "PurgeInterrupted", "purge"]

FINISHED = ("analysed", "skipped", "failed", "rejected")
# Messages per transaction: small enough that the ACK path of a running gateway, which
# waits for the write lock, waits for one short transaction at a time.
PURGE_CHUNK = 100


@dataclass
class PurgeCounts:
    messages: int = 0
    events: int = 0
    inferences: int = 0
    outbox: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # why messages before the date stay

    def add(self, table: str, rows: int) -> None:
        """Count ``rows`` of ``table`` (messages, events, inferences, outbox)."""
        setattr(self, table, getattr(self, table) + rows)

    def as_json(self) -> dict[str, object]:
        return {"messages": self.messages, "events": self.events,
                "inferences": self.inferences, "outbox": self.outbox, "kept": self.kept}

    def deleted_any(self) -> bool:
        return any((self.messages, self.events, self.inferences, self.outbox))


class PurgeInterrupted(AuditError):
    """A purge failed after deleting part of what it was asked to: ``counts`` says what
    is gone (also recorded in a ``purged`` event with ``complete: false`` when the log could
    still be written).  ``finished``: everything was deleted, only its ``purged`` event
    could not be written."""

    def __init__(self, counts: PurgeCounts, cause: BaseException, recorded: bool,
                 finished: bool = False) -> None:
        where = "recorded in a purged event" if recorded else "NOT recorded in the log"
        deleted = (f"{counts.messages} message(s), {counts.events} event(s), "
                   f"{counts.inferences} inference(s), {counts.outbox} outbox message(s)")
        if finished:
            message = f"purge done but {where} ({_cause(cause)}): deleted {deleted}"
        else:
            message = (f"purge stopped part-way ({_cause(cause)}); already deleted, {where}: "
                       f"{deleted}; run it again to finish")
        super().__init__(message)
        self.counts = counts
        self.recorded = recorded


def _cause(exc: BaseException) -> str:
    # Ctrl-C (KeyboardInterrupt) has no message of its own.
    return str(exc) or "interrupted"


def purge(audit: AuditLog, before: str, *, dry_run: bool = False) -> PurgeCounts:
    """Delete what the audit log holds about finished messages received before ``before``
    (a ``received_at`` string); with ``dry_run``, only count it."""
    conn = audit.conn
    counts = PurgeCounts()
    attached = _attached(conn)
    counts.kept = _kept(conn, before, attached)
    if dry_run:
        return _count_purgeable(conn, before, attached, counts)
    try:
        # Ctrl-C too: a long purge is the kind an admin stops, and what it deleted is gone.
        _delete_purgeable(audit, before, attached, counts)
    except (AuditError, sqlite3.Error, KeyboardInterrupt) as exc:
        if not counts.deleted_any():
            raise  # nothing changed: the failure says it all
        # What is gone must stay on record even though the purge did not finish; if the
        # log cannot be written now either, the error says so.
        try:
            audit.run(_purged_op(before, counts, complete=False, error=_cause(exc)))
        except AuditError:
            raise PurgeInterrupted(counts, exc, recorded=False) from None
        raise PurgeInterrupted(counts, exc, recorded=True) from None
    try:
        audit.run(_purged_op(before, counts))
    except AuditError as exc:
        if not counts.deleted_any():
            raise
        # Everything is deleted: the counts must at least reach the admin.
        raise PurgeInterrupted(counts, exc, recorded=False, finished=True) from None
    return counts


def _count_purgeable(conn: sqlite3.Connection, before: str, attached: tuple[str, ...],
                     counts: PurgeCounts) -> PurgeCounts:
    after = 0
    while chunk := _purgeable(conn, before, attached, after):
        after = chunk[-1]
        counts.messages += len(chunk)
        for table in attached:
            counts.add(table, _count(conn, f"{table} WHERE message_id IN ({_marks(chunk)})",
                                     chunk))
    counts.events += _count(conn, "events WHERE message_id IS NULL AND time < ? "
                            "AND event != 'purged'", [before])
    return counts


def _delete_purgeable(audit: AuditLog, before: str, attached: tuple[str, ...],
                      counts: PurgeCounts) -> None:
    # A chunk of ids at a time (never every id of a large log in memory), each checked
    # again in the transaction that deletes it: a message replayed, or an outbox message
    # of it retried, since it was read is kept.
    after = 0
    while chunk := _purgeable(audit.conn, before, attached, after):
        after = chunk[-1]
        for table, deleted in audit.run(_delete_messages(chunk, attached)).items():
            counts.add(table, deleted)
    while True:  # events of no message, a chunk at a time like the rest
        removed = audit.run(_delete_unattached_events(before))
        counts.events += removed
        if removed < PURGE_CHUNK:
            break


def _purged_op(before: str, counts: PurgeCounts, **fields: object) -> Op[int]:
    return event_op("purged", None, None, utc_now(), before=before, **counts.as_json(), **fields)


def _attached(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The tables whose rows belong to a message (``message_id``); the outbox exists only
    once outbound was configured."""
    return ("events", "inferences", "outbox") if has_table(conn, "outbox") else (
        "events", "inferences")


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


_STATUSES = _marks(FINISHED)
# Pending, or held behind an earlier version's alert (gateway.held_alerts): not done with.
_OUTBOX_PENDING = ("EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id "
                   "AND o.status IN ('pending', 'held'))")
# The due date of a follow-up recommendation as ``report followups`` reads it (effectiveAt,
# else the end of effectivePeriod; partial: "2025-06" is due until June ends).
_DUE = ("substr(COALESCE(json_extract(i.json, '$.effectiveAt'), "
        "json_extract(i.json, '$.effectivePeriod.end'), "
        "json_extract(i.json, '$.effectivePeriod.start')), 1, 10)")
# A recommendation not yet due (today, local, as report followups' --as-of, or later): the
# loop is still open, and once it is due, report followups must still find the report
# that asked for it.
_FOLLOW_UP_OPEN = ("EXISTS (SELECT 1 FROM inferences i WHERE i.kind = 'followupRecommendation' "
                   f"AND i.message_id = m.id "
                   f"AND {_DUE} >= substr(date('now', 'localtime'), 1, length({_DUE})))")


def _finished(attached: tuple[str, ...]) -> str:
    """The condition on ``m`` (a message) for it to be purged, after ``received_at < ?``."""
    waiting = f"AND NOT {_OUTBOX_PENDING}" if "outbox" in attached else ""
    # +status: walked by id from ``after`` (and stopping at a chunk), not by the status
    # index, which would gather and sort every finished message after ``after`` each time.
    return f"+m.status IN ({_STATUSES}) {waiting} AND NOT {_FOLLOW_UP_OPEN}"


def _purgeable(conn: sqlite3.Connection, before: str, attached: tuple[str, ...],
               after: int) -> list[int]:
    return [row[0] for row in conn.execute(
        f"SELECT m.id FROM messages m WHERE m.id > ? AND m.received_at < ? "
        f"AND {_finished(attached)} ORDER BY m.id LIMIT ?",
        [after, before, *FINISHED, PURGE_CHUNK])]


def _kept(conn: sqlite3.Connection, before: str, attached: tuple[str, ...]) -> dict[str, int]:
    kept = {status: n for status, n in conn.execute(
        f"SELECT status, COUNT(*) FROM messages WHERE received_at < ? "
        f"AND status NOT IN ({_STATUSES}) GROUP BY status", [before, *FINISHED])}
    finished = f"messages m WHERE m.received_at < ? AND m.status IN ({_STATUSES})"
    if "outbox" in attached:
        waiting = _count(conn, f"{finished} AND {_OUTBOX_PENDING}", [before, *FINISHED])
        if waiting:
            kept["outbox_pending"] = waiting
        finished += f" AND NOT {_OUTBOX_PENDING}"
    open_follow_ups = _count(conn, f"{finished} AND {_FOLLOW_UP_OPEN}", [before, *FINISHED])
    if open_follow_ups:
        kept["followup_open"] = open_follow_ups
    return kept


def _delete_messages(chunk: Sequence[int], attached: tuple[str, ...]) -> Op[dict[str, int]]:
    def op(conn: sqlite3.Connection) -> dict[str, int]:
        # Still finished, none of its outbox messages pending again: under the write lock.
        ids = [row[0] for row in conn.execute(
            f"SELECT m.id FROM messages m WHERE m.id IN ({_marks(chunk)}) "
            f"AND {_finished(attached)}", [*chunk, *FINISHED])]
        if not ids:
            return {}
        # Each table's rows first, the messages they point at last.
        deleted = {table: conn.execute(f"DELETE FROM {table} WHERE message_id IN "
                                       f"({_marks(ids)})", ids).rowcount for table in attached}
        deleted["messages"] = conn.execute(f"DELETE FROM messages WHERE id IN ({_marks(ids)})",
                                           ids).rowcount
        return deleted

    return op


def _delete_unattached_events(before: str) -> Op[int]:
    def op(conn: sqlite3.Connection) -> int:
        return conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE message_id IS NULL "
            "AND time < ? AND event != 'purged' LIMIT ?)", (before, PURGE_CHUNK)).rowcount

    return op


def _count(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> int:
    (n,) = conn.execute(f"SELECT COUNT(*) FROM {where}", list(params)).fetchone()
    return int(n)
