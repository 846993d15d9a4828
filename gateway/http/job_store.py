"""REST jobs in SQLite, so that a restart loses neither a result nor a job in progress.

One table, ``http_jobs``, which may live in the audit database file (it does
not touch the other tables) or in a file of its own.  Each row holds the job
as RI describes it (id, status, timestamps) plus the request as received (to
echo it with ``expand=jobData`` and to run it again after a restart) and the
result or error once known.

A job id can be reused: a PUT on an existing id replaces the job.  Every
replacement bumps ``revision``, and an analysis only records its outcome when
the revision it started from is still current, so a slow analysis of a
replaced request can never overwrite the newer job.

Results are kept for ``retention`` (RI: 24 hours after creation); expired jobs
are invisible at once and deleted by :meth:`JobStore.purge`.

Writes are operations (``op(conn) -> result``) handed to ``write``, which returns a
Deferred that fires once the op is committed.  In the gateway that is the audit
writer's :meth:`gateway.commit.GroupCommitter.submit`: job writes join the MLLP commits
on the writer thread, and the listener's thread never waits for the database's write
lock.  Without one, the store commits each op on its own connection at once (a file of
its own, tests).  Reads run on the store's own connection, on the caller's thread: in
WAL mode they do not wait for the writer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from gateway.audit import in_transaction
from gateway.database_files import DatabaseFiles

__all__ = ["ACTIVE_STATUSES", "JobRecord", "JobStore", "NoRoom", "Write", "format_time"]

RETENTION = dt.timedelta(hours=24)
ACTIVE_STATUSES = ("notStarted", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS http_jobs (
    id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    api_version TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    expires REAL NOT NULL,
    request TEXT NOT NULL,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS http_jobs_expires ON http_jobs (expires);
CREATE TABLE IF NOT EXISTS http_health (id INTEGER PRIMARY KEY, checked REAL NOT NULL);
"""

_COLUMNS = "id, revision, status, api_version, created, updated, expires, request, result, error"


def format_time(seconds: float) -> str:
    """RI's timestamp form: ISO 8601 in UTC with an explicit offset."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobRecord:
    id: str
    revision: int
    status: str
    api_version: str
    created: float
    updated: float
    expires: float
    request: str
    result: str | None = None
    error: str | None = None

    def to_json(self, *, expand_job_data: bool = False) -> dict[str, Any]:
        """The job as RI returns it (``RadiologyInsightsJob``)."""
        job: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "createdAt": format_time(self.created),
            "updatedAt": format_time(self.updated),
            "expiresAt": format_time(self.expires),
        }
        if expand_job_data:
            job["jobData"] = json.loads(self.request)
        if self.result is not None:
            job["result"] = json.loads(self.result)
        if self.error is not None:
            job["error"] = json.loads(self.error)
        return job


JobOp = Callable[[sqlite3.Connection], Any]
# Commits an op; the Deferred fires with its result once committed (or fails).
Write = Callable[[JobOp], Deferred]

# How long a statement on the store's own connection waits for another connection's lock.
LOCK_WAIT = 5.0


class NoRoom(Exception):
    """A new job refused: ``waiting`` other jobs are unfinished, the most allowed."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} unfinished jobs")
        self.waiting = waiting


class JobStore:
    """The ``http_jobs`` table of one SQLite file."""

    def __init__(self, path: str | Path, *, retention: dt.timedelta = RETENTION,
                 write: Write | None = None, files: DatabaseFiles | None = None) -> None:
        self.path = Path(path)
        # The running gateway's database files: a job read after they were deleted or
        # replaced raises DatabaseLost (its writes fail so in the audit writer), rather than
        # answering from a file no restart opens (gateway.database_files).
        self._files = files
        self.retention = retention.total_seconds()
        _create_private(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=LOCK_WAIT)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._write = write or self._commit_here

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes: each returns a Deferred that fires once committed ----------------

    def put(self, job_id: str, request_json: str, api_version: str, now: float, *,
            room: int | None = None) -> Deferred[tuple[JobRecord, bool]]:
        """Create or replace a job as ``notStarted``: the job and whether it is new.

        With ``room``, fails with :class:`NoRoom` when that many other jobs are unfinished
        (counted in the same transaction; replacing one takes no room)."""
        retention = self.retention

        def op(conn: sqlite3.Connection) -> tuple[JobRecord, bool]:
            if room is not None:
                waiting = _unfinished_count(conn, now, besides=job_id)
                if waiting >= room:
                    raise NoRoom(waiting)
            row = conn.execute(
                "SELECT revision, expires FROM http_jobs WHERE id = ?", (job_id,)).fetchone()
            # An expired job that was not purged yet counts as gone.
            created = row is None or row[1] <= now
            revision = 1 if row is None else row[0] + 1
            record = JobRecord(
                id=job_id, revision=revision, status="notStarted", api_version=api_version,
                created=now, updated=now, expires=now + retention, request=request_json)
            conn.execute(
                f"INSERT OR REPLACE INTO http_jobs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                _row(record))
            return record, created

        return self._write(op)

    def mark_running(self, job_id: str, revision: int, now: float) -> Deferred[bool]:
        """``notStarted`` -> ``running``; False when the job was replaced or is gone."""
        return self._update(job_id, revision, now, status="running")

    def mark_waiting(self, job_id: str, revision: int, now: float) -> Deferred[bool]:
        """``running`` -> ``notStarted`` (a job cut short by a stop, waiting its turn again);
        False when the job was replaced or is gone."""
        return self._update(job_id, revision, now, status="notStarted")

    def succeed(self, job_id: str, revision: int, now: float, result: dict[str, Any]
                ) -> Deferred[bool]:
        return self._update(job_id, revision, now, status="succeeded", result=json.dumps(result))

    def fail(self, job_id: str, revision: int, now: float, error: dict[str, Any]
             ) -> Deferred[bool]:
        return self._update(job_id, revision, now, status="failed", error=json.dumps(error))

    def purge(self, now: float) -> Deferred[int]:
        """Delete every expired job; fires with how many."""
        return self._write(lambda conn: conn.execute(
            "DELETE FROM http_jobs WHERE expires <= ?", (now,)).rowcount)

    def writable(self, now: float) -> Deferred[bool]:
        """Health check: a real write to the database commits (fires False if not)."""
        d = self._write(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO http_health (id, checked) VALUES (1, ?)", (now,)).rowcount)
        return d.addCallbacks(lambda _: True, lambda _: False)

    # -- reads -------------------------------------------------------------------

    def get(self, job_id: str, now: float) -> JobRecord | None:
        if self._files is not None:
            self._files.check()
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM http_jobs WHERE id = ? AND expires > ?",
                (job_id, now)).fetchone()
        return JobRecord(*row) if row else None

    def is_current(self, job_id: str, revision: int) -> bool:
        """Whether ``revision`` is still the job's (it was neither replaced nor purged)."""
        with self._lock:
            row = self._db.execute(
                "SELECT revision FROM http_jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None and row[0] == revision

    def unfinished(self, now: float) -> list[JobRecord]:
        """Jobs accepted but not finished (oldest first), e.g. cut short by a restart."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM http_jobs WHERE status IN (?, ?) AND expires > ? "
                "ORDER BY created, id", (*ACTIVE_STATUSES, now)).fetchall()
        return [JobRecord(*row) for row in rows]

    # -- internals ---------------------------------------------------------------

    def _update(self, job_id: str, revision: int, now: float, *, status: str,
                result: str | None = None, error: str | None = None) -> Deferred[bool]:
        return self._write(lambda conn: conn.execute(
            "UPDATE http_jobs SET status = ?, updated = ?, result = ?, error = ? "
            "WHERE id = ? AND revision = ?",
            (status, now, result, error, job_id, revision)).rowcount == 1)

    def _commit_here(self, op: JobOp) -> Deferred:
        """``op`` committed on the store's own connection, now (no writer given)."""
        return maybeDeferred(self._transaction, op)

    def _transaction(self, op: JobOp) -> Any:
        with self._lock:
            return in_transaction(self._db, op)


def _unfinished_count(conn: sqlite3.Connection, now: float, *, besides: str | None) -> int:
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM http_jobs WHERE status IN (?, ?) AND expires > ? "
        "AND id IS NOT ?", (*ACTIVE_STATUSES, now, besides)).fetchone()
    return int(count)


def _row(record: JobRecord) -> tuple[Any, ...]:
    return (record.id, record.revision, record.status, record.api_version, record.created,
            record.updated, record.expires, record.request, record.result, record.error)


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds report text)."""
    if path.exists() or str(path) == ":memory:":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
