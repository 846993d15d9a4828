"""What a sender is told, over a real socket to ``ri-gateway serve``, for input the
ACK path must not take as one good message."""

from __future__ import annotations

import itertools
import socket
import sqlite3
import threading
import time

import pytest

from gateway_process import WAIT, GatewayProcess, exchange, json_event
from gateway_samples import frame, oru, segments

SECOND_PATIENT = b"MRN99999"


def _serve(tmp_path, **env: str):
    return GatewayProcess(tmp_path / "var" / "audit.sqlite3", **env).start()


def _stored(db, control_id: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT status, ack_code, error_code FROM messages "
                           "WHERE control_id = ? ORDER BY id", (control_id,)).fetchall()


@pytest.mark.parametrize("mode", ["check", "full", "none"])
@pytest.mark.parametrize("envelope", [False, True])
def test_two_messages_in_one_frame_are_refused_not_half_answered(tmp_path, mode, envelope):
    # The ACK can answer one MSH-10; the second report (another patient's) was acknowledged
    # with the first and never analysed.
    gateway = _serve(tmp_path, RI_GATEWAY_MLLP_MAP_BEFORE_ACK=mode)
    try:
        first = oru("TWO1")
        second = oru("TWO2").replace(b"MRN12345", SECOND_PATIENT)
        payload = first + second
        if envelope:
            payload = b"BHS|^~\\&|RIS|HOSP\r" + payload + b"BTS|2\r"
        ack = exchange(gateway.port, payload)
        assert segments(ack)[1:] == [
            "MSA|AE|TWO1|more than one message in one frame (a second MSH segment); "
            "send each message in a frame of its own",
            "ERR||MSH^2|100^Segment sequence error^HL70357|E||||more than one message in one "
            "frame (a second MSH segment); send each message in a frame of its own"]
        assert _stored(gateway.db, "TWO1") == [("rejected", "AE", "100")]
        # Each message sent on its own is accepted, the first one too (it was not accepted
        # before, so it is no duplicate).
        for message, control_id in ((first, "TWO1"), (second, "TWO2")):
            assert segments(exchange(gateway.port, message))[1] == f"MSA|AA|{control_id}"
            gateway.output.wait_for(json_event("analysis", control_id=control_id))
    finally:
        gateway.stop()


def test_two_messages_in_one_frame_are_no_duplicate_of_the_first(tmp_path):
    # The first was accepted on its own before: answered with its ACK again, the frame's
    # second message was acknowledged and lost.
    gateway = _serve(tmp_path)
    try:
        first, second = oru("DB1"), oru("DB2").replace(b"MRN12345", SECOND_PATIENT)
        accepted = exchange(gateway.port, first)
        assert segments(accepted)[1] == "MSA|AA|DB1"
        again = exchange(gateway.port, first + second)
        assert segments(again)[1].startswith("MSA|AE|DB1|more than one message in one frame")
        original, frame = _stored(gateway.db, "DB1")
        assert (original[1:], frame) == (("AA", None), ("rejected", "AE", "100"))
        assert segments(exchange(gateway.port, second))[1] == "MSA|AA|DB2"
    finally:
        gateway.stop()


def test_a_message_whose_text_names_msh_is_one_message(tmp_path):
    gateway = _serve(tmp_path)
    try:
        report = "FINDINGS: MSH|x was typed in the report. Small right pneumothorax."
        ack = exchange(gateway.port, oru("ONE1", report=report))
        assert segments(ack)[1] == "MSA|AA|ONE1"
    finally:
        gateway.stop()


@pytest.mark.parametrize("mode", ["none", "check"])
def test_ack_after_analysis_tells_the_sender_what_was_wrong(tmp_path, mode):
    # The ACK waits for the engine; a report the engine refuses, or whose content the mapping
    # finds bad after the commit, was answered AR 207 "analysis failed", as for our own failure.
    gateway = _serve(tmp_path, RI_GATEWAY_ANALYSIS_ACK_AFTER="analysis",
                     RI_GATEWAY_MLLP_MAP_BEFORE_ACK=mode)
    try:
        assert segments(exchange(gateway.port, oru("AN1")))[1] == "MSA|AA|AN1"
        refused = segments(exchange(gateway.port, oru("AN2", report="REFUSE this report")))
        assert refused[1:] == [
            "MSA|AE|AN2|report not analysable: BadRequest",
            "ERR|||199^Other HL7 error^HL70357|E||||report not analysable: BadRequest"]
        crashed = segments(exchange(gateway.port, oru("AN3", report="CRASH the engine")))
        assert crashed[1] == "MSA|AR|AN3|analysis failed; the message was not processed"
        no_text = oru("AN4", report="", msh15="AL", msh16="NE")
        answer = segments(exchange(gateway.port, no_text))
        if mode == "none":  # found by the mapping after the commit
            assert answer[1:] == [
                "MSA|CE|AN4|no report text in any OBX-5",
                "ERR||OBX^1^5|101^Required field missing^HL70357|E||||no report text in any OBX-5"]
        else:  # found by the check before it, as before
            assert answer[1] == "MSA|CE|AN4|no report text in any OBX-5"
        assert [row[1:] for row in (_stored(gateway.db, c)[0] for c in ("AN2", "AN3", "AN4"))] \
            == [("AE", "199"), ("AR", "207"), ("CE", "101")]
        # Neither is an accepted message: a corrected resend is analysed.
        assert segments(exchange(gateway.port, oru("AN2")))[1] == "MSA|AA|AN2"
    finally:
        gateway.stop()


def test_every_msh15_and_msh16_gets_one_accept_ack_per_frame(tmp_path):
    gateway = _serve(tmp_path)
    try:
        cases = [("", ""), ("AL", ""), ("NE", "NE"), ("ER", "AL"), ("SU", "ER"), ("", "AL")]
        for n, (msh15, msh16) in enumerate(cases):
            enhanced = bool(msh15 or msh16)
            good = segments(exchange(gateway.port, oru(f"EM{n}", msh15=msh15, msh16=msh16)))
            assert good[1] == f"MSA|{'CA' if enhanced else 'AA'}|EM{n}", (msh15, msh16)
            bad = segments(exchange(gateway.port, oru(f"EB{n}", msh15=msh15, msh16=msh16,
                                                      report="")))
            assert bad[1] == f"MSA|{'CE' if enhanced else 'AE'}|EB{n}|no report text in any OBX-5"
    finally:
        gateway.stop()


def test_ack_after_analysis_a_resend_of_a_message_analysed_before_a_restart_is_a_duplicate(
        tmp_path):
    # The gateway stopped before answering (the engine held the analysis); the next start
    # analysed the stored message, and the sender, which never saw an ACK, sent it again:
    # it was analysed a second time (a second alert for the same result).
    db = tmp_path / "var" / "audit.sqlite3"
    _stored_then_killed(db, "RS1")
    gateway = GatewayProcess(db, RI_GATEWAY_ANALYSIS_ACK_AFTER="analysis").start()
    try:
        gateway.output.wait_for(json_event("analysis", control_id="RS1", status="analysed"))
        assert segments(exchange(gateway.port, oru("RS1")))[1] == "MSA|AA|RS1"
        again = exchange(gateway.port, oru("RS1"))
        assert segments(again)[1] == "MSA|AA|RS1"
        assert _stored(db, "RS1") == [("analysed", "AA", None)]
        with sqlite3.connect(db) as con:
            events = [e for (e,) in con.execute(
                "SELECT event FROM events WHERE control_id = 'RS1' ORDER BY id")]
        assert events == ["received", "resumed", "analysed", "duplicate", "acked", "duplicate"]
    finally:
        gateway.stop()


def test_ack_after_analysis_a_resend_while_the_restart_analyses_the_message_waits_for_it(
        tmp_path):
    # Stored, the gateway killed before its ACK, restarted: the resume analyses the stored
    # message, and the sender's resend arriving meanwhile was no duplicate (the message was
    # neither answered nor analysed yet): stored again and analysed a second time.
    db = tmp_path / "var" / "audit.sqlite3"
    gate = tmp_path / "gate"
    _stored_then_killed(db, "RW1")
    gateway = GatewayProcess(db, RI_GATEWAY_ANALYSIS_ACK_AFTER="analysis",
                             FAKE_ENGINE_GATE=str(gate)).start()
    try:
        with sqlite3.connect(db) as con:
            _until(lambda: con.execute("SELECT 1 FROM events WHERE event = 'resumed'").fetchall())
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT) as sock:
            sock.sendall(frame(oru("RW1")))  # while the resumed analysis waits at the gate
            # The gateway has taken the resend up: it waits for the analysis (now), or
            # stored it as a message of its own (before).
            waiting = json_event("hl7.duplicate_waiting", control_id="RW1")
            _until(lambda: _drain(gateway) or len(_stored(db, "RW1")) > 1 or any(
                waiting(line) for line in gateway.output.seen))
            gate.touch()
            assert segments(_reply(sock))[1] == "MSA|AA|RW1"
        assert _stored(db, "RW1") == [("analysed", "AA", None)]
        with sqlite3.connect(db) as con:
            events = [e for (e,) in con.execute(
                "SELECT event FROM events WHERE control_id = 'RW1' ORDER BY id")]
        assert events == ["received", "resumed", "analysed", "acked", "duplicate"]
        again = exchange(gateway.port, oru("RW1"))  # a later resend: the same ACK
        assert segments(again)[1] == "MSA|AA|RW1"
    finally:
        gate.touch()
        gateway.stop()


def test_ack_after_analysis_a_resend_of_a_message_the_restart_has_not_taken_up_waits_for_it(
        tmp_path):
    # The restart takes its backlog up a few at a time (two here: one worker): a resend of
    # a message further back was no duplicate, stored and analysed, and the original was
    # analysed again when its turn came.
    db = tmp_path / "var" / "audit.sqlite3"
    gate = tmp_path / "gate"
    _stored_then_killed(db, "RB1", "RB2", "RB3")
    gateway = GatewayProcess(db, RI_GATEWAY_ANALYSIS_ACK_AFTER="analysis",
                             FAKE_ENGINE_GATE=str(gate)).start()
    try:
        with sqlite3.connect(db) as con:
            def resumed() -> list[str]:
                return [c for (c,) in con.execute(
                    "SELECT control_id FROM events WHERE event = 'resumed' ORDER BY id")]

            _until(lambda: resumed() == ["RB1", "RB2"])
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT) as sock:
                sock.sendall(frame(oru("RB3")))
                _until(lambda: resumed() == ["RB1", "RB2", "RB3"] or len(_stored(db, "RB3")) > 1)
                gate.touch()
                assert segments(_reply(sock))[1] == "MSA|AA|RB3"
            assert _stored(db, "RB3") == [("analysed", "AA", None)]
            events = [e for (e,) in con.execute(
                "SELECT event FROM events WHERE control_id = 'RB3' ORDER BY id")]
            assert events == ["received", "duplicate", "resumed", "analysed", "acked"]
        gateway.output.wait_for(json_event("analysis", control_id="RB2", status="analysed"))
        # RB3, taken up for its resend, is one of the three resumed.
        gateway.output.wait_for(json_event("analysis.resumed", messages=3))
    finally:
        gate.touch()
        gateway.stop()


def _stored_then_killed(db, *control_ids: str) -> None:
    """``ack_after = "analysis"``: messages committed, their analysis held, the gateway
    killed before their ACKs."""
    held = GatewayProcess(db, RI_GATEWAY_ANALYSIS_ACK_AFTER="analysis",
                          FAKE_ENGINE_HOLD="1").start()
    try:
        for control_id in control_ids:  # a connection each: each waits for its ACK
            sock = socket.create_connection(("127.0.0.1", held.port), timeout=WAIT)
            sock.sendall(frame(oru(control_id)))
            _until(lambda: _stored(db, control_id))  # committed; its analysis never ends
            sock.close()
    finally:
        held.kill()


def _until(condition) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _drain(gateway: GatewayProcess) -> None:
    """Move the lines the gateway has printed so far into ``gateway.output.seen``."""
    lines = gateway.output.lines
    while not lines.empty():
        gateway.output.seen.append(lines.get_nowait())


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\x1c\x0d"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed without a reply"
        data += chunk
    return data[1:-2]


def test_a_huge_frame_of_invalid_bytes_does_not_hold_other_connections(tmp_path):
    # 15 MB of bytes invalid in UTF-8 (the charset MSH-18 names) took seconds to decode on
    # the reactor thread, and no other connection was served meanwhile. Another connection
    # sends message after message until the huge one is answered: one it sent after the
    # huge frame was handed over (received_at, stamped as a frame is handed over) must be
    # stored (row id) before the huge one, so served while that one was decoded.
    huge = oru("BIG1", report="@").replace(b"|2.5.1\r", b"|2.5.1||||||UNICODE UTF-8\r")
    huge = huge.replace(b"||@||", b"||" + b"\xff" * 15_000_000 + b"||")
    gateway = _serve(tmp_path)
    answered = threading.Event()
    small_acks: list[str] = []

    def other_connection() -> None:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT) as sock:
            for n in itertools.count():
                if answered.is_set():
                    return
                sock.sendall(frame(oru(f"SMALL{n}")))
                small_acks.append(segments(_reply(sock))[1])

    other = threading.Thread(target=other_connection)
    try:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT) as big:
            other.start()
            big.sendall(frame(huge))
            assert segments(_reply(big))[1] == "MSA|AA|BIG1"
            answered.set()
            other.join(WAIT)
        assert small_acks and all(ack.startswith("MSA|AA|SMALL") for ack in small_acks)
        with sqlite3.connect(gateway.db) as con:
            (big_id, big_at), = con.execute(
                "SELECT id, received_at FROM messages WHERE control_id = 'BIG1'").fetchall()
            served_meanwhile = con.execute(
                "SELECT count(*) FROM messages WHERE received_at > ? AND id < ?",
                (big_at, big_id)).fetchone()[0]
        assert served_meanwhile > 0
    finally:
        answered.set()
        gateway.stop()
