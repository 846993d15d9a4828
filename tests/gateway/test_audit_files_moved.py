"""The gateway's audit writer refuses to commit into files no longer at its path."""

from __future__ import annotations

import os

import pytest

from gateway.audit import AuditLog, event_op
from gateway.errors import AuditError


def _write(audit: AuditLog, name: str = "test") -> None:
    audit.run(event_op(name, None))


@pytest.fixture
def writer(tmp_path):
    audit = AuditLog(str(tmp_path / "audit.sqlite3"), single_writer=True)
    _write(audit)
    yield audit
    audit.close()


def test_a_database_replaced_by_another_file_fails_every_later_write(tmp_path, writer):
    restored = tmp_path / "backup.sqlite3"
    restored.write_bytes(b"")
    os.replace(restored, writer.path)  # a backup restored over the running gateway's file
    message = f"audit database {writer.path} was replaced by another file"
    with pytest.raises(AuditError, match=message):
        _write(writer)
    with pytest.raises(AuditError, match=message):
        _write(writer)


def test_a_wal_replaced_by_another_file_fails_the_write(tmp_path, writer):
    wal = f"{writer.path}-wal"
    os.rename(wal, wal + ".old")
    with open(wal, "wb") as f:
        f.write(b"\0" * 32)
    with pytest.raises(AuditError, match=f"audit database {wal} was replaced by another file"):
        _write(writer)


def test_a_deleted_database_fails_the_write_even_when_a_new_file_took_its_name(tmp_path, writer):
    os.unlink(writer.path)
    AuditLog(writer.path).close()  # a new, empty audit database where it was
    with pytest.raises(AuditError, match=f"audit database {writer.path} was"):
        _write(writer)


def test_a_database_left_in_place_takes_writes(writer):
    for _ in range(3):
        _write(writer)
    assert len(writer.events()) == 4
