"""``send`` and ``sink`` print their answer on stdout and their log lines on stderr."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

from gateway_process import ROOT, WAIT, cli_env, exchange, run_cli
from gateway_samples import oru


def test_send_keeps_the_wire_log_out_of_the_acks_it_prints(tmp_path):
    # structlog's unconfigured default printed "[warning ] mllp.reply_timeout ..." on stdout
    # between the lines a script reads the ACKs from.
    message = tmp_path / "m.hl7"
    message.write_bytes(oru("Q1"))
    with socket.socket() as silent:  # accepts, reads, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        accepted = []
        threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
        result = run_cli("send", "--port", str(silent.getsockname()[1]), "--timeout", "0.5",
                         str(message))
        for conn, _ in accepted:
            conn.close()
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{message}#1 MSH-10=Q1", "  no ACK: no reply within 0.5 s; connection aborted"]
    assert "mllp.reply_timeout" in result.stderr


def test_sink_prints_only_its_own_lines_on_stdout(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sink", "--port", "0"],
                            cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        port = int(first.rsplit(":", 1)[1].split()[0])
        assert b"\rMSA|AA|" in exchange(port, oru("S1"))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    assert [first.rstrip("\n"), *out.splitlines()] == [
        f"sink listening on 127.0.0.1:{port} (ACK AA)", "sink received 1 messages"]
    assert "mllp.connection_made" in err

