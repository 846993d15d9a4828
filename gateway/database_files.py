"""Whether the files a running gateway writes are still the audit database at its path.

SQLite goes on writing to the files it has open, so a commit into a database file or WAL
deleted or replaced under the gateway (an admin's ``rm``, a backup restored over it)
succeeds, but into files no restart will open: a message ACKed from it would be lost, an
outbox message marked delivered there would be sent again. :class:`DatabaseFiles` holds a
descriptor on each file and compares it with what the path names now; the gateway's audit
writer, its outbox delivery and its REST job store share one, so the first of them to find
the database gone stops them all, until a restart opens the database at the path again.

Only ``ENOENT`` and ``ENOTDIR`` from ``stat`` mean a file is gone. Any other error
(``EACCES`` after a directory's permissions changed, ``EIO`` from a failing disk) says
nothing about where the file is: the check is inconclusive, the commit stands, a warning
names the errno and the next check tries again. Taken for "deleted", a passing permission
or disk error refused every message until a restart.
"""

from __future__ import annotations

import errno
import os
import threading

import structlog

from .errors import DatabaseLost

__all__ = ["DatabaseFiles", "file_identity"]

# Not bound at import: gateway.audit is imported before the CLI configures logging.
log = structlog.get_logger("ri_gateway.audit")

_GONE = (errno.ENOENT, errno.ENOTDIR)


def file_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``; None when there is none (``ENOENT``,
    ``ENOTDIR``). Any other ``OSError`` is raised: it does not say the file is gone."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise
    return info.st_dev, info.st_ino


def _moved(path: str, fd: int) -> str | None:
    """How the file open as ``fd`` stopped being the one at ``path`` (None if it is)."""
    # The descriptor keeps the inode alive, so no new file can take its number: a file
    # at ``path`` with the same identity is the one held.
    held = os.fstat(fd)
    now = file_identity(path)
    if now is None:
        return f"{path} was deleted"
    if now != (held.st_dev, held.st_ino):
        return f"{path} was replaced by another file"
    return None


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


class DatabaseFiles:
    """The database file at ``path`` (open as ``fd``, held by the caller) and its WAL.

    Thread-safe: the audit writer's thread, the outbox's and the reactor (REST reads)
    check the same files.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._wal_fd: int | None = None
        self._lock = threading.Lock()
        # Set once the files were found deleted or replaced: what every later check raises.
        self.lost: str | None = None
        # The errno of the last inconclusive check while it lasts (one warning, not one
        # per commit).
        self._unsure: str | None = None

    def raise_if_lost(self) -> None:
        """Raise :class:`DatabaseLost` if an earlier check found the files gone (no I/O)."""
        if self.lost is not None:
            raise DatabaseLost(self.lost)

    def check(self) -> None:
        """Raise :class:`DatabaseLost` when the database file or its WAL was deleted or
        replaced; a check that cannot tell is logged and passes (module docstring)."""
        with self._lock:
            self.raise_if_lost()
            try:
                problem = self._problem()
            except OSError as exc:
                self._inconclusive(exc)
                return
            if self._unsure is not None:
                log.info("audit.files_check_passed_again", file=self.path)
                self._unsure = None
            if problem is not None:
                self.lost = (f"audit database {problem} while the gateway was writing it; "
                             "nothing written since reaches the database at that path: "
                             "restart the gateway")
                # Once, whichever part found it (a message's commit, a delivery, a REST
                # request): each of them also says what it refused.
                log.error("audit.database_lost", reason=self.lost)
                raise DatabaseLost(self.lost)

    def close(self) -> None:
        with self._lock:
            if self._wal_fd is not None:
                # SQLite locks the database file and the -shm file, never the -wal, so
                # closing this descriptor drops no lock of another connection's.
                os.close(self._wal_fd)
                self._wal_fd = None

    def _problem(self) -> str | None:
        wal = f"{self.path}-wal"
        problem = _moved(self.path, self._fd)
        if problem is None and self._wal_fd is None:
            try:
                self._wal_fd = os.open(wal, os.O_RDONLY)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise
                return None  # not in WAL mode (yet): nothing more to compare
        if problem is None:
            problem = _moved(wal, self._wal_fd)  # type: ignore[arg-type]
        return problem

    def _inconclusive(self, exc: OSError) -> None:
        name = _errno_name(exc)
        if name != self._unsure:
            log.warning("audit.files_check_inconclusive", file=exc.filename or self.path,
                        errno=name,
                        error=exc.strerror,
                        consequence="kept writing; checked again at the next commit")
            self._unsure = name
