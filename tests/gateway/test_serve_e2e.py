"""``ri-gateway serve`` as a real process, driven by real peers over loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import hl7
import hl7.mllp
import pytest

from gateway_process import ROOT, WAIT, GatewayProcess, cli_env, exchange, json_event, run_cli
from gateway_samples import oru

CORPUS = Path(__file__).parents[3] / "shared" / "corpus" / "hl7"


@pytest.fixture
def gateway(tmp_path):
    process = GatewayProcess(tmp_path / "var" / "audit.sqlite3").start()
    yield process
    process.stop()


async def _send_with_python_hl7(port: int, messages: list[bytes]) -> list[hl7.Message]:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    acks = []
    try:
        for message in messages:
            writer.writemessage(hl7.parse(message.decode()))
            await writer.drain()
            acks.append(await asyncio.wait_for(reader.readmessage(), 60))
    finally:
        writer.close()
    return acks


def test_python_hl7_client_gets_an_aa_per_message_and_analysis_runs(gateway):
    ids = ["E2E1", "E2E2", "E2E3"]
    acks = asyncio.run(_send_with_python_hl7(gateway.port, [oru(i) for i in ids]))
    assert [(str(a.segment("MSA")[1]), str(a.segment("MSA")[2])) for a in acks] == [
        ("AA", i) for i in ids]
    assert all(str(a.segment("MSH")[9]) == "ACK^R01^ACK" for a in acks)
    for control_id in ids:
        gateway.output.wait_for(json_event("analysis", control_id=control_id, status="analysed"))
    shown = run_cli("audit", "show", "E2E2", "--db", str(gateway.db))
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(l["event"], l["control_id"], l["message_type"], l["sender"], l["ack_code"])
            for l in lines] == [
        ("received", "E2E2", "ORU^R01", "RIS^HOSP", "AA"),
        ("analysed", "E2E2", "ORU^R01", "RIS^HOSP", "AA"),
        ("inference", "E2E2", "ORU^R01", "RIS^HOSP", "AA"),
    ]
    assert lines[2]["kind"] == "criticalResult"
    assert all(line["time"] for line in lines)


def test_every_corpus_file_gets_a_framed_ack_and_the_server_stays_up(gateway):
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} is absent")
    files = sorted(CORPUS.glob("*.hl7"))
    assert files
    outcomes = {}
    for path in files:
        raw = path.read_bytes()
        reply = exchange(gateway.port, raw)
        # A VT inside the payload restarts the frame (mllp.framing): the gateway sees
        # only what follows the last one.
        control_id = _msh10(raw.rsplit(b"\x0b", 1)[-1])
        if reply is None:
            # Only a message without a readable MSH-10 may go unanswered (connection closed).
            assert control_id is None, path.name
            outcomes[path.name] = None
            continue
        text = reply.decode("utf-8", errors="replace")
        assert text.startswith("MSH"), path.name
        msa = next(s for s in text.split("\r") if s.startswith("MSA"))
        fs = text[3]
        fields = msa.split(fs)
        assert fields[1] in ("AA", "AE", "AR", "CA", "CE", "CR"), (path.name, msa)
        if control_id is not None:
            assert fields[2] == control_id, (path.name, msa)
        outcomes[path.name] = fields[1]
    # Still serving after all of that.
    assert exchange(gateway.port, oru("AFTER"))[:3] == b"MSH"
    assert "AA" in outcomes.values() and "AR" in outcomes.values()


def _msh10(raw: bytes) -> str | None:
    text = raw.decode("latin-1").lstrip("\ufeff\xef\xbb\xbf \r\n")
    start = text.find("MSH")
    if start != 0:
        return None
    fs = text[3]
    fields = text.split("\r")[0].split("\n")[0].split(fs)
    return fields[9] if len(fields) > 9 and fields[9] else None


def test_send_and_sink_commands(tmp_path, gateway):
    messages = tmp_path / "two.hl7"
    # Two messages in one file with LF line ends, as an editor would save them.
    messages.write_bytes(oru("S1").replace(b"\r", b"\n") + b"\n" + oru("S2").replace(b"\r", b"\r\n"))
    sent = run_cli("send", "--port", str(gateway.port), str(messages))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.splitlines() == [
        f"{messages}#1 MSH-10=S1", "  MSA|AA|S1", f"{messages}#2 MSH-10=S2", "  MSA|AA|S2"]

    rejected = tmp_path / "zdt.hl7"
    rejected.write_bytes(oru("Z9", msh9="ZDT^Z01"))
    refused = run_cli("send", "--port", str(gateway.port), str(rejected))
    assert refused.returncode == 1
    assert "  MSA|AR|Z9|message type ZDT is not accepted" in refused.stdout.splitlines()


def test_send_to_a_closed_port_exits_3(tmp_path):


    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message = tmp_path / "m.hl7"
    message.write_bytes(oru("N1"))
    result = run_cli("send", "--port", str(port), "--timeout", "5", str(message))
    assert result.returncode == 3
    assert "cannot connect" in result.stderr


def test_duplicate_over_the_wire_gets_the_same_ack(gateway):
    first = exchange(gateway.port, oru("DUP1"))
    second = exchange(gateway.port, oru("DUP1"))
    assert first == second
    con = sqlite3.connect(gateway.db)
    assert con.execute("SELECT count(*) FROM messages WHERE control_id='DUP1'").fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM events WHERE event='duplicate'").fetchone() == (1,)


def test_sender_that_half_closes_gets_its_ack(gateway):
    # Scripts, `nc -q` and some engines send, shut their sending side down, then read.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as sock:
        sock.sendall(b"\x0b" + oru("HALF1") + b"\x1c\x0d")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):  # until the gateway closes the connection
            received += chunk
    (ack,) = [f for f in received.split(b"\x1c\x0d") if f]
    assert ack.startswith(b"\x0bMSH")
    assert b"\rMSA|AA|HALF1" in ack


def test_concurrent_duplicates_are_audited_with_the_original(gateway):
    senders = 20
    start = threading.Barrier(senders)
    acks: list[bytes | None] = [None] * senders

    def send(n: int) -> None:
        start.wait(30)  # all at once: most arrive while the first is being committed
        acks[n] = exchange(gateway.port, oru("PAR1"))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert acks[0] is not None and b"\rMSA|AA|PAR1" in acks[0]
    assert set(acks) == {acks[0]}
    shown = run_cli("audit", "show", "PAR1", "--db", str(gateway.db))
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    (received,) = [l for l in lines if l["event"] == "received"]
    duplicates = [l for l in lines if l["event"] == "duplicate"]
    assert len(duplicates) == senders - 1
    assert {(l["message_id"], l["message_type"], l["sender"], l["ack_code"], l["same_content"])
            for l in duplicates} == {(received["message_id"], "ORU^R01", "RIS^HOSP", "AA", True)}
    # Their log lines too: the original's message id, the ACK code, the comparison.
    is_duplicate = json_event("hl7.message", outcome="duplicate")
    gateway.output.wait_for(lambda line: is_duplicate(line) and sum(
        map(is_duplicate, gateway.output.seen)) >= senders - 1)
    logged = [json.loads(line) for line in gateway.output.seen if is_duplicate(line)]
    assert len(logged) == senders - 1
    assert {(l["message_id"], l["ack_code"], l["same_content"]) for l in logged} == {
        (received["message_id"], "AA", True)}


def test_bad_configuration_fails_at_start_naming_the_key(tmp_path):
    result = run_cli("serve", "--db", str(tmp_path / "a.sqlite3"), "--mllp", "tcpx:1")
    assert result.returncode == 2
    assert result.stderr.startswith("ri-gateway: mllp.endpoint: invalid Twisted endpoint")


@pytest.mark.parametrize("args, env, toml, expected", [
    # Parsed by Twisted, refused by bind() only after start (and then as exit 3).
    (["--mllp", "tcp:99999"], {}, None,
     "ri-gateway: mllp.endpoint: invalid Twisted endpoint 'tcp:99999': port 99999 is not in 0-65535"),
    ([], {"RI_GATEWAY_MLLP_ENDPOINT": "tcp:99999"}, None, "ri-gateway: mllp.endpoint: "),
    (["--http", "tcp:70000:interface=127.0.0.1"], {}, None, "ri-gateway: http.endpoint: "),
    # NaN passed every check, then the listener refused it and the process hung.
    ([], {"RI_GATEWAY_MLLP_IDLE_TIMEOUT": "nan"}, None,
     "ri-gateway: mllp.idle_timeout: must be a finite number, got 'nan'"),
    ([], {}, "[mllp]\nidle_timeout = nan\n", "ri-gateway: mllp.idle_timeout: must be a finite number"),
    ([], {}, "[analysis]\nmax_wait = nan\n", "ri-gateway: analysis.max_wait: must be a finite number"),
    ([], {"RI_GATEWAY_MLLP_DEFAULT_CHARSET": "hex"}, None, "ri-gateway: mllp.default_charset: 'hex' is"),
    ([], {}, "[mappings]\nfoo = 1\n", "ri-gateway: mappings.foo: unknown key"),
    ([], {}, '[mappings]\nvalidation = "bogus"\n', "ri-gateway: mappings.validation: 'bogus'"),
    # A destination port out of range was accepted; every message to it then failed at
    # connect() and was dead-lettered while the gateway ran.
    ([], {}, '[destinations.pager]\nendpoint = "tcp:host=127.0.0.1:port=99999"\n',
     "ri-gateway: destinations.pager.endpoint: invalid Twisted client endpoint "
     "'tcp:host=127.0.0.1:port=99999': port 99999 is not in 1-65535"),
    ([], {}, '[destinations.pager]\nendpoint = "tls:host=127.0.0.1:port=0"\n',
     "ri-gateway: destinations.pager.endpoint: "),
    # Twisted's ssl: client endpoint checks no host name unless given hostname=: PHI went
    # to any peer with a certificate from a trusted CA (with no caCertsDir, any peer at all).
    ([], {}, '[destinations.ris]\nendpoint = "ssl:host=ris.example.org:port=6662:caCertsDir=/etc/ssl/certs"\n',
     "ri-gateway: destinations.ris.endpoint: 'ssl:host=ris.example.org:port=6662:caCertsDir=/etc/ssl/certs'"
     " would not verify the peer's host name"),
    ([], {}, '[destinations.ris]\nendpoint = "ssl:host=127.0.0.1:port=6662"\n',
     "ri-gateway: destinations.ris.endpoint: "),
    # Any string was written into MSH-12 of every result and alert; the layout of those
    # messages needs v2.5 or later.
    ([], {}, '[outbound]\nversion = "2.3"\n',
     "ri-gateway: outbound.version: must be an HL7 version outbound messages can be written "
     "in, one of 2.5, 2.5.1, 2.6, 2.7, 2.7.1, 2.8, 2.8.1, 2.8.2; got '2.3' (in "),
    ([], {}, '[outbound]\nversion = "2.5.1 final"\n', "ri-gateway: outbound.version: "),
    ([], {"RI_GATEWAY_OUTBOUND_VERSION": "3.0"}, None,
     "ri-gateway: outbound.version: must be an HL7 version outbound messages can be written "
     "in, one of 2.5, 2.5.1, 2.6, 2.7, 2.7.1, 2.8, 2.8.1, 2.8.2; got '3.0' "
     "(set by RI_GATEWAY_OUTBOUND_VERSION)\n"),
    # An alert route alerting on nothing started and never sent an alert.
    ([], {}, '[destinations.pager]\nendpoint = "tcp:host=127.0.0.1:port=2576"\n'
             '[routes.critical]\ntype = "alerts"\ndestinations = ["pager"]\nalert_on = []\n',
     "ri-gateway: routes.critical.alert_on: must name at least one class"),
])
def test_invalid_values_stop_serve_with_exit_2_naming_the_key(tmp_path, args, env, toml, expected):
    if toml is not None:
        (tmp_path / "gateway.toml").write_text(toml)
        args = [*args, "--config", str(tmp_path / "gateway.toml")]
    # Were the value accepted, the gateway would listen on a loopback port of its own.
    env = {"RI_GATEWAY_MLLP_ENDPOINT": "tcp:25001:interface=127.0.0.1", **env}
    result = run_cli("serve", "--db", str(tmp_path / "a.sqlite3"), *args, env=cli_env(**env))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # the message, no traceback


def test_a_gateway_that_fails_to_build_exits(tmp_path):
    # The audit and outbox writers exist before the listener is built. A failure there (a
    # value validation would refuse, set behind its back) must end the process, not leave
    # it waiting for writer threads nobody stops.
    config = tmp_path / "gateway.toml"
    config.write_text('[destinations.pager]\nendpoint = "tcp:host=127.0.0.1:port=25999"\n'
                      '[routes.all]\ndestinations = ["pager"]\n')
    code = (
        "import dataclasses, sys\n"
        "from gateway.config import load_settings\n"
        "from gateway.service import build_gateway\n"
        "settings = load_settings(sys.argv[1], {'storage.db': sys.argv[2], 'analysis.executor': 'thread'}, {})\n"
        "mllp = dataclasses.replace(settings.mllp, idle_timeout=float('nan'))\n"
        "build_gateway(dataclasses.replace(settings, mllp=mllp))\n")
    result = subprocess.run([sys.executable, "-c", code, str(config), str(tmp_path / "a.sqlite3")],
                            cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 1
    assert result.stderr.rstrip().splitlines()[-1].startswith("ValueError: idle_timeout must be")


def test_sigterm_during_a_burst_of_log_lines_stops_the_gateway_cleanly(tmp_path):
    # A signal that lands while the main thread is writing a log line must not deadlock the
    # shutdown (the handler only schedules the stop; the log line is written afterwards).
    for attempt in range(3):
        process = GatewayProcess(tmp_path / f"var{attempt}" / "audit.sqlite3").start()
        stop_sending = threading.Event()

        def burst(port=process.port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    n = 0
                    while not stop_sending.is_set():
                        n += 1
                        sock.sendall(b"\x0b" + oru(f"T{attempt}-{n}") + b"\x1c\r")
                        sock.recv(65536)
            except OSError:
                pass  # the gateway closed the connection while stopping

        sender = threading.Thread(target=burst)
        sender.start()
        process.output.wait_for(json_event("analysis", control_id=f"T{attempt}-3"))
        try:
            assert process.stop() == 0
            assert any(json_event("shutdown", signal="SIGTERM")(line)
                       for line in process.output.seen + list(process.output.lines.queue))
        finally:
            stop_sending.set()
            sender.join(10)


def test_an_accepted_adt_is_stored_acked_and_skipped_not_failed(tmp_path):
    gateway = GatewayProcess(tmp_path / "audit.sqlite3",
                             RI_GATEWAY_MLLP_ACCEPTED_MESSAGE_TYPES="ORU^R01,ADT^A01").start()
    try:
        adt = (b"MSH|^~\\&|ADT|HOSP|RIGW|RAD|20240115101500||ADT^A01^ADT_A01|ADT1|P|2.5.1\r"
               b"EVN|A01|20240115101500\rPID|1||MRN1^^^HOSP^MR||DOE^JANE||19600214|F\rPV1|1|I\r")
        ack = exchange(gateway.port, adt)
        assert b"\rMSA|AA|ADT1" in ack
        gateway.output.wait_for(json_event("analysis", control_id="ADT1", status="skipped"))
    finally:
        gateway.stop()
    shown = run_cli("audit", "show", "ADT1", "--db", str(gateway.db))
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(e["event"], e["message_type"], e["ack_code"]) for e in events] == [
        ("received", "ADT^A01", "AA"), ("skipped", "ADT^A01", "AA")]
    assert events[1]["reasons"] == ["ADT^A01 is not a report message"]


def test_large_frames_are_decoded_off_the_reactor_one_at_a_time(tmp_path):
    # On the reactor's thread pool, up to ten frames of up to 16 MiB were decoded at once,
    # each with its text (several times the frame) in memory; on the reactor itself they
    # were decoded one at a time. The gateway's decoder runs one at a time, off the reactor.
    from gateway.config import load_settings
    from gateway.service import build_gateway

    settings = load_settings(None, {"storage.db": str(tmp_path / "a.sqlite3"),
                                    "analysis.executor": "thread"}, {})
    app, _ = build_gateway(settings)
    started: list[int] = []
    others = threading.Event()

    def decode(n: int) -> None:
        started.append(n)
        if len(started) == 3:
            others.set()
        if n == 0:
            # Waits for the other two for a while: they start only if decodes overlap.
            others.wait(1.0)
            seen.extend(started)

    seen: list[int] = []
    try:
        for n in range(3):
            app.receiver.run_off_reactor(lambda n=n: decode(n))
        deadline = time.monotonic() + WAIT
        while len(started) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert seen == [0]
        assert started == [0, 1, 2]
    finally:
        app.stop_threads()
        app.audit.close()
        app.writer_audit.close()
