"""The audit log: every inbound message, every step taken for it, every inference.

One SQLite database (WAL mode) created with owner-only permissions: the file is
``0600`` and, when the gateway creates its directory, the directory is ``0700``
(the database holds PHI).  Tables of other areas (the outbox) live in the same file.

Schema (``PRAGMA user_version = 1``)::

    messages                    one row per inbound message, committed before its ACK
      id              INTEGER PRIMARY KEY
      received_at     TEXT      UTC, ISO 8601 with milliseconds ("2024-01-15T10:00:00.123Z")
      conn_id         INTEGER   listener connection number
      peer            TEXT      remote address ("127.0.0.1:51234")
      control_id      TEXT      MSH-10 (NULL when the header is unreadable)
      sender          TEXT      MSH-3^MSH-4 as one string
      sending_application TEXT  MSH-3
      sending_facility    TEXT  MSH-4
      receiving_application TEXT MSH-5
      receiving_facility  TEXT  MSH-6
      message_type    TEXT      MSH-9 type^event ("ORU^R01")
      version         TEXT      MSH-12
      processing_id   TEXT      MSH-11
      charset         TEXT      Python codec the message was decoded with
      size            INTEGER   bytes in the frame
      raw             BLOB      the frame payload exactly as received
      ack_code        TEXT      AA, AE, AR (CA/CE/CR in enhanced mode), NULL if none sent
                                (or, with ack_after = "analysis", not sent yet)
      ack_control_id  TEXT      MSH-10 of our ACK
      ack_payload     BLOB      the ACK exactly as sent (re-sent for a duplicate)
      error_code      TEXT      HL7 table 0357 code of the ERR segment, if any
      error_text      TEXT      the ERR text (describes the fault, never quotes content)
      status          TEXT      received | analysed | skipped | failed | rejected | replay
      reports         INTEGER   OBR groups mapped to RI requests
      analysed_at     TEXT      when analysis finished (analysed/skipped/failed)
    UNIQUE (sending_application, sending_facility, control_id) WHERE ack_code IN ('AA','CA')
        -- duplicate detection: only accepted messages count, so a corrected resend of a
        -- rejected message is processed.

    events                      the trail of steps, keyed by the inbound message
      id, time, event, control_id, message_id (-> messages.id), fields (JSON object)
      events: received, rejected, duplicate, resumed, analysed, analysis_failed, skipped,
              content_error (mapped after the ACK), acked (ACK after analysis),
              replay_requested (ri-gateway replay), replayed (taken up by the gateway),
              plus those of other areas (delivered, delivery_failed, dead_lettered, ...)

    inferences                  one row per RI inference produced for a message
      id, message_id (-> messages.id), obr_index (1-based OBR group), accession (OBR-3/18),
      kind (RI inference kind), json (the inference as RI JSON)

Status life cycle: ``received`` (ACKed, analysis pending: resumed at restart) ->
``analysed`` | ``skipped`` (nothing to analyse) | ``failed``; ``rejected`` for AE/AR.
``ri-gateway replay`` takes an analysed, skipped or failed message to ``replay``, and the
gateway's next analysis of it back to one of those three (``gateway.replay``).

Writes are *operations* (``op(conn) -> result``) run by :meth:`AuditLog.run_batch`,
several per transaction, each in its own savepoint so one failure does not undo the
others.  :class:`gateway.commit.GroupCommitter` batches them off the reactor thread.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import operator
import os
import pathlib
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, TypeVar

import sqlite_utils

from .database_files import DatabaseFiles, file_identity
from .errors import AuditError

__all__ = [
    "AuditLog", "Duplicate", "Op", "ReceivedMessage", "StoredMessage", "ack_op", "all_of",
    "chunks", "duplicate_op", "event_op", "has_table", "in_transaction", "inferences_cleared_op",
    "inferences_op", "received_op", "sqlite_uri", "status_op", "transaction", "utc_now",
]

SCHEMA_VERSION = 1
# The WAL is checkpointed by the connection that commits (SQLite's autocheckpoint, once
# the log holds 1000 pages, about 4 MB).  Right after a commit is the one moment a
# checkpoint can catch up with the log while messages keep arriving, and only a checkpoint
# that catches up lets the log start again from its beginning: checkpoints run on their
# own connection, on a timer, fell behind under steady load and the WAL grew without bound
# (840 MB after 12 s at 3,000 messages/s).  A checkpoint costs the batch whose commit
# triggers it a few milliseconds.  When a long read has kept the log from restarting, the
# file is cut back to this size once it does.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]


def utc_now(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is not timezone.utc:
        now = now.astimezone(timezone.utc)
    # Every inbound message is stamped: strftime runs once per second, not per message.
    second = (now.year, now.month, now.day, now.hour, now.minute, now.second)
    cached_second, prefix = _last_second
    if second != cached_second:
        prefix = now.strftime("%Y-%m-%dT%H:%M:%S.")
        _remember_second(second, prefix)
    return f"{prefix}{now.microsecond // 1000:03d}Z"


_last_second: tuple[tuple[int, ...], str] = ((), "")


def _remember_second(second: tuple[int, ...], prefix: str) -> None:
    global _last_second
    _last_second = (second, prefix)  # one assignment: readers on other threads see a pair


@dataclass(frozen=True)
class ReceivedMessage:
    """What is stored for an inbound message (header fields None when unreadable)."""

    raw: bytes
    received_at: str
    status: str
    ack_code: str | None
    ack_payload: bytes | None
    ack_control_id: str | None = None
    conn_id: int | None = None
    peer: str | None = None
    control_id: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    receiving_application: str | None = None
    receiving_facility: str | None = None
    message_type: str | None = None
    version: str | None = None
    processing_id: str | None = None
    charset: str | None = None
    error_code: str | None = None
    error_text: str | None = None
    reports: int | None = None

    @property
    def sender(self) -> str | None:
        if self.sending_application is None and self.sending_facility is None:
            return None
        return f"{self.sending_application or ''}^{self.sending_facility or ''}"


_RECEIVED_FIELDS = fields(ReceivedMessage)


@dataclass(frozen=True)
class StoredMessage:
    id: int
    control_id: str | None
    status: str
    ack_code: str | None
    ack_payload: bytes | None
    raw: bytes
    charset: str | None


# A messages row as a StoredMessage (its fields in order); callers add the WHERE clause.
_SELECT_STORED = "SELECT id, control_id, status, ack_code, ack_payload, raw, charset FROM messages"


@dataclass(frozen=True)
class Duplicate:
    """What :func:`received_op` returns instead of an id when the message is a duplicate:
    the accepted message already stored with the same MSH-3, MSH-4 and MSH-10."""

    original_id: int
    ack_code: str | None
    ack_payload: bytes | None
    same_content: bool
    # The original's messages.status when found (not part of what makes two answers equal).
    status: str | None = field(default=None, compare=False)


def received_op(msg: ReceivedMessage, *, duplicates: bool = True,
                **event_fields: Any) -> Op[int | Duplicate]:
    """Insert the message and its ``received`` (or ``rejected``) event; returns the id.

    Duplicate detection happens here, on the writer thread, rather than with a query
    per message on the reactor: an accepted message with the key of one already
    accepted fails the ``messages_accepted_key`` index, and a rejected one is looked up
    (rare; not with ``duplicates=False``: a rejected frame that holds more than the
    message its key names).  A duplicate is not stored; a ``duplicate`` event is, and
    the op returns :class:`Duplicate` with the original ACK.
    """
    return _ReceivedOp(msg, event_fields, duplicates)


# Every column of a messages row, in the order of _ReceivedOp.values, then the id (NULL:
# SQLite picks it; a bulk insert gives it, see _insert_accepted).
_MESSAGE_COLUMNS = (*(f.name for f in _RECEIVED_FIELDS), "sender", "size", "id")
_message_fields = operator.attrgetter(*(f.name for f in _RECEIVED_FIELDS))
_INSERT_MESSAGE = (f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "
                   f"VALUES ({', '.join('?' for _ in _MESSAGE_COLUMNS)})")
_INSERT_EVENT = ("INSERT INTO events (time, event, control_id, message_id, fields) "
                 "VALUES (?, ?, ?, ?, ?)")


class _ReceivedOp:
    """The op of :func:`received_op`.  Besides running on its own (in a savepoint), a
    batch made only of accepted messages is inserted in bulk by :meth:`AuditLog.run_batch`
    (the ACK path's common case): see :func:`_insert_accepted`."""

    __slots__ = ("msg", "values", "event_fields", "accepted", "duplicates")

    def __init__(self, msg: ReceivedMessage, event_fields: dict[str, Any],
                 duplicates: bool = True) -> None:
        self.msg = msg
        # Not dataclasses.asdict(): it deep-copies the raw bytes, which costs more than
        # the insert.
        self.values = (*_message_fields(msg), msg.sender, len(msg.raw))
        self.event_fields = event_fields
        self.accepted = msg.ack_code in _ACCEPTED_CODES
        self.duplicates = duplicates

    def __call__(self, conn: sqlite3.Connection) -> int | Duplicate:
        msg = self.msg
        if msg.control_id is not None and not self.accepted and self.duplicates:
            if msg.ack_code is None and msg.status == "received":
                # Its ACK waits for the analysis (ack_after = "analysis"): an original an
                # earlier run analysed but stopped before answering was accepted all the same.
                original = _accepted_or_unanswered_original(conn, msg)
            else:
                original = _accepted_original(conn, msg)
            if original is not None:
                return self._duplicate_of(conn, original)
        try:
            cur = conn.execute(_INSERT_MESSAGE, (*self.values, None))
        except sqlite3.IntegrityError:
            original = _accepted_original(conn, msg) if self.accepted else None
            if original is None:
                raise
            return self._duplicate_of(conn, original)
        message_id = int(cur.lastrowid)  # type: ignore[arg-type]
        conn.execute(_INSERT_EVENT, self.event_row(message_id))
        return message_id

    def _duplicate_of(self, conn: sqlite3.Connection, original: StoredMessage) -> Duplicate:
        msg = self.msg
        return _duplicate(conn, original, msg.raw, msg.received_at, msg.control_id, msg.conn_id,
                          msg.peer)

    def event_row(self, message_id: int) -> tuple[Any, ...]:
        msg = self.msg
        fields = {"ack_code": msg.ack_code, "conn_id": msg.conn_id, "peer": msg.peer,
                  "size": len(msg.raw), **self.event_fields}
        if msg.error_code:
            fields["error_code"] = msg.error_code
        event = "rejected" if msg.status == "rejected" else "received"
        return _event_row(msg.received_at, event, msg.control_id, message_id, fields)


class _DuplicateInBatch(Exception):
    """A bulk insert of accepted messages met one already stored (or twice in the batch)."""


def _insert_accepted(conn: sqlite3.Connection, ops: Sequence[_ReceivedOp]) -> list[int]:
    """Insert accepted messages and their events with two statements (inside the caller's
    transaction); raises :class:`_DuplicateInBatch` if any of them is a duplicate.

    The ids are given explicitly, from the largest in the table: inside the write
    transaction nobody else can insert, so they are the ids SQLite would have chosen.
    """
    (largest,) = conn.execute("SELECT max(id) FROM messages").fetchone()
    first = (largest or 0) + 1
    ids = range(first, first + len(ops))
    # One multi-row INSERT per table rather than executemany: each statement step lets
    # go of the GIL and has to win it back from the reactor thread, so fewer steps
    # means the batch is written sooner.
    for start in range(0, len(ops), _ROWS_PER_INSERT):
        chunk = list(zip(ops[start:start + _ROWS_PER_INSERT], ids[start:start + _ROWS_PER_INSERT]))
        try:
            conn.execute(_multi_row(_INSERT_MESSAGE, len(chunk)),
                         [value for op, message_id in chunk for value in (*op.values, message_id)])
        except sqlite3.IntegrityError:
            raise _DuplicateInBatch from None
        conn.execute(_multi_row(_INSERT_EVENT, len(chunk)),
                     [value for op, message_id in chunk for value in op.event_row(message_id)])
    return list(ids)


# Rows per multi-row INSERT: 32 rows of messages stay under 999 parameters, the smallest
# limit SQLite builds have had.
_ROWS_PER_INSERT = 32


@functools.lru_cache(maxsize=64)
def _multi_row(insert: str, rows: int) -> str:
    """``insert`` (``INSERT ... VALUES (?, ...)``) extended to ``rows`` rows."""
    head, _, values = insert.partition(" VALUES ")
    return f"{head} VALUES {', '.join([values] * rows)}"


_ACCEPTED_CODES = ("AA", "CA")  # the codes of the messages_accepted_key index


def _accepted_original(conn: sqlite3.Connection, msg: ReceivedMessage) -> StoredMessage | None:
    return _find_accepted(conn, msg.sending_application, msg.sending_facility,
                          msg.control_id or "")


def _accepted_or_unanswered_original(conn: sqlite3.Connection, msg: ReceivedMessage
                                     ) -> StoredMessage | None:
    """The accepted message with ``msg``'s key, else the first one that was never answered:
    with ``ack_after = "analysis"`` the gateway stopped before the ACK (the sender saw none
    and sends it again), or the ACK could not be recorded.  Analysed (or skipped) or not
    yet (``received``: the receiver has the resend wait for its analysis).  One query: it
    runs for every such message."""
    row = conn.execute(
        f"{_SELECT_STORED} "
        "WHERE sending_application IS ? AND sending_facility IS ? AND control_id = ? "
        "AND (ack_code IN ('AA', 'CA') "
        "OR ack_code IS NULL AND status IN ('analysed', 'skipped', 'replay', 'received')) "
        "ORDER BY ack_code IS NULL, id LIMIT 1",
        (msg.sending_application, msg.sending_facility, msg.control_id or "")).fetchone()
    return StoredMessage(*row) if row else None


def _duplicate(conn: sqlite3.Connection, original: StoredMessage, raw: bytes, received_at: str,
               control_id: str | None, conn_id: int | None, peer: str | None) -> Duplicate:
    """Record the ``duplicate`` event of ``raw`` (received at ``received_at`` on ``conn_id``):
    it points at the original, so the event views show the original's sender, type and ACK."""
    same = original.raw == raw
    _insert_event(conn, received_at, "duplicate", control_id, original.id,
                  {"conn_id": conn_id, "peer": peer, "size": len(raw),
                   "same_content": same, "ack_code": original.ack_code})
    return Duplicate(original.id, original.ack_code, original.ack_payload, same, original.status)


def duplicate_op(original_id: int, raw: bytes, received_at: str, control_id: str | None,
                 conn_id: int | None, peer: str | None) -> Op[Duplicate]:
    """The ``duplicate`` event of a message that arrived while its original (``original_id``)
    was still being committed or analysed; returns :class:`Duplicate`.

    The event is the one :func:`received_op` records for a duplicate arriving later: the
    original is read back as stored (its ACK code as it is now, its raw bytes to compare).
    It is looked up by id rather than by key because, with ``ack_after = "analysis"``, the
    original may have been answered AR and so is not in the accepted-key index.
    """
    def op(conn: sqlite3.Connection) -> Duplicate:
        row = conn.execute(f"{_SELECT_STORED} WHERE id = ?", (original_id,)).fetchone()
        if row is None:
            raise AuditError(f"message {original_id} is not stored")
        return _duplicate(conn, StoredMessage(*row), raw, received_at, control_id, conn_id, peer)

    return op


def _find_accepted(conn: sqlite3.Connection, sending_application: str | None,
                   sending_facility: str | None, control_id: str) -> StoredMessage | None:
    row = conn.execute(
        f"{_SELECT_STORED} "
        "WHERE sending_application IS ? AND sending_facility IS ? AND control_id = ? "
        "AND ack_code IN ('AA', 'CA')",
        (sending_application, sending_facility, control_id)).fetchone()
    return StoredMessage(*row) if row else None


# Values per "IN (?, ...)" list: under SQLite's bound-parameter limit (999 in older builds).
PARAMETERS_PER_QUERY = 500


def chunks(items: Sequence[T], size: int = PARAMETERS_PER_QUERY) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the database of ``conn`` has table ``name`` (the outbox exists only once
    outbound was configured; an older or a foreign file may lack any)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def all_of(ops: Sequence[Op[Any]]) -> Op[None]:
    """One op (one savepoint) made of several: all of them commit, or none."""
    def op(conn: sqlite3.Connection) -> None:
        for sub in ops:
            sub(conn)
    return op


def event_op(event: str, control_id: str | None, message_id: int | None = None,
             time: str | None = None, **fields: Any) -> Op[int]:
    def op(conn: sqlite3.Connection) -> int:
        return _insert_event(conn, time or utc_now(), event, control_id, message_id, fields)

    return op


def status_op(message_id: int, status: str, *, reports: int | None = None) -> Op[None]:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE messages SET status = ?, reports = COALESCE(?, reports), analysed_at = ? "
            "WHERE id = ?", (status, reports, utc_now(), message_id))

    return op


def ack_op(message_id: int, ack_code: str, ack_payload: bytes, ack_control_id: str,
           error_code: str | None = None, error_text: str | None = None) -> Op[None]:
    """Record the ACK of a message answered after analysis (``ack_after = "analysis"``)."""
    def op(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE messages SET ack_code = ?, ack_payload = ?, ack_control_id = ?, "
            "error_code = COALESCE(?, error_code), error_text = COALESCE(?, error_text) "
            "WHERE id = ?",
            (ack_code, ack_payload, ack_control_id, error_code, error_text, message_id))
        row = conn.execute("SELECT control_id FROM messages WHERE id = ?", (message_id,)).fetchone()
        _insert_event(conn, utc_now(), "acked", row[0] if row else None, message_id,
                      {"ack_code": ack_code, "error_code": error_code})

    return op


def inferences_op(message_id: int, obr_index: int, accession: str | None,
                  inferences: Sequence[dict[str, Any] | tuple[str, str]]) -> Op[int]:
    """Store RI inferences: JSON objects (with their ``kind``) or ``(kind, json_text)``
    pairs already rendered; returns how many."""
    rows = [(message_id, obr_index, accession, *inf) if isinstance(inf, tuple)
            else (message_id, obr_index, accession, inf.get("kind"), json.dumps(inf))
            for inf in inferences]

    def op(conn: sqlite3.Connection) -> int:
        conn.executemany(
            "INSERT INTO inferences (message_id, obr_index, accession, kind, json) "
            "VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    return op


def inferences_cleared_op(message_id: int) -> Op[int]:
    """Delete a message's inferences (before a replay stores new ones); returns how many."""
    def op(conn: sqlite3.Connection) -> int:
        return conn.execute("DELETE FROM inferences WHERE message_id = ?", (message_id,)).rowcount

    return op


def _in_savepoint(conn: sqlite3.Connection, op: Op[Any]) -> Any:
    """``op``'s result, or the exception it raised with its writes undone (the others go on)."""
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except Exception as exc:  # noqa: BLE001 - reported per op, others go on
        conn.execute("ROLLBACK TO op")
        result = exc
    conn.execute("RELEASE op")
    return result


def _insert_event(conn: sqlite3.Connection, time: str, event: str, control_id: str | None,
                  message_id: int | None, fields: dict[str, Any]) -> int:
    cur = conn.execute(_INSERT_EVENT, _event_row(time, event, control_id, message_id, fields))
    return int(cur.lastrowid)  # type: ignore[arg-type]


def _event_row(time: str, event: str, control_id: str | None, message_id: int | None,
               fields: dict[str, Any]) -> tuple[Any, ...]:
    clean = {k: v for k, v in fields.items() if v is not None}
    return (time, event, control_id, message_id, json.dumps(clean, default=str))


def sqlite_uri(path: str, mode: str) -> str:
    """The SQLite URI that opens the file ``path`` in ``mode`` (``ro``: read only, ``rw``:
    an existing file, never created).  Percent-encoded: a ``?``, ``#`` or ``%`` in the file
    name would otherwise start the URI's query, fragment or an escape, and SQLite would
    open (and create) another file, without the mode."""
    return f"{pathlib.Path(os.path.abspath(path)).as_uri()}?mode={mode}"


def _prepare_path(path: str) -> None:
    """Create the file (and its directory) owner-only, or check that the existing one can
    become an audit database; an unusable path is an :class:`AuditError` naming it."""
    _refuse_foreign(path)
    try:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
            os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
        if not os.path.exists(path):
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        # SQLite gives the -wal and -shm files the permissions of the database file.
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            os.chmod(path, 0o600)
    except OSError as exc:  # a directory that is a file, or not writable; a read-only disk
        where = f" ({exc.filename})" if exc.filename and exc.filename != path else ""
        raise AuditError(f"cannot create audit database {path}: {exc.strerror}{where}") from None


def _require_file(path: str) -> None:
    """An existing database file, or an :class:`AuditError` that says why not: a file
    the user may not reach (another user's 0700 directory: an admin running the CLI as
    the wrong user) is not "no audit database"."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise AuditError(f"no audit database at {path}") from None
    except OSError as exc:
        raise AuditError(f"cannot open audit database {path}: {exc.strerror}") from None


def _refuse_foreign(path: str) -> None:
    """Refuse another program's database before anything is changed in it.

    Its tables would otherwise get ours beside them (and its journal mode, permissions
    and contents the gateway's). An empty file, or one without tables, is a new log.
    """
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    conn = sqlite3.connect(sqlite_uri(path, "ro"), uri=True)
    try:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                              ).fetchone()[0]
        if tables and not has_table(conn, "messages"):
            raise AuditError(f"{path} is not a ri-gateway audit database (it holds another "
                             "program's tables); give [storage] db a new file")
    except sqlite3.Error as exc:
        raise AuditError(f"cannot open audit database {path}: {exc}") from None
    finally:
        conn.close()


def _lock_single_writer(path: str) -> int:
    """An exclusive ``flock`` on the database file, held while a gateway runs on it.

    Two gateways on one file would both resume the same backlog, both take up the same
    replays and both deliver the same outbox messages (pages sent twice). ``flock``
    locks are apart from the POSIX locks SQLite takes on the file (Linux, local disks),
    and the kernel drops them when the process ends, however it ends. Taken before this
    process opens the file with SQLite, so that closing the descriptor of a refused lock
    drops no lock of SQLite's.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise AuditError(f"audit database {path} is in use by another running gateway "
                             "(one gateway per audit database)") from None
        raise AuditError(f"cannot lock audit database {path}: {exc.strerror}") from None
    return fd


_EVENT_VIEW = """
SELECT e.id AS id, e.time AS time, e.event AS event, e.control_id AS control_id,
       m.message_type AS message_type, m.sender AS sender, m.ack_code AS ack_code,
       e.message_id AS message_id, e.fields AS fields
FROM events e LEFT JOIN messages m ON m.id = e.message_id
"""


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``) around the ``with`` body: committed at
    its end, or rolled back if anything escapes it (the error is raised as it came).

    Rolled back only while one is open: SQLite ends the transaction itself on some errors
    (a full disk), and a ROLLBACK then fails with "no transaction is active", an error that
    took the place of the one saying what went wrong."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def in_transaction(conn: sqlite3.Connection, write: Callable[[sqlite3.Connection], T]) -> T:
    """``write(conn)`` in one :func:`transaction`."""
    with transaction(conn):
        return write(conn)


class AuditLog:
    """The audit database.

    By default the file (and its directory) is created when missing and the schema brought
    up to date: only the gateway (``serve``) opens it so.  ``readonly=True`` opens an
    existing audit database for queries only, ``create=False`` for queries and marks
    (``ri-gateway replay``); either refuses a missing file, an empty one and a database
    that is not an audit log, and leaves the file as it found it.
    """

    def __init__(self, path: str, *, synchronous: str = "FULL", readonly: bool = False,
                 create: bool = True, single_writer: bool = False) -> None:
        self.path = path
        existing = readonly or not create
        conn: sqlite3.Connection | None = None
        # single_writer (the gateway's own writer): refused while another gateway holds it.
        self._lock_fd: int | None = None
        try:
            if existing:
                _require_file(path)
                # URI modes that never create the file (a plain connect would, and the
                # schema would then be created in whatever file the path named).
                conn = (sqlite3.connect(sqlite_uri(path, "ro"), uri=True, check_same_thread=False)
                        if readonly else
                        sqlite3.connect(sqlite_uri(path, "rw"), uri=True, isolation_level=None,
                                        check_same_thread=False))
            else:
                _prepare_path(path)
                if single_writer:  # before this process opens any SQLite connection to it
                    self._lock_fd = _lock_single_writer(path)
                # isolation_level=None: transactions are explicit (BEGIN/COMMIT in run_batch).
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            self.db = sqlite_utils.Database(conn)
            if existing:
                # Reading the schema reads the file's header: a file that is not SQLite
                # fails here, and one that is SQLite but not an audit log (an empty
                # file, another program's database) is named as such rather than
                # failing later with "no such table".
                if not has_table(conn, "events"):
                    raise AuditError(f"{path} is not a ri-gateway audit database")
            else:
                self.db.enable_wal()
            if not readonly:  # settings of this connection, not of the file
                conn.execute(f"PRAGMA synchronous = {synchronous}")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            if not existing:
                self._create_schema()
            # What the path named when opened: a follower (``audit tail -f``) keeps reading
            # the file it opened, so without this a database deleted or replaced under it
            # would be followed forever in silence.
            self._identity = file_identity(path)
        except BaseException as exc:
            if conn is not None:
                conn.close()  # a refused open keeps no connection
            self._unlock()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise AuditError(f"cannot open audit database {path}: {exc}") from None
            raise
        self.conn = conn
        # The gateway's writer (single_writer) checks after each commit that the files it
        # wrote still are the database at ``path``; the outbox and the REST job store of
        # the same gateway check the same files (gateway.database_files).
        self.files: DatabaseFiles | None = (
            DatabaseFiles(path, self._lock_fd) if self._lock_fd is not None else None)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        """Close; a database error raised inside the ``with`` block (the readers, and
        the queries other modules run on :attr:`conn`) becomes :class:`AuditError`
        naming the file, so no command has to catch ``sqlite3.Error`` itself."""
        self.close()
        if isinstance(exc, sqlite3.Error):
            raise AuditError(f"audit database {self.path} failed: {exc}") from None

    def check_same_file(self) -> None:
        """Raise :class:`AuditError` if :attr:`path` no longer names the opened file; a
        ``stat`` that cannot tell (an error other than "no such file") raises nothing,
        the next check tries again."""
        try:
            now = file_identity(self.path)
        except OSError:
            return
        if now is None:
            raise AuditError(f"audit database {self.path} was deleted")
        if now != self._identity:
            raise AuditError(f"audit database {self.path} was replaced by another file")

    def _create_schema(self) -> None:
        db = self.db
        db["messages"].create({
            "id": int, "received_at": str, "conn_id": int, "peer": str, "control_id": str,
            "sender": str, "sending_application": str, "sending_facility": str,
            "receiving_application": str, "receiving_facility": str, "message_type": str,
            "version": str, "processing_id": str, "charset": str, "size": int, "raw": bytes,
            "ack_code": str, "ack_control_id": str, "ack_payload": bytes, "error_code": str,
            "error_text": str, "status": str, "reports": int, "analysed_at": str,
        }, pk="id", if_not_exists=True)
        db["events"].create({
            "id": int, "time": str, "event": str, "control_id": str, "message_id": int,
            "fields": str,
        }, pk="id", foreign_keys=[("message_id", "messages", "id")], if_not_exists=True)
        db["inferences"].create({
            "id": int, "message_id": int, "obr_index": int, "accession": str, "kind": str,
            "json": str,
        }, pk="id", foreign_keys=[("message_id", "messages", "id")], if_not_exists=True)
        db["messages"].create_index(["control_id"], if_not_exists=True)
        db["messages"].create_index(["status"], if_not_exists=True)
        db["events"].create_index(["control_id"], if_not_exists=True)
        db["events"].create_index(["message_id"], if_not_exists=True)
        db["inferences"].create_index(["message_id"], if_not_exists=True)
        # The reports read one kind over a window (critical results, recommendations,
        # quality measures): without it each read every inference ever stored. Written by
        # the analysis, never on the ACK path.
        db["inferences"].create_index(["kind", "message_id"], if_not_exists=True)
        # A partial unique index, which sqlite-utils' create_index cannot express.
        db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS messages_accepted_key ON messages "
            "(sending_application, sending_facility, control_id) "
            "WHERE ack_code IN ('AA', 'CA')")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- writing -------------------------------------------------------------------------

    def run_batch(self, ops: Sequence[Op[Any]]) -> list[Any]:
        """Run ``ops`` in one transaction; each result, or the exception an op raised.

        Each op runs in a savepoint, so a failing op leaves the others committed.
        Raises :class:`AuditError` when the transaction itself cannot be committed.
        """
        if len(ops) > 1 and all(type(op) is _ReceivedOp and op.accepted for op in ops):
            try:  # the ACK path's common batch: two bulk inserts
                return self._transaction(lambda conn: _insert_accepted(conn, ops))  # type: ignore[arg-type]
            except _DuplicateInBatch:
                pass  # a duplicate among them: op by op below, which finds it
        return self._transaction(lambda conn: [_in_savepoint(conn, op) for op in ops])

    def _transaction(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """``write(conn)`` in one write transaction (:func:`in_transaction`); a database
        error is raised as :class:`AuditError`, and a commit into files that are no longer
        the database at :attr:`path` as :class:`DatabaseLost` (the gateway's writer only:
        checked after the commit, so a commit it lets through was in place when it was
        done; once failed, it fails every later write)."""
        if self.files is not None:
            self.files.raise_if_lost()
        try:
            result = in_transaction(self.conn, write)
        except sqlite3.Error as exc:
            raise AuditError(f"audit database {self.path} write failed: {exc}") from None
        if self.files is not None:
            self.files.check()
        return result

    def run(self, op: Op[T]) -> T:
        """Run one op in its own transaction and return its result (or raise its error)."""
        (result,) = self.run_batch([op])
        if isinstance(result, BaseException):
            raise AuditError(f"audit database {self.path} write failed: {result}")
        return result  # type: ignore[no-any-return]

    def record_received(self, msg: ReceivedMessage, **event_fields: Any) -> int:
        """Commit an inbound message (and its event) now; returns its id."""
        return self.run(received_op(msg, **event_fields))

    def record_event(self, event: str, control_id: str | None, message_id: int | None = None,
                     **fields: Any) -> int:
        return self.run(event_op(event, control_id, message_id, **fields))

    # --- reading -------------------------------------------------------------------------

    def find_accepted(self, sending_application: str | None, sending_facility: str | None,
                      control_id: str) -> StoredMessage | None:
        """The accepted message with this MSH-3/MSH-4/MSH-10, if one is stored."""
        return _find_accepted(self.conn, sending_application, sending_facility, control_id)

    def pending_analysis(self) -> list[StoredMessage]:
        """Accepted messages whose analysis never finished (oldest first)."""
        return self.with_status("received")

    def stored(self, message_id: int) -> StoredMessage | None:
        """The stored message ``message_id``, or None."""
        row = self.conn.execute(f"{_SELECT_STORED} WHERE id = ?", (message_id,)).fetchone()
        return StoredMessage(*row) if row else None

    def with_status(self, status: str, *, limit: int | None = None) -> list[StoredMessage]:
        """Stored messages with this status, oldest first (the first ``limit``)."""
        rows = self.conn.execute(
            f"{_SELECT_STORED} WHERE status = ? ORDER BY id LIMIT ?",
            (status, -1 if limit is None else limit)).fetchall()
        return [StoredMessage(*row) for row in rows]

    def events(self, *, after_id: int = 0, last: int | None = None,
               control_id: str | None = None) -> list[dict[str, Any]]:
        """Events as dicts (oldest first): all after ``after_id``, or the ``last`` N."""
        where, params = ["e.id > ?"], [after_id]
        if control_id is not None:
            where.append("e.control_id = ?")
            params.append(control_id)  # type: ignore[arg-type]
        sql = f"{_EVENT_VIEW} WHERE {' AND '.join(where)} ORDER BY e.id"
        if last is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT {int(last)}) ORDER BY id"
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            item = dict(zip(names, row))
            item["fields"] = json.loads(item["fields"] or "{}")
            out.append(item)
        return out

    def messages_for(self, control_id: str) -> list[dict[str, Any]]:
        """Stored messages with this MSH-10 (without the raw bytes), oldest first."""
        cur = self.conn.execute(
            "SELECT id, received_at, control_id, sender, message_type, version, charset, size, "
            "ack_code, ack_control_id, error_code, error_text, status, reports, analysed_at "
            "FROM messages WHERE control_id = ? ORDER BY id", (control_id,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def inferences_for(self, message_id: int) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT obr_index, accession, kind, json FROM inferences WHERE message_id = ? "
            "ORDER BY id", (message_id,))
        return [{"obr_index": r[0], "accession": r[1], "kind": r[2], "inference": json.loads(r[3])}
                for r in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()
        if self.files is not None:
            self.files.close()
        self._unlock()

    def _unlock(self) -> None:
        # Unlocked, not closed: closing any descriptor of the file would drop the POSIX
        # locks this process's other connections to it (the outbox's, the REST jobs')
        # may still hold while they stop. The descriptor goes with the process.
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._lock_fd = None
