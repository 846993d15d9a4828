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

All methods are meant to be called from one thread (the reactor); the
connection is guarded by a lock anyway so a health check from elsewhere is safe.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ACTIVE_STATUSES", "JobRecord", "JobStore", "format_time"]

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


class JobStore:
    """The ``http_jobs`` table of one SQLite file."""

    def __init__(self, path: str | Path, *, retention: dt.timedelta = RETENTION) -> None:
        self.path = Path(path)
        self.retention = retention.total_seconds()
        _create_private(self.path)
        self._lock = threading.Lock()
        # No busy timeout of SQLite's: its handler sleeps in steps of up to 100 ms while the
        # audit writer holds the lock for a millisecond or two, and these writes run on the
        # reactor's thread. _when_unlocked looks again every fraction of a millisecond.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=0)
        _when_unlocked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        _when_unlocked(lambda: self._db.executescript(_SCHEMA))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes ------------------------------------------------------------------

    def put(self, job_id: str, request_json: str, api_version: str, now: float
            ) -> tuple[JobRecord, bool]:
        """Create or replace a job as ``notStarted``; returns it and whether it is new."""
        with self._lock, self._transaction():
            row = self._run(
                "SELECT revision, expires FROM http_jobs WHERE id = ?", (job_id,)).fetchone()
            # An expired job that was not purged yet counts as gone.
            created = row is None or row[1] <= now
            revision = 1 if row is None else row[0] + 1
            record = JobRecord(
                id=job_id, revision=revision, status="notStarted", api_version=api_version,
                created=now, updated=now, expires=now + self.retention, request=request_json)
            self._run(
                f"INSERT OR REPLACE INTO http_jobs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                _row(record))
        return record, created

    def mark_running(self, job_id: str, revision: int, now: float) -> bool:
        """``notStarted`` -> ``running``; False when the job was replaced or is gone."""
        return self._update(job_id, revision, now, status="running")

    def mark_waiting(self, job_id: str, revision: int, now: float) -> bool:
        """``running`` -> ``notStarted`` (a job cut short by a stop, waiting its turn again);
        False when the job was replaced or is gone."""
        return self._update(job_id, revision, now, status="notStarted")

    def succeed(self, job_id: str, revision: int, now: float, result: dict[str, Any]) -> bool:
        return self._update(job_id, revision, now, status="succeeded", result=json.dumps(result))

    def fail(self, job_id: str, revision: int, now: float, error: dict[str, Any]) -> bool:
        return self._update(job_id, revision, now, status="failed", error=json.dumps(error))

    def purge(self, now: float) -> int:
        """Delete every expired job; returns how many."""
        with self._lock:
            cursor = self._run("DELETE FROM http_jobs WHERE expires <= ?", (now,))
        return cursor.rowcount

    def writable(self, now: float) -> bool:
        """Health check: a real write to the database succeeds."""
        try:
            with self._lock:
                self._run("INSERT OR REPLACE INTO http_health (id, checked) VALUES (1, ?)",
                          (now,))
        except sqlite3.Error:
            return False
        return True

    # -- reads -------------------------------------------------------------------

    def get(self, job_id: str, now: float) -> JobRecord | None:
        with self._lock:
            row = self._run(
                f"SELECT {_COLUMNS} FROM http_jobs WHERE id = ? AND expires > ?",
                (job_id, now)).fetchone()
        return JobRecord(*row) if row else None

    def unfinished_count(self, now: float, *, besides: str | None = None) -> int:
        """How many jobs are accepted but not finished (leaving out the job ``besides``)."""
        with self._lock:
            (count,) = self._run(
                "SELECT COUNT(*) FROM http_jobs WHERE status IN (?, ?) AND expires > ? "
                "AND id IS NOT ?", (*ACTIVE_STATUSES, now, besides)).fetchone()
        return int(count)

    def unfinished(self, now: float) -> list[JobRecord]:
        """Jobs accepted but not finished (oldest first), e.g. cut short by a restart."""
        with self._lock:
            rows = self._run(
                f"SELECT {_COLUMNS} FROM http_jobs WHERE status IN (?, ?) AND expires > ? "
                "ORDER BY created, id", (*ACTIVE_STATUSES, now)).fetchall()
        return [JobRecord(*row) for row in rows]

    # -- internals ---------------------------------------------------------------

    def _update(self, job_id: str, revision: int, now: float, *, status: str,
                result: str | None = None, error: str | None = None) -> bool:
        with self._lock:
            cursor = self._run(
                "UPDATE http_jobs SET status = ?, updated = ?, result = ?, error = ? "
                "WHERE id = ? AND revision = ?",
                (status, now, result, error, job_id, revision))
        return cursor.rowcount == 1

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return _when_unlocked(lambda: self._db.execute(sql, params))

    def _transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._run("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._store._run("ROLLBACK" if exc_type else "COMMIT")


T = TypeVar("T")

# How long a statement waits for another connection's lock (the audit writer's, in the audit
# database) before it fails, and how often it tries again meanwhile.
LOCK_WAIT = 5.0
_LOCK_POLL = 0.0002


def _when_unlocked(statement: Callable[[], T], wait: float | None = None) -> T:
    """``statement()``, tried again while the database is locked, for up to ``wait`` seconds
    (default LOCK_WAIT); then the error is raised. A locked statement has done nothing, so
    running it again is safe (a COMMIT that found the database busy leaves the transaction
    open for the next try)."""
    deadline = time.monotonic() + (LOCK_WAIT if wait is None else wait)
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(_LOCK_POLL)


def _row(record: JobRecord) -> tuple[Any, ...]:
    return (record.id, record.revision, record.status, record.api_version, record.created,
            record.updated, record.expires, record.request, record.result, record.error)


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds report text)."""
    if path.exists() or str(path) == ":memory:":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
