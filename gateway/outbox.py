"""The durable outbox: every outbound message, from analysis to delivery or dead letter.

The ``outbox`` table lives in the audit database. A message is inserted by
:func:`enqueue_op` inside the transaction that records the analysis, so a result
exists in the outbox exactly when its analysis is recorded: a crash either loses
both (the analysis is resumed at restart) or neither (delivery resumes at restart).

The table and its upgrades are in :mod:`gateway.outbox_schema`.

Every state change writes its audit event (``enqueued``, ``delivered``,
``delivery_failed``, ``dead_lettered``, ``requeued``, ``escalated``; ``alert_held``,
``alert_released`` and ``alert_suppressed`` for an alert held behind an earlier version's,
:mod:`gateway.held_alerts`) in the same transaction.

States: ``pending`` (to be sent), ``held`` (an alert waiting for an earlier alert of its
study: never sent while held), ``delivered``, ``dead``.

Errors: ``OutboxError`` (a database failure), and its ``NotRequeued`` (a message named for a
retry that is unknown or already delivered).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .audit import event_op, sqlite_uri, transaction, utc_now
from .database_files import DatabaseFiles
from .errors import GatewayError
from .held_alerts import HELD, cover_of, pages_record, settle_in
from .outbox_schema import COLUMNS, COLUMNS_BEFORE_ESCALATION, create_in, ensure_schema, \
    has_escalation
from .superseded_results import LaterVersion, later_version

__all__ = [
    "DEAD", "DELIVERED", "DeadRetry", "HELD", "NotRequeued", "Outbox", "OutboxError",
    "OutboxRow", "PENDING", "enqueue_op", "ensure_schema",
]

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

# A delivered alert that outbox purges keep: its inbound message is still in the audit log.
_KEPT = ("(purpose = 'alerts' AND message_id IS NOT NULL AND EXISTS "
         "(SELECT 1 FROM messages m WHERE m.id = outbox.message_id))")


class OutboxError(GatewayError):
    """An outbox operation failed (a database error; see also NotRequeued)."""


class NotRequeued(OutboxError):
    """A message named for :meth:`Outbox.retry` cannot be re-queued (no such id, or
    already delivered): nothing was re-queued."""


class Planned(Protocol):
    """What :func:`enqueue_op` stores (``gateway.routing.PlannedMessage``)."""

    destination: str
    route: str
    purpose: str
    control_id: str
    payload: bytes


class Clock(Protocol):
    def seconds(self) -> float: ...


class _WallClock:
    def seconds(self) -> float:
        return time.time()


@dataclass(frozen=True)
class OutboxRow:
    id: int
    destination: str
    route: str
    purpose: str
    control_id: str
    source_control_id: str | None
    message_id: int | None
    payload: bytes
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    updated_at: float | None
    delivered_at: float | None
    ack_code: str | None
    last_error: str | None
    escalated_from: int | None = None


@dataclass(frozen=True)
class DeadRetry:
    """What :meth:`Outbox.retry_dead` did: the rows re-queued, the dead alerts kept
    dead with the id of the delivered alert that carried them, and the dead results kept
    dead with the result of a later version of their report (its id and status)."""

    requeued: list[OutboxRow]
    skipped: list[tuple[OutboxRow, int]]
    superseded: list[tuple[OutboxRow, int, str]] = field(default_factory=list)


def enqueue_op(planned: Sequence[Planned], *, source_control_id: str | None,
               message_id: int | None = None,
               now: float | None = None) -> Callable[[sqlite3.Connection], list[int]]:
    """An audit-log operation inserting ``planned`` (and their ``enqueued`` events).

    Run it in the transaction that records the analysis (``AuditLog.run_batch`` or
    ``GroupCommitter.submit``); returns the new outbox ids.
    """
    def op(conn: sqlite3.Connection) -> list[int]:
        return Outbox.enqueue_in(conn, planned, source_control_id=source_control_id,
                                 message_id=message_id, now=now)

    return op


class Outbox:
    """The outbox table over one SQLite connection (synchronous; see gateway.delivery)."""

    _columns = COLUMNS

    # The running gateway's database files (its audit writer's): a read or a write after
    # they were deleted or replaced raises DatabaseLost (gateway.database_files). The
    # delivery would otherwise send what the deleted file holds and mark it delivered
    # there, and a restart on a restored database sent it again. None: not checked.
    files: DatabaseFiles | None = None

    def __init__(self, conn: sqlite3.Connection, *, clock: Clock | None = None,
                 files: DatabaseFiles | None = None) -> None:
        self.conn = conn
        self.clock = clock or _WallClock()
        self.files = files
        self._released: set[str] = set()  # destinations of held alerts released, not yet woken
        self._lock = threading.Lock()
        ensure_schema(conn)

    @classmethod
    def open(cls, path: str, *, clock: Clock | None = None, readonly: bool = False,
             busy_timeout: float = 5.0, files: DatabaseFiles | None = None) -> Outbox:
        """Its own connection to the audit database (create it first with ``AuditLog``);
        ``busy_timeout`` is how long a statement waits for a lock (seconds); ``files``:
        the database files to check before each read and around each write."""
        wait = f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}"
        try:
            if readonly:
                conn = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, check_same_thread=False)
                conn.execute(wait)
                outbox = cls.__new__(cls)
                outbox.conn, outbox.clock = conn, clock or _WallClock()
                outbox._released, outbox._lock = set(), threading.Lock()
                try:
                    if not has_escalation(conn):
                        outbox._columns = COLUMNS_BEFORE_ESCALATION
                except sqlite3.DatabaseError:
                    pass  # not a database: every read says so (_rows)
                return outbox
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(wait)
            conn.execute("PRAGMA journal_mode = WAL")
            return cls(conn, clock=clock, files=files)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox database {path}: {exc}") from None

    # --- writing ------------------------------------------------------------------------

    @staticmethod
    def enqueue_in(conn: sqlite3.Connection, planned: Sequence[Planned], *,
                   source_control_id: str | None, message_id: int | None = None,
                   now: float | None = None, escalated_from: int | None = None,
                   held: Sequence[dict[str, Any]] | None = None) -> list[int]:
        """Insert ``planned`` using ``conn``'s open transaction (no commit here).

        With ``held`` (the ``alert_held`` event's fields for each of ``planned``: why, and
        the earlier alerts it waits for), they are alerts held behind an earlier version's
        (:mod:`gateway.held_alerts`): status ``held`` and event ``alert_held``, not
        ``enqueued``, as they are not sent unless released.
        """
        now = time.time() if now is None else now
        create_in(conn)
        ids = []
        escalation = {} if escalated_from is None else {"escalated_from": escalated_from}
        for n, p in enumerate(planned):
            pages = getattr(p, "pages", ())
            # The study of an alert, and of a result (its versions: gateway.superseded_results).
            study = bool(pages) or (p.purpose == "results" and getattr(p, "accession", None))
            cur = conn.execute(
                "INSERT INTO outbox (destination, route, purpose, control_id, source_control_id, "
                "message_id, payload, status, attempts, next_attempt_at, created_at, updated_at, "
                "escalated_from, accession, pages) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
                (p.destination, p.route, p.purpose, p.control_id, source_control_id, message_id,
                 p.payload, PENDING if held is None else HELD, now, now, now, escalated_from,
                 getattr(p, "accession", None) if study else None,
                 json.dumps({"pages": list(pages), "patients": list(getattr(p, "patients", ()))})
                 if study else None))
            ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
            event_op("enqueued" if held is None else "alert_held", source_control_id,
                     message_id, destination=p.destination, route=p.route, purpose=p.purpose,
                     outbound_control_id=p.control_id, outbox_id=ids[-1], **escalation,
                     **({} if held is None else held[n]))(conn)
        return ids

    def enqueue(self, planned: Sequence[Planned], *, source_control_id: str | None,
                message_id: int | None = None) -> list[int]:
        with self._transaction() as conn:
            return self.enqueue_in(conn, planned, source_control_id=source_control_id,
                                   message_id=message_id, now=self.clock.seconds())

    def record_delivered(self, row: OutboxRow, ack_code: str) -> None:
        now = self.clock.seconds()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, ack_code = ?, "
                "delivered_at = ?, updated_at = ?, last_error = NULL WHERE id = ?",
                (ack_code, now, now, row.id))
            self._event(conn, "delivered", row, attempt=row.attempts + 1, ack_code=ack_code)
            released = self._settle(conn, row, now)
        self._woken(released)

    def record_failed(self, row: OutboxRow, error: str, *, retry_at: float | None,
                      ack_code: str | None = None, escalate: Sequence[Planned] = ()) -> bool:
        """One failed attempt; ``retry_at`` None dead-letters the message, and queues
        ``escalate`` (its escalation) in the same transaction unless it was escalated
        before. Returns whether the escalation was queued."""
        now = self.clock.seconds()
        attempt = row.attempts + 1
        released: set[str] = set()
        with self._transaction() as conn:
            if retry_at is None:
                conn.execute(
                    "UPDATE outbox SET status = 'dead', attempts = ?, ack_code = ?, last_error = ?, "
                    "updated_at = ? WHERE id = ?", (attempt, ack_code, error, now, row.id))
                self._event(conn, "delivery_failed", row, attempt=attempt, error=error, ack_code=ack_code)
                self._event(conn, "dead_lettered", row, attempts=attempt, error=error)
                escalated = bool(escalate) and self._escalate_in(conn, row, escalate,
                                                                 "dead_lettered", now)
                released = self._settle(conn, row, now)  # after it: a copy pending stands
            else:
                conn.execute(
                    "UPDATE outbox SET attempts = ?, ack_code = ?, last_error = ?, next_attempt_at = ?, "
                    "updated_at = ? WHERE id = ?", (attempt, ack_code, error, retry_at, now, row.id))
                self._event(conn, "delivery_failed", row, attempt=attempt, error=error,
                            ack_code=ack_code, retry_in=round(retry_at - now, 3))
                escalated = False
        self._woken(released)
        return escalated

    @staticmethod
    def _settle(conn: sqlite3.Connection, row: OutboxRow, now: float) -> set[str]:
        """Settle the alerts held behind ``row``, an alert just delivered or dead-lettered."""
        return settle_in(conn, row.id, now) if row.purpose == "alerts" else set()

    def _woken(self, released: set[str]) -> None:
        """Remember, once committed, the destinations whose held alerts were released."""
        if released:
            with self._lock:
                self._released |= released

    def take_released(self) -> set[str]:
        """The destinations of held alerts released since the last call (to be woken: a
        copy's dead-letter at one destination releases an alert queued for another)."""
        with self._lock:
            released, self._released = self._released, set()
        return released

    def escalate(self, pairs: Sequence[tuple[OutboxRow, Sequence[Planned]]], reason: str) -> int:
        """Queue each row's escalation (unless it was escalated before); how many were."""
        now = self.clock.seconds()
        with self._transaction() as conn:
            return sum(self._escalate_in(conn, row, planned, reason, now)
                       for row, planned in pairs if planned)

    def _escalate_in(self, conn: sqlite3.Connection, row: OutboxRow, planned: Sequence[Planned],
                     reason: str, now: float) -> bool:
        if conn.execute("SELECT 1 FROM outbox WHERE escalated_from = ? LIMIT 1",
                        (row.id,)).fetchone():
            return False  # once per alert: a dead-letter after an escalation in time adds none
        ids = self.enqueue_in(conn, planned, source_control_id=row.source_control_id,
                              message_id=row.message_id, now=now, escalated_from=row.id)
        self._event(conn, "escalated", row, reason=reason,
                    to=[p.destination for p in planned], outbox_ids=ids)
        return True

    def unescalated_alerts(self, routes: Sequence[str], older_than: float) -> list[OutboxRow]:
        """Pending alerts of ``routes`` created before ``older_than`` (clock seconds) that
        were not escalated, and are no escalation themselves."""
        if not routes:
            return []
        marks = ", ".join("?" * len(routes))
        return [OutboxRow(*r) for r in self._rows(
            f"SELECT {self._columns} FROM outbox o WHERE status = 'pending' "
            f"AND purpose = 'alerts' AND created_at <= ? AND route IN ({marks}) "
            "AND escalated_from IS NULL AND NOT EXISTS "
            # +id: ordered by the primary key, SQLite walked the whole table (every message
            # kept until purged) every poll instead of the pending ones (outbox_pending).
            "(SELECT 1 FROM outbox e WHERE e.escalated_from = o.id) ORDER BY +id",
            [older_than, *routes])]

    def retry(self, *outbox_ids: int) -> list[OutboxRow]:
        """Put dead (or pending) messages back at the head of the retry schedule.

        All or none: an unknown or delivered id re-queues nothing, so a mistyped id in a
        list never leaves the operator guessing which of the others went back.  Checked in
        the transaction that re-queues: a pending message delivered between a check and
        the update was set pending again, and sent a second time.
        """
        with self._transaction() as conn:
            rows = []
            for outbox_id in dict.fromkeys(outbox_ids):  # an id given twice is one message
                found = conn.execute(f"SELECT {self._columns} FROM outbox WHERE id = ?",
                                     (outbox_id,)).fetchone()
                if found is None:
                    raise NotRequeued(f"no outbox message with id {outbox_id} "
                                      "(nothing re-queued)")
                row = OutboxRow(*found)
                if row.status == DELIVERED:
                    raise NotRequeued(f"outbox message {outbox_id} was already delivered "
                                      "(nothing re-queued)")
                rows.append(row)
            self._requeue_in(conn, rows)
        return rows

    def retry_dead(self, destination: str | None = None) -> DeadRetry:
        """Re-queue the dead-lettered messages (of ``destination``), except the alerts
        whose escalation, or whose original, was delivered (or whose results another
        version's delivered alert paged there), and the results of a report
        whose later version's result was delivered or is pending there.

        Such an alert reached someone already: its escalated copy paged the backup (or the
        first pager got the original after the copy was queued), and sending it again
        paged the on-call person a second time for a result already handled.  They are
        kept dead and returned as ``skipped`` with the delivered row's id.  Such a result
        would reach the EHR after the correction that replaced it, and be filed as the
        current result (:mod:`gateway.superseded_results`): kept dead and returned as
        ``superseded``.  Naming one in :meth:`retry` sends it again, as the operator asked.
        """
        with self._transaction() as conn:
            where, params = "status = 'dead'", []
            if destination is not None:
                where, params = where + " AND destination = ?", [destination]
            dead = [OutboxRow(*r) for r in conn.execute(
                f"SELECT {self._columns} FROM outbox WHERE {where} ORDER BY id", params)]
            requeued, skipped, superseded = [], [], []
            for row in dead:
                reached = self._delivered_in_family(conn, row)
                if reached is None:
                    reached = _paged_by_another_version(conn, row)
                later = later_version(conn, row.id) if reached is None else None
                if reached is not None:
                    skipped.append((row, reached))
                elif later is not None:
                    superseded.append((row, later[0], later[2]))
                else:
                    requeued.append(row)
            self._requeue_in(conn, requeued)
        return DeadRetry(requeued, skipped, superseded)

    def later_versions(self, rows: Sequence[OutboxRow]) -> dict[int, LaterVersion]:
        """For each result of ``rows`` that a later version of its report superseded at
        its destination: that version's result (id, source control id, status)."""
        found = {}
        for row in rows:
            try:
                later = later_version(self.conn, row.id)
            except sqlite3.Error as exc:
                raise OutboxError(f"outbox database read failed: {exc}") from None
            if later is not None:
                found[row.id] = later
        return found

    @staticmethod
    def _delivered_in_family(conn: sqlite3.Connection, row: OutboxRow) -> int | None:
        """The id of a delivered alert carrying what ``row`` carries: the original it
        escalates, or a copy of it or of that original (escalation is one level deep)."""
        if row.purpose != "alerts":
            return None
        root = row.escalated_from if row.escalated_from is not None else row.id
        found = conn.execute(
            "SELECT id FROM outbox WHERE status = 'delivered' AND id != ? "
            "AND (id = ? OR escalated_from = ?) ORDER BY id LIMIT 1",
            (row.id, root, root)).fetchone()
        return None if found is None else int(found[0])

    def _requeue_in(self, conn: sqlite3.Connection, rows: Sequence[OutboxRow]) -> None:
        now = self.clock.seconds()
        for row in rows:
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, "
                "updated_at = ? WHERE id = ?", (now, now, row.id))
            self._event(conn, "requeued", row, previous_status=row.status)

    def purge_delivered(self, before: float) -> tuple[int, int]:
        """Delete messages delivered before ``before`` (clock seconds), except the alerts
        of inbound messages the audit log still holds; returns (deleted, alerts kept).

        Those alerts are what ``report critical`` reads to tell an alerted report from one
        never alerted, and an escalated copy is what keeps its alert from escalating again
        (gateway.escalation): deleting them made the report say every alerted report was
        not, and paged the backup again for an alert still pending. They go with their
        report (``audit purge``), which keeps a report while any of its alerts is pending.
        """
        delivered = "status = 'delivered' AND delivered_at < ?"
        with self._transaction() as conn:
            kept = conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {delivered} AND {_KEPT}",
                                (before,)).fetchone()[0]
            cur = conn.execute(f"DELETE FROM outbox WHERE {delivered} AND NOT {_KEPT}",
                               (before,))
            return cur.rowcount, int(kept)

    # --- reading ------------------------------------------------------------------------

    def head(self, destination: str) -> OutboxRow | None:
        """The next message to deliver to ``destination`` (oldest pending)."""
        rows = self._rows(
            f"SELECT {self._columns} FROM outbox WHERE destination = ? AND status = 'pending' "
            "ORDER BY id LIMIT 1", (destination,))
        return OutboxRow(*rows[0]) if rows else None

    def get(self, outbox_id: int) -> OutboxRow | None:
        rows = self._rows(f"SELECT {self._columns} FROM outbox WHERE id = ?", (outbox_id,))
        return OutboxRow(*rows[0]) if rows else None

    def list(self, *, status: str | None = None, destination: str | None = None,
             limit: int | None = 100) -> list[OutboxRow]:
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if destination is not None:
            where.append("destination = ?")
            params.append(destination)
        sql = f"SELECT {self._columns} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [OutboxRow(*r) for r in self._rows(sql, params)]

    def pending_destinations(self) -> list[str]:
        return [r[0] for r in self._rows(
            "SELECT DISTINCT destination FROM outbox WHERE status = 'pending' ORDER BY destination")]

    def held(self) -> dict[str, int]:
        """Per destination: alerts held behind an earlier version's (outbox_held index)."""
        return dict(self._rows("SELECT destination, COUNT(*) FROM outbox WHERE status = 'held' "
                               "GROUP BY destination"))

    def backlog(self) -> dict[str, tuple[int, float]]:
        """Per destination: (pending messages, created_at of the oldest)."""
        rows = self._rows(
            "SELECT destination, COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending' "
            "GROUP BY destination")
        return {dest: (count, oldest) for dest, count, oldest in rows}

    # --- internals ----------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read; a database that has no outbox table yet (opened read-only, where the
        table is not created) has nothing queued, any other failure is an OutboxError."""
        if self.files is not None:
            self.files.check()
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("no such table: outbox"):
                return []
            raise OutboxError(f"outbox database read failed: {exc}") from None
        except sqlite3.Error as exc:  # "file is not a database", a corrupt page
            raise OutboxError(f"outbox database read failed: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """:func:`gateway.audit.transaction` on the outbox's connection; a database error
        is raised as OutboxError, any other error as it came (NotRequeued, DatabaseLost:
        checked before the transaction and after its commit)."""
        if self.files is not None:
            self.files.check()
        try:
            with transaction(self.conn) as conn:
                yield conn
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox database write failed: {exc}") from None
        if self.files is not None:
            self.files.check()

    @property
    def lost(self) -> str | None:
        """Why the database files can no longer be written (None while they can)."""
        return self.files.lost if self.files is not None else None

    @staticmethod
    def _event(conn: sqlite3.Connection, event: str, row: OutboxRow, **fields: Any) -> None:
        event_op(event, row.source_control_id, row.message_id, utc_now(),
                 destination=row.destination, route=row.route, purpose=row.purpose,
                 outbound_control_id=row.control_id, outbox_id=row.id, **fields)(conn)


def _paged_by_another_version(conn: sqlite3.Connection, row: OutboxRow) -> int | None:
    """The id of a delivered alert of another version of ``row``'s study (an alert) at its
    destination that paged everything ``row`` pages, or None.

    A version held behind ``row`` is released when ``row`` is dead-lettered, and its page
    carries the same results (gateway.held_alerts): re-queueing ``row`` after that page was
    delivered paged the on-call person a second time for them."""
    if row.purpose != "alerts" or row.escalated_from is not None:
        return None
    found = conn.execute("SELECT accession, pages FROM outbox WHERE id = ?",
                         (row.id,)).fetchone()
    if found is None or not found[0]:
        return None
    record = pages_record(found[1])
    wanted = set(record.get("pages", ())) - set(record.get("withdrawn", ()))
    cover = cover_of(conn, accession=found[0], destination=row.destination,
                     patients=record.get("patients", ()), wanted=wanted,
                     message_id=row.message_id)
    return cover.earlier[0][0] if cover is not None and cover.delivered else None
