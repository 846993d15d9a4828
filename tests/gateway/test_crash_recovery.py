"""SIGKILL while a client is sending: nothing ACKed is lost, unfinished analysis resumes."""

from __future__ import annotations

import socket
import sqlite3
import threading

from gateway_process import WAIT, GatewayProcess, json_event
from gateway_samples import oru


def _sender(port: int, acked: list[str], enough: threading.Event, count: int) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            for i in range(10_000):
                control_id = f"K{i:05d}"
                sock.sendall(b"\x0b" + oru(control_id) + b"\x1c\x0d")
                data = b""
                while not data.endswith(b"\x1c\x0d"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                if f"MSA|AA|{control_id}".encode() in data:
                    acked.append(control_id)
                if len(acked) == count:
                    enough.set()
    except OSError:
        return  # the gateway was killed mid-exchange
    finally:
        enough.set()


def test_sigkill_loses_nothing_that_was_acked(tmp_path):
    db = tmp_path / "audit.sqlite3"
    # First life: analyses never finish, so every accepted message is unfinished work.
    first = GatewayProcess(db, FAKE_ENGINE_HOLD="1").start()
    acked: list[str] = []
    enough = threading.Event()
    sender = threading.Thread(target=_sender, args=(first.port, acked, enough, 25))
    sender.start()
    assert enough.wait(WAIT)
    first.kill()  # while the client is still sending
    sender.join(WAIT)
    assert len(acked) >= 25

    con = sqlite3.connect(db)
    stored = {row[0]: row[1] for row in
              con.execute("SELECT control_id, status FROM messages WHERE ack_code = 'AA'")}
    con.close()
    assert set(acked) <= set(stored)
    assert set(stored.values()) == {"received"}

    # Second life: everything ACKed but not analysed is picked up again.
    second = GatewayProcess(db).start()
    try:
        second.output.wait_for(json_event("analysis.resumed", messages=len(stored)))
        for control_id in sorted(stored):
            second.output.wait_for(json_event("analysis", control_id=control_id,
                                              status="analysed"))
    finally:
        second.stop()
    con = sqlite3.connect(db)
    statuses = dict(con.execute("SELECT control_id, status FROM messages WHERE ack_code = 'AA'"))
    resumed = {row[0] for row in con.execute("SELECT control_id FROM events WHERE event='resumed'")}
    assert statuses == {control_id: "analysed" for control_id in stored}
    assert resumed == set(stored)
