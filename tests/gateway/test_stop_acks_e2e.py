"""A stop signal while a message is being stored: its ACK still reaches the sender."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
import urllib.request

from gateway_process import WAIT, GatewayProcess, json_event
from gateway_samples import frame, oru, unframe_all


def _frames_received(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=WAIT) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("ri_gateway_frames_total "):
                return float(line.split()[1])
    return 0.0


def _until_handed_over(http_port: int) -> None:
    """Until the listener has taken the frame (and handed it to the receiver, in the same
    call): a deadline, not a sleep that the test relies on."""
    deadline = time.monotonic() + WAIT
    while _frames_received(http_port) < 1:
        assert time.monotonic() < deadline, "the gateway never received the frame"
        time.sleep(0.02)


def test_the_ack_of_a_message_stored_during_the_stop_reaches_the_sender(tmp_path):
    gateway = GatewayProcess(tmp_path / "audit.sqlite3", RI_GATEWAY_HTTP_ENABLED="true",
                             RI_GATEWAY_HTTP_ENDPOINT="tcp:0:interface=127.0.0.1").start()
    http_port = json.loads(gateway.output.wait_for(
        json_event("listening", service="http")))["port"]
    admin = sqlite3.connect(gateway.db, isolation_level=None)
    admin.execute("BEGIN IMMEDIATE")  # the message's commit waits for this lock (up to 5 s)
    released = False
    try:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT) as sock:
            sock.sendall(frame(oru("STOP1")))
            _until_handed_over(http_port)
            gateway.proc.send_signal(signal.SIGTERM)
            gateway.output.wait_for(json_event("shutdown"))
            admin.execute("COMMIT")  # the commit goes through, during the stop
            released = True
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert gateway.proc.wait(timeout=WAIT) == 0
        # Before, the connection was dropped at the reactor's shutdown with this ACK unsent.
        [ack] = unframe_all(data)
        assert b"MSA|AA|STOP1" in ack
    finally:
        if not released:
            admin.execute("COMMIT")
        admin.close()
        gateway.stop()
    con = sqlite3.connect(gateway.db)
    assert con.execute("SELECT ack_code FROM messages WHERE control_id = 'STOP1'"
                       ).fetchall() == [("AA",)]
    con.close()
