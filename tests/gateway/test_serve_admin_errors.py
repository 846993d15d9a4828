"""``ri-gateway serve`` set up wrongly by an administrator: one line on stderr, a non-zero
exit, no traceback, nothing lost or changed (real processes on loopback)."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from gateway_process import WAIT, GatewayProcess, exchange, json_event, run_cli
from gateway_samples import oru

# Long enough to start on a slow machine; a gateway that should have refused to start
# runs until then and the test fails on the timeout.
REFUSED_WITHIN = 30.0


def _refused(result: subprocess.CompletedProcess, code: int, starts: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(starts), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # no traceback


def _serve(*args: str) -> subprocess.CompletedProcess:
    return run_cli("serve", "--mllp", "tcp:0:interface=127.0.0.1", *args, timeout=REFUSED_WITHIN)


def test_a_database_path_that_cannot_be_created_exits_3_naming_it(tmp_path):
    # The directory named by [storage] db is a file: a FileExistsError traceback, exit 1.
    (tmp_path / "var").write_text("not a directory")
    db = tmp_path / "var" / "audit.sqlite3"
    _refused(_serve("--db", str(db)), 3, f"ri-gateway: cannot create audit database {db}: ")


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path):
    # The gateway added its tables (and WAL mode) to the file and ran on it.
    other = tmp_path / "inventory.sqlite3"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO items (name) VALUES ('scanner')")
    con.close()
    other.chmod(0o644)
    before = other.read_bytes()
    _refused(_serve("--db", str(other)), 3,
             f"ri-gateway: {other} is not a ri-gateway audit database")
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory.sqlite3"]
    assert other.stat().st_mode & 0o777 == 0o644


def test_an_empty_file_is_a_new_audit_database(tmp_path):
    db = tmp_path / "audit.sqlite3"
    db.write_bytes(b"")  # made in advance by the administrator (touch)
    gateway = GatewayProcess(db).start()
    try:
        assert b"\rMSA|AA|E1" in exchange(gateway.port, oru("E1"))
    finally:
        assert gateway.stop() == 0


def test_a_second_gateway_on_the_same_database_is_refused(tmp_path):
    # Both ran: each resumed the same backlog, took up the same replays and delivered the
    # same outbox messages, so a critical result was paged twice.
    db = tmp_path / "var" / "audit.sqlite3"
    first = GatewayProcess(db).start()
    try:
        _refused(_serve("--db", str(db)), 3,
                 f"ri-gateway: audit database {db} is in use by another running gateway")
        assert b"\rMSA|AA|A1" in exchange(first.port, oru("A1"))  # the first goes on
    finally:
        assert first.stop() == 0
    second = GatewayProcess(db).start()  # stopped, it no longer holds the file
    try:
        assert b"\rMSA|AA|A1" in exchange(second.port, oru("A1"))  # a duplicate: same ACK
    finally:
        assert second.stop() == 0


def test_sighup_stops_the_gateway_as_sigterm_does(tmp_path):
    # SIGHUP's default action ended the process at once: exit 129, not a line logged.
    gateway = GatewayProcess(tmp_path / "audit.sqlite3").start()
    assert b"\rMSA|AA|H1" in exchange(gateway.port, oru("H1"))
    gateway.proc.send_signal(signal.SIGHUP)
    assert gateway.proc.wait(timeout=WAIT) == 0
    gateway.output.wait_for(json_event("shutdown", signal="SIGHUP"))
    with sqlite3.connect(gateway.db) as con:
        assert con.execute("SELECT ack_code FROM messages WHERE control_id = 'H1'"
                           ).fetchall() == [("AA",)]
    con.close()


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


def _signalled_while_starting(tmp_path, signum: int, ready) -> GatewayProcess:
    gateway = GatewayProcess(tmp_path / "var" / "audit.sqlite3").launch()
    deadline = time.monotonic() + WAIT
    while not ready(gateway):
        assert gateway.proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.001)
    gateway.proc.send_signal(signum)
    return gateway


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_stop_signal_while_the_gateway_builds_stops_it_cleanly(tmp_path, signum):
    # The handlers were installed once the reactor ran: a signal while the gateway was
    # being built (its database created, the analysis pool and listeners not yet) ended
    # it at once (SIGHUP: exit 129, SIGTERM: 143), with no `shutdown` logged.
    gateway = _signalled_while_starting(tmp_path, signum, lambda g: g.db.exists())
    assert gateway.proc.wait(timeout=WAIT) == 0
    gateway.output.wait_for(json_event("shutdown", signal=signum.name))
    again = GatewayProcess(gateway.db).start()  # the database is left fit for the next start
    try:
        assert b"\rMSA|AA|S1" in exchange(again.port, oru("S1"))
    finally:
        assert again.stop() == 0


def test_a_sighup_as_soon_as_the_process_handles_it_stops_it_cleanly(tmp_path):
    # As early as the process catches SIGHUP (the command line read as `serve`, before
    # the rest of the gateway is imported): a stop as clean as any later one.
    gateway = _signalled_while_starting(
        tmp_path, signal.SIGHUP, lambda g: _catches(g.proc.pid, signal.SIGHUP))
    assert gateway.proc.wait(timeout=WAIT) == 0
    gateway.output.wait_for(json_event("shutdown", signal="SIGHUP"))


def test_a_port_in_use_names_the_listener_that_failed(tmp_path):
    # "ri-gateway: cannot listen: ..." said neither which listener nor which setting.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        mllp = run_cli("serve", "--db", str(tmp_path / "a.sqlite3"),
                       "--mllp", f"tcp:{port}:interface=127.0.0.1", timeout=REFUSED_WITHIN)
        _refused(mllp, 3, "ri-gateway: mllp.endpoint: cannot listen: ")
        assert "Address already in use" in mllp.stderr
        # And where the endpoint was set, as for any other setting in error.
        assert "(set on the command line)" in mllp.stderr
        http = run_cli("serve", "--db", str(tmp_path / "b.sqlite3"),
                       "--mllp", "tcp:0:interface=127.0.0.1",
                       "--http", f"tcp:{port}:interface=127.0.0.1", timeout=REFUSED_WITHIN)
        _refused(http, 3, "ri-gateway: http.endpoint: cannot listen: ")
        config = tmp_path / "gateway.toml"
        config.write_text(f'[mllp]\nendpoint = "tcp:{port}:interface=127.0.0.1"\n')
        from_file = run_cli("serve", "--db", str(tmp_path / "c.sqlite3"), "--config", str(config),
                            timeout=REFUSED_WITHIN)
        _refused(from_file, 3, "ri-gateway: mllp.endpoint: cannot listen: ")
        assert f"(in {config}, line 2)" in from_file.stderr


def test_a_gateway_started_with_nohup_outlives_sighup(tmp_path):
    gateway = GatewayProcess(tmp_path / "audit.sqlite3")
    gateway.preexec = lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
    gateway.start()
    gateway.proc.send_signal(signal.SIGHUP)
    assert b"\rMSA|AA|N1" in exchange(gateway.port, oru("N1"))
    assert gateway.stop() == 0
    # Had SIGHUP been handled, its shutdown would come first (signals are handled in order).
    shutdown = gateway.output.wait_for(json_event("shutdown"))
    assert json.loads(shutdown)["signal"] == "SIGTERM"


def test_a_stop_with_analyses_in_flight_logs_no_error_and_the_next_start_ends_them(tmp_path):
    # Every routine stop logged `analysis.not_recorded` at level error for the analyses its
    # pool dropped, though nothing was wrong: they stay `received` and resume at start.
    db = tmp_path / "audit.sqlite3"
    first = GatewayProcess(db, FAKE_ENGINE_DELAY="3").start()
    for n in range(3):
        assert b"\rMSA|AA|" in exchange(first.port, oru(f"R{n}"))
    # The quiet period is 0.05 s and each analysis takes 3 s: one is being analysed and
    # one waits in the pool's queue when the stop comes.
    time.sleep(1.0)
    assert first.stop() == 0
    lines = first.output.seen + list(first.output.lines.queue)
    assert [line for line in lines if '"level": "error"' in line] == []
    second = GatewayProcess(db).start()
    try:
        for n in range(3):
            second.output.wait_for(json_event("analysis", control_id=f"R{n}", status="analysed"))
    finally:
        assert second.stop() == 0


def test_a_database_path_with_uri_characters_is_opened_as_named(tmp_path):
    # A '#' (or '?', '%') in the file name began the SQLite URI's fragment (query, escape):
    # the path was cut there, and another file ("inventory") was opened and created, so
    # another program's database was not refused and a reader did not find the audit log.
    other = tmp_path / "inventory#2.sqlite3"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    con.close()
    _refused(_serve("--db", str(other)), 3,
             f"ri-gateway: {other} is not a ri-gateway audit database")
    db = tmp_path / "audit?#%41.sqlite3"
    gateway = GatewayProcess(db).start()
    try:
        assert b"\rMSA|AA|U1" in exchange(gateway.port, oru("U1"))
    finally:
        assert gateway.stop() == 0
    tail = run_cli("audit", "tail", "--json", "--db", str(db))
    assert tail.returncode == 0, tail.stderr
    assert any(json.loads(line)["control_id"] == "U1" for line in tail.stdout.splitlines())
    assert sorted(p.name for p in tmp_path.iterdir()
                  if not p.name.endswith(("-wal", "-shm"))) == [db.name, other.name]
