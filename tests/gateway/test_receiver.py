"""The inbound path over the real listener protocol, without sockets."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timezone

import pytest
from structlog.testing import capture_logs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway.audit import AuditLog
from gateway.commit import GroupCommitter
from gateway.config import MLLPSettings
from gateway.receiver import Receiver
from mappings.errors import ContentError
from mappings.header import read_header
from mllp.server import MLLPServerFactory

from gateway_samples import (
    FakeReport, ManualWriter, frame, immediate_writer, oru, segments, unframe_all,
)

NOW = datetime(2024, 1, 15, 10, 15, 1, tzinfo=timezone.utc)
TS = "20240115101501+0000"


class Harness:
    def __init__(self, tmp_path, *, writer=immediate_writer, mapper=None, checker=None,
                 settings=None):
        self.audit = AuditLog(str(tmp_path / "audit.sqlite3"))
        self.committer = GroupCommitter(self.audit, writer)
        self.accepted = []
        counter = itertools.count(1)
        if settings is None:  # a given mapper is meant to run before the ACK
            settings = MLLPSettings(map_before_ack="full" if mapper else "check")
        self.receiver = Receiver(
            self.committer, settings=settings, checker=checker,
            mapper=mapper or (lambda text: [FakeReport(request=None)]),
            on_accepted=self.accepted.append, ids=lambda: f"ACK{next(counter)}",
            now=lambda: NOW, clock=lambda: 0.0)
        self.factory = MLLPServerFactory(self.receiver, clock=Clock())

    def connect(self, port=5000):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        proto.makeConnection(transport)
        return proto, transport


def test_accepted_message_gets_aa_after_commit(tmp_path):
    writer = ManualWriter()
    h = Harness(tmp_path, writer=writer)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("MSG0001")))
    # Nothing leaves before the commit has finished...
    assert transport.value() == b""
    assert h.audit.messages_for("MSG0001") == []
    writer.finish_all()
    # ...and the ACK leaves once it has.
    assert unframe_all(transport.value()) == [
        f"MSH|^~\\&|RIGW|RAD|RIS|HOSP|{TS}||ACK^R01^ACK|ACK1|P|2.5.1\rMSA|AA|MSG0001".encode()]
    stored = h.audit.messages_for("MSG0001")
    assert [(m["status"], m["ack_code"], m["sender"], m["message_type"]) for m in stored] == [
        ("received", "AA", "RIS^HOSP", "ORU^R01")]
    assert [a.control_id for a in h.accepted] == ["MSG0001"]


@pytest.mark.parametrize("version, expected_type", [
    ("2.2", "ACK"), ("2.3", "ACK^R01"), ("2.4", "ACK^R01^ACK"), ("2.7", "ACK^R01^ACK"),
])
def test_ack_message_type_follows_the_version(tmp_path, version, expected_type):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("V1", version=version, msh9="ORU^R01")))
    assert unframe_all(transport.value()) == [
        f"MSH|^~\\&|RIGW|RAD|RIS|HOSP|{TS}||{expected_type}|ACK1|P|{version}\rMSA|AA|V1".encode()]


def test_unsupported_type_is_rejected_with_err_200(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("Z1", msh9="ZDT^Z01^ZDT_Z01")))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[1:] == [
        "MSA|AR|Z1|message type ZDT is not accepted",
        "ERR||MSH^1^9|200^Unsupported message type^HL70357|E||||message type ZDT is not accepted",
    ]
    assert [(m["status"], m["ack_code"], m["error_code"]) for m in h.audit.messages_for("Z1")] == [
        ("rejected", "AR", "200")]
    assert h.accepted == []


@pytest.mark.parametrize("field, value, code", [
    ("version", "3.0", "203"), ("processing", "X", "202"),
])
def test_unsupported_version_and_processing_id(tmp_path, field, value, code):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("U1", **{field: value})))
    (ack,) = unframe_all(transport.value())
    msa, err = segments(ack)[1:]
    assert (msa.split("|")[:3], err.split("|")[3].split("^")[0]) == (["MSA", "AR", "U1"], code)


@pytest.mark.parametrize("mode", ["full", "check"])
def test_bad_content_is_ae(tmp_path, mode):
    def fails(text, header=None):
        raise ContentError("no report text in any OBX-5", err_code="101", location="OBX-5")

    h = Harness(tmp_path, mapper=fails if mode == "full" else None,
                checker=fails if mode == "check" else None,
                settings=MLLPSettings(map_before_ack=mode))
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("E1", version="2.4")))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[1:] == [
        "MSA|AE|E1|no report text in any OBX-5",
        "ERR|OBX^1^5^101&Required field missing&HL70357",
    ]
    assert h.audit.messages_for("E1")[0]["status"] == "rejected"


def test_internal_failure_is_ar_207(tmp_path):
    def mapper(text):
        raise RuntimeError("bug")

    h = Harness(tmp_path, mapper=mapper)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("I1")))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[1:] == [
        "MSA|AR|I1|internal error; the message was not processed",
        "ERR|||207^Application internal error^HL70357|E||||"
        "internal error; the message was not processed",
    ]


def test_enhanced_mode_answers_ca(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("EN1", version="2.4", msh15="AL", msh16="NE")))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[1] == "MSA|CA|EN1"
    assert h.audit.find_accepted("RIS", "HOSP", "EN1").ack_code == "CA"


def test_acks_leave_in_arrival_order_while_commits_are_slow(tmp_path):
    writer = ManualWriter()
    h = Harness(tmp_path, writer=writer)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("A1")) + frame(oru("A2", msh9="XXX^X01")) + frame(oru("A3")))
    answered = []
    for _ in range(3):
        # One frame at a time reaches the receiver; its ACK waits for its commit.
        assert len(writer.pending) == 1
        writer.finish_one()
        answered.append(len(unframe_all(transport.value())))
    assert answered == [1, 2, 3]
    acks = unframe_all(transport.value())
    assert [segments(a)[1][:9] for a in acks] == ["MSA|AA|A1", "MSA|AR|A2", "MSA|AA|A3"]


def test_duplicate_gets_the_original_ack_and_is_not_processed(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("D1")))
    proto.dataReceived(frame(oru("D1")))
    first, second = unframe_all(transport.value())
    assert first == second
    assert [a.control_id for a in h.accepted] == ["D1"]
    assert [e["event"] for e in h.audit.events(control_id="D1")] == ["received", "duplicate"]
    assert h.audit.events(control_id="D1")[1]["fields"]["same_content"] is True
    # Another sender may reuse the control id: that is not a duplicate.
    proto.dataReceived(frame(oru("D1", facility="OTHER")))
    assert len(h.accepted) == 2


def test_duplicate_now_failing_the_header_checks_still_gets_the_original_ack(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("D2")))
    h.receiver.policy = dataclasses.replace(h.receiver.policy, versions=frozenset())
    proto.dataReceived(frame(oru("D2")))
    first, second = unframe_all(transport.value())
    assert first == second
    assert [e["event"] for e in h.audit.events(control_id="D2")] == ["received", "duplicate"]


def test_map_after_ack_reads_msh_only_and_hands_over_the_text_as_sent(tmp_path):
    h = Harness(tmp_path, settings=MLLPSettings(map_before_ack=False))
    proto, transport = h.connect()
    sent = oru("L1").replace(b"\r", b"\r\n")
    proto.dataReceived(frame(sent))
    assert segments(unframe_all(transport.value())[0])[1] == "MSA|AA|L1"
    assert [a.text.encode() for a in h.accepted] == [sent]


def test_rejected_message_does_not_block_a_corrected_resend(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("R1", version="9.9")))
    proto.dataReceived(frame(oru("R1")))
    acks = unframe_all(transport.value())
    assert [segments(a)[1][:9] for a in acks] == ["MSA|AR|R1", "MSA|AA|R1"]


@pytest.mark.parametrize("bad, msa2, msh", [
    (b"MSH|\xef\xbf\xbd\xef\xbf\xbd|RIS|HOSP|RIGW|RAD|20240115||ORU^R01|BAD1|P|2.5\rPID|1\r",
     "BAD1", "MSH|^~\\&|RIGW|RAD|RIS|HOSP|"),
    # An FS in MSH-5 and MSH-10 (echoed as MSH-3 and MSA-2) is escaped: the AR can be framed.
    (b"MSH|\xef\xbf\xbd|RIS|HOSP|RIGW\x1c|RAD|20240115||ORU^R01|BAD\x1c2|P|2.5\rPID|1\r",
     "BAD\\X1C\\2", "MSH|^~\\&|RIGW\\X1C\\|RAD|RIS|HOSP|"),
])
def test_unreadable_header_with_control_id_gets_ar(tmp_path, bad, msa2, msh):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(bad))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[0].startswith(msh)
    assert segments(ack)[1].startswith(f"MSA|AR|{msa2}|")
    stored = h.audit.messages_for(msa2)
    assert [(m["status"], m["ack_code"]) for m in stored] == [("rejected", "AR")]
    assert not transport.disconnecting


def test_no_msh_at_all_is_stored_and_the_connection_closed(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(b"BHS|^~\\&|X\rPID|1\r"))
    assert transport.value() == b""
    assert transport.disconnecting
    (row,) = h.audit.conn.execute("SELECT status, ack_code, control_id FROM messages").fetchall()
    assert row == ("rejected", None, None)


def test_no_msh_at_all_closes_with_a_warning_not_a_handler_failure(tmp_path):
    # Unanswerable is a documented outcome: the log must not call it a failure of ours.
    h = Harness(tmp_path)
    proto, transport = h.connect()
    with capture_logs() as logs:
        proto.dataReceived(frame(b"BHS|^~\\&|X\rPID|1\r") + frame(oru("BEHIND")))
    assert transport.disconnecting
    assert transport.value() == b""  # nor is the message behind it answered
    events = [(entry["event"], entry["log_level"]) for entry in logs
              if entry["event"].startswith("mllp.")]
    assert events == [("mllp.closed_without_reply", "warning")]
    (closed,) = [entry for entry in logs if entry["event"] == "mllp.closed_without_reply"]
    assert closed["reason"] == "UnanswerableMessage"


@pytest.mark.parametrize("blank", [b"", b"\r", b"\r\n", b" \x00\t"],
                         ids=["empty", "cr", "crlf", "padding"])
def test_a_frame_holding_no_message_is_left_unanswered_on_an_open_connection(tmp_path, blank):
    # Some senders keep an idle connection alive with an empty frame: it used to close the
    # connection (as unanswerable), so each one cost a reconnect.
    h = Harness(tmp_path)
    proto, transport = h.connect()
    with capture_logs() as logs:
        proto.dataReceived(frame(blank))
        assert transport.value() == b""
        assert not transport.disconnecting
        proto.dataReceived(frame(oru("AFTER")))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[1].startswith("MSA|AA|AFTER")
    assert not transport.disconnecting
    rows = h.audit.conn.execute("SELECT control_id FROM messages").fetchall()
    assert rows == [("AFTER",)]  # nothing stored for the blank frame
    (empty,) = [entry for entry in logs if entry["event"] == "hl7.empty_frame"]
    assert empty["log_level"] == "info" and empty["size"] == len(blank)


def test_storage_failure_is_ar_and_says_so(tmp_path):
    from twisted.internet import defer

    h = Harness(tmp_path, writer=lambda fn: defer.fail(OSError("disk full")))
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("S1")))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[1] == "MSA|AR|S1|the message could not be stored; send it again"
    assert h.accepted == []


def test_map_after_ack_answers_aa_without_mapping(tmp_path):
    calls = []
    h = Harness(tmp_path, mapper=lambda text: calls.append(text) or [],
                settings=MLLPSettings(map_before_ack=False))
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("F1")))
    assert segments(unframe_all(transport.value())[0])[1] == "MSA|AA|F1"
    assert calls == []
    assert [(a.control_id, a.reports) for a in h.accepted] == [("F1", None)]


def test_ack_after_analysis_waits_for_the_engine(tmp_path):
    from twisted.internet import defer

    h = Harness(tmp_path)
    pending = {}

    def on_accepted(message):
        pending[message.control_id] = defer.Deferred()
        return pending[message.control_id]

    h.receiver.on_accepted = on_accepted
    h.receiver.ack_after = "analysis"
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("AN1")))
    # Committed, not answered: the engine has not run yet.
    assert transport.value() == b""
    assert h.audit.messages_for("AN1")[0]["ack_code"] is None
    pending["AN1"].callback("analysed")
    assert segments(unframe_all(transport.value())[0])[1] == "MSA|AA|AN1"
    assert h.audit.messages_for("AN1")[0]["ack_code"] == "AA"
    assert h.audit.find_accepted("RIS", "HOSP", "AN1") is not None

    proto.dataReceived(frame(oru("AN2")))
    pending["AN2"].callback("failed")
    ack = unframe_all(transport.value())[1]
    assert segments(ack)[1:] == [
        "MSA|AR|AN2|analysis failed; the message was not processed",
        "ERR|||207^Application internal error^HL70357|E||||"
        "analysis failed; the message was not processed"]
    assert [e["event"] for e in h.audit.events(control_id="AN2")] == ["received", "acked"]


def test_ack_after_analysis_a_resend_of_a_stored_message_nothing_takes_up_is_ar(tmp_path):
    # An earlier run stored RN1 and stopped before analysing it; here nothing can take it
    # up for analysis (no resume: stopping). Its resend must not be AA (the report was
    # not analysed) nor be stored to be analysed besides the original: AR, sent again later.
    from twisted.internet import defer

    first = Harness(tmp_path)
    first.receiver.ack_after = "analysis"
    first.receiver.on_accepted = lambda message: defer.Deferred()  # never analysed
    first.connect()[0].dataReceived(frame(oru("RN1")))
    h = Harness(tmp_path)
    h.receiver.ack_after = "analysis"
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("RN1")))
    assert segments(unframe_all(transport.value())[0])[1].startswith("MSA|AR|RN1|")
    assert [(m["status"], m["ack_code"]) for m in h.audit.messages_for("RN1")] == [
        ("received", None)]
    assert [e["event"] for e in h.audit.events(control_id="RN1")] == ["received", "duplicate"]
    assert h.accepted == []


def test_check_before_ack_answers_ae_with_the_mapping_rules(tmp_path):
    h = Harness(tmp_path)  # the default: the real check_oru, mapping after the ACK
    proto, transport = h.connect()
    no_pid = b"\r".join(line for line in oru("P1").split(b"\r") if not line.startswith(b"PID"))
    proto.dataReceived(frame(no_pid))
    proto.dataReceived(frame(oru("P2").replace(b"|TX|", b"|NM|")))
    proto.dataReceived(frame(oru("P3").replace(b"\r", b"\n")))
    acks = unframe_all(transport.value())
    assert [segments(a)[1:] for a in acks] == [
        ["MSA|AE|P1|PID segment is missing",
         "ERR||PID^1|100^Segment sequence error^HL70357|E||||PID segment is missing"],
        ["MSA|AE|P2|no report text in any OBX-5",
         "ERR||OBX^1^5|101^Required field missing^HL70357|E||||no report text in any OBX-5"],
        ["MSA|AA|P3"],
    ]
    # Accepted: not mapped yet (the workers map it), segments already split on CR.
    assert [(a.control_id, a.reports, a.normalised, a.text.count("\r")) for a in h.accepted] == [
        ("P3", None, True, 5)]
    assert [m["reports"] for m in h.audit.messages_for("P3")] == [1]


def test_check_mode_never_calls_the_mapper(tmp_path):
    calls = []
    h = Harness(tmp_path, mapper=lambda text: calls.append(text) or [],
                settings=MLLPSettings(map_before_ack="check"))
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("C1")))
    assert segments(unframe_all(transport.value())[0])[1] == "MSA|AA|C1"
    assert calls == []


ADT = (b"MSH|^~\\&|ADT|HOSP|RIGW|RAD|20240115101500||ADT^A01^ADT_A01|A1|P|2.5.1\r"
       b"EVN|A01|20240115101500\r"
       b"PID|1||MRN12345^^^HOSP^MR||DOE^JANE||19600214|F\r"
       b"PV1|1|I\r")


@pytest.mark.parametrize("mode", ["full", "check", "none"])
def test_another_accepted_type_gets_aa_without_the_report_rules(tmp_path, mode):
    # An ADT has no OBR or OBX: the ORU's content rules would answer AE (or AR, "only ORU
    # messages can be mapped"), though the configuration says ADT^A01 is accepted.
    mapped = []
    h = Harness(tmp_path, mapper=lambda text: mapped.append(text) or [],
                settings=MLLPSettings(map_before_ack=mode,
                                      accepted_message_types=("ORU^R01", "ADT^A01")))
    proto, transport = h.connect()
    proto.dataReceived(frame(ADT))
    proto.dataReceived(frame(oru("Z1", msh9="ADT^A08^ADT_A01")))  # not in the list
    acks = unframe_all(transport.value())
    assert [segments(a)[1].split("|")[:3] for a in acks] == [
        ["MSA", "AA", "A1"], ["MSA", "AR", "Z1"]]
    assert mapped == []
    assert [a.control_id for a in h.accepted] == ["A1"]
    assert [(m["status"], m["message_type"], m["reports"]) for m in h.audit.messages_for("A1")] \
        == [("received", "ADT^A01", 0)]


def _sent_twice_at_once(h, control_id):
    """The same message on two connections, the second before the first is answered;
    returns the two transports."""
    connections = [h.connect(5001), h.connect(5002)]
    for proto, _ in connections:
        proto.dataReceived(frame(oru(control_id)))
    return [transport for _, transport in connections]


def _duplicate_views(audit, control_id):
    """The duplicate events as the audit views show them (time, id and connection aside)."""
    return [(e["message_id"], e["message_type"], e["sender"], e["ack_code"],
             {k: v for k, v in e["fields"].items() if k not in ("conn_id", "peer")})
            for e in audit.events(control_id=control_id) if e["event"] == "duplicate"]


def _duplicate_lines(logs):
    return [{k: v for k, v in line.items() if k not in ("conn_id", "peer", "duration_ms")}
            for line in logs if line.get("outcome") == "duplicate"]


def test_duplicates_during_the_original_commit_are_audited_like_later_ones(tmp_path):
    writer = ManualWriter()
    h = Harness(tmp_path, writer=writer)
    original = oru("PAR1")
    changed = oru("PAR1", report="IMPRESSION: No pneumothorax.")
    connections = [h.connect(5000 + n) for n in range(4)]
    with capture_logs() as logs:
        connections[0][0].dataReceived(frame(original))
        # Two duplicates while the original's commit is running, one with other content...
        connections[1][0].dataReceived(frame(original))
        connections[2][0].dataReceived(frame(changed))
        assert [t.value() for _, t in connections] == [b""] * 4  # nothing before the commit
        writer.finish_all()
        # ...and one after it, which the commit itself finds: the reference.
        connections[3][0].dataReceived(frame(original))
        writer.finish_all()
    acks = [unframe_all(t.value()) for _, t in connections]
    assert acks[1] == acks[2] == acks[3] == acks[0]
    assert segments(acks[0][0])[1] == "MSA|AA|PAR1"
    assert [a.control_id for a in h.accepted] == ["PAR1"]
    (stored,) = h.audit.messages_for("PAR1")
    # The audit views join each duplicate to the original: sender, type and ACK code.
    expected = (stored["id"], "ORU^R01", "RIS^HOSP", "AA")
    assert _duplicate_views(h.audit, "PAR1") == [
        (*expected, {"size": len(original), "same_content": True, "ack_code": "AA"}),
        (*expected, {"size": len(changed), "same_content": False, "ack_code": "AA"}),
        (*expected, {"size": len(original), "same_content": True, "ack_code": "AA"}),
    ]
    # Each event names the connection the duplicate came on.
    assert [(e["fields"]["conn_id"], e["fields"]["peer"])
            for e in h.audit.events(control_id="PAR1") if e["event"] == "duplicate"] == [
        (2, "127.0.0.1:5001"), (3, "127.0.0.1:5002"), (4, "127.0.0.1:5003")]
    line = {"event": "hl7.message", "log_level": "info", "control_id": "PAR1",
            "message_id": stored["id"], "message_type": "ORU^R01", "outcome": "duplicate",
            "ack_code": "AA"}
    assert _duplicate_lines(logs) == [
        {**line, "same_content": True, "pending": True},
        {**line, "same_content": False, "pending": True},
        {**line, "same_content": True, "pending": None},
    ]


def test_duplicate_waiting_for_an_analysis_that_fails_is_audited_with_the_ar(tmp_path):
    from twisted.internet import defer

    h = Harness(tmp_path)
    analysis = defer.Deferred()
    h.receiver.on_accepted = lambda message: analysis
    h.receiver.ack_after = "analysis"
    # The second arrives once the original is stored, while its analysis is running.
    t1, t2 = _sent_twice_at_once(h, "AN3")
    assert t1.value() == t2.value() == b""
    analysis.callback("failed")
    assert unframe_all(t2.value()) == unframe_all(t1.value())
    assert segments(unframe_all(t1.value())[0])[1].startswith("MSA|AR|AN3")
    (stored,) = h.audit.messages_for("AN3")
    # Answered AR, the original is not an accepted message: found by id, not by key.
    assert _duplicate_views(h.audit, "AN3") == [
        (stored["id"], "ORU^R01", "RIS^HOSP", "AR",
         {"size": len(oru("AN3")), "same_content": True, "ack_code": "AR"})]


def test_duplicate_of_an_original_that_could_not_be_stored(tmp_path):
    writer = ManualWriter()
    h = Harness(tmp_path, writer=writer)
    t1, t2 = _sent_twice_at_once(h, "S2")
    _, failing = writer.pending.pop(0)  # the original's transaction fails
    failing.errback(OSError("disk full"))
    writer.finish_all()
    assert unframe_all(t2.value()) == unframe_all(t1.value())
    assert segments(unframe_all(t1.value())[0])[1].startswith("MSA|AR|S2")
    assert h.audit.messages_for("S2") == []
    # Nothing stored to point at: the event says what the duplicate was answered.
    assert _duplicate_views(h.audit, "S2") == [
        (None, None, None, None,
         {"size": len(oru("S2")), "same_content": True, "ack_code": "AR"})]


def test_rejected_message_failing_to_be_stored_leaves_the_accepted_ones_duplicates(tmp_path):
    writer = ManualWriter()
    h = Harness(tmp_path, writer=writer)
    (p1, t1), (p2, t2), (p3, t3) = (h.connect(5000 + n) for n in range(3))
    p1.dataReceived(frame(oru("R2", version="9.9")))  # rejected: never a duplicate's original
    p2.dataReceived(frame(oru("R2")))  # accepted, its commit behind the rejected one's
    p3.dataReceived(frame(oru("R2")))  # a duplicate of the accepted one
    _, failing = writer.pending.pop(0)
    failing.errback(OSError("disk full"))
    writer.finish_all()
    assert segments(unframe_all(t1.value())[0])[1].startswith("MSA|AR|R2")
    assert segments(unframe_all(t2.value())[0])[1] == "MSA|AA|R2"
    assert unframe_all(t3.value()) == unframe_all(t2.value())
    (stored,) = h.audit.messages_for("R2")
    assert [e["message_id"] for e in h.audit.events(control_id="R2")
            if e["event"] == "duplicate"] == [stored["id"]]


def test_an_ack_the_listener_could_not_write_is_logged_without_content(tmp_path):
    writer = ManualWriter()
    h = Harness(tmp_path, writer=writer)
    proto, transport = h.connect(5001)
    proto.dataReceived(frame(oru("GONE1")))
    proto.connectionLost(Failure(ConnectionDone()))  # the sender went away during the commit
    with capture_logs() as logs:
        writer.finish_all()
    assert transport.value() == b""
    assert h.audit.messages_for("GONE1")[0]["ack_code"] == "AA"  # stored all the same
    (dropped,) = [line for line in logs if line["event"] == "hl7.ack_dropped"]
    assert dropped == {"event": "hl7.ack_dropped", "log_level": "warning", "control_id": "GONE1",
                       "conn_id": 1, "peer": "127.0.0.1:5001", "ack_code": "AA"}
    assert "DOE" not in repr(logs) and "pneumothorax" not in repr(logs)


@pytest.mark.parametrize("mode", ["check", "none"])
@pytest.mark.parametrize("charset, body", [
    ("undefined", b""), ("idna", b""), ("hex", b"\xe9"), ("rot13", b"\xe9"),
])
def test_msh18_naming_a_codec_that_is_not_a_charset_gets_the_default_and_an_aa(
        tmp_path, mode, charset, body):
    # The sender's MSH-18 names a Python codec that cannot decode HL7 text: the message is
    # read in the default charset (as with an empty MSH-18), stored and answered.
    h = Harness(tmp_path, settings=MLLPSettings(map_before_ack=mode))
    proto, transport = h.connect()
    text = oru("CS1").replace(b"|2.5.1\r", b"|2.5.1||||||" + charset.encode() + b"\r", 1)
    proto.dataReceived(frame(text + b"NTE|1||M" + body + b"ller\r"))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[0].split("|")[17] == charset  # MSH-18 copied, as for any unknown name
    assert segments(ack)[1] == "MSA|AA|CS1"
    assert [(m["status"], m["ack_code"], m["charset"]) for m in h.audit.messages_for("CS1")] == [
        ("received", "AA", "utf-8")]
    (received,) = [e for e in h.audit.events(control_id="CS1") if e["event"] == "received"]
    assert received["fields"].get("replaced") == (1 if body else None)
    assert not transport.disconnecting


def test_an_ack_after_analysis_that_cannot_be_recorded_is_ar_for_the_sender_and_its_duplicates(
        tmp_path):
    from twisted.internet import defer

    from gateway.errors import AuditError

    writer = ManualWriter()
    h = Harness(tmp_path, writer=writer)
    analysis = defer.Deferred()
    h.receiver.on_accepted = lambda message: analysis
    h.receiver.ack_after = "analysis"
    (first, first_t), (second, second_t) = h.connect(5001), h.connect(5002)
    first.dataReceived(frame(oru("AN3")))
    writer.finish_all()  # the message is stored; the ACK waits for the analysis
    second.dataReceived(frame(oru("AN3")))  # a duplicate, waiting for that ACK
    analysis.callback("analysed")
    _, ack_write = writer.pending.pop(0)
    ack_write.errback(AuditError("audit database write failed: disk I/O error"))
    writer.finish_all()  # the duplicate's event
    acks = [unframe_all(t.value()) for t in (first_t, second_t)]
    assert acks[0] == acks[1] and len(acks[0]) == 1
    assert segments(acks[0][0])[1].startswith("MSA|AR|AN3|")
    assert "207" in segments(acks[0][0])[2]
    (stored,) = h.audit.messages_for("AN3")
    assert stored["ack_code"] is None  # not recorded: a resend is not taken for a duplicate


# --- every frame gets a framed ACK: the fuzzing reproducers --------------------------------

def _ack_field(ack: bytes, segment: str, number: int, fs: str = "|") -> str:
    fields = next(s for s in segments(ack) if s.startswith(segment)).split(fs)
    return fields[number - 1] if segment == "MSH" else fields[number]


@pytest.mark.parametrize("payload, msa2, msh5", [
    (b"MSH|^~\\&|A\x1cB|F|R|RF|20240101||ORU^R01|T7|P|2.5", "T7", "A\\X1C\\B"),
    (b"MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|T8\x1cX|P|2.5", "T8\\X1C\\X", "A"),
])
def test_frame_byte_in_an_echoed_field_still_gets_a_framed_ack(tmp_path, payload, msa2, msh5):
    # The FS used to be copied into the ACK: framing refused it and the connection closed
    # with no answer, so the sender resent the message for ever.
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(payload))
    proto.dataReceived(frame(payload))  # rejected (AE) messages are answered afresh
    acks = unframe_all(transport.value())
    assert [(_ack_field(a, "MSA", 1), _ack_field(a, "MSA", 2), _ack_field(a, "MSH", 5),
             _ack_field(a, "MSH", 10)) for a in acks] == [
        ("AE", msa2, msh5, "ACK1"), ("AE", msa2, msh5, "ACK2")]  # AE: there is no PID
    assert not transport.disconnecting
    stored = h.audit.conn.execute("SELECT ack_payload FROM messages ORDER BY id").fetchall()
    assert [row[0] for row in stored] == acks


def test_frame_byte_in_an_accepted_message_and_its_duplicate(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    sent = oru("T9").replace(b"|RIS|HOSP|", b"|RIS\x1c|HOSP|").replace(b"|T9|", b"|T9\x1c1|")
    proto.dataReceived(frame(sent) + frame(sent))
    first, second = unframe_all(transport.value())
    assert first == second
    assert segments(first) == [
        f"MSH|^~\\&|RIGW|RAD|RIS\\X1C\\|HOSP|{TS}||ACK^R01^ACK|ACK1|P|2.5.1",
        "MSA|AA|T9\\X1C\\1"]
    assert len(h.accepted) == 1
    (stored,) = h.audit.conn.execute("SELECT ack_payload FROM messages")
    assert stored[0] == first


def test_duplicate_of_a_row_stored_with_an_unframeable_ack_gets_a_framed_one(tmp_path):
    # Rows written before ACKs were made frameable hold the sender's FS in ack_payload.
    h = Harness(tmp_path)
    proto, transport = h.connect()
    sent = oru("T10").replace(b"|T10|", b"|T10\x1cX|")
    proto.dataReceived(frame(sent))
    (good,) = unframe_all(transport.value())
    legacy = good.replace(b"\\X1C\\", b"\x1c")
    h.audit.conn.execute("UPDATE messages SET ack_payload = ?", (legacy,))
    h.audit.conn.commit()
    proto.dataReceived(frame(sent))
    assert unframe_all(transport.value()) == [good, good]
    assert not transport.disconnecting


def test_plus_field_separator_gets_an_ack_whose_fields_line_up(tmp_path):
    # MSH-7's "+0000" used to split into two fields, shifting MSH-9 and MSH-10 of the ACK.
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(oru("PL1").replace(b"|", b"+")))
    (ack,) = unframe_all(transport.value())
    header = read_header(ack.decode())
    assert (header.message_datetime, header.message_code, header.message_structure,
            header.control_id, header.processing_id, header.version) == (
        NOW.astimezone().strftime("%Y%m%d%H%M%S"), "ACK^R01", "ACK", "ACK1", "P", "2.5.1")
    assert segments(ack)[1] == "MSA+AA+PL1"


FUZZ_ORU = (b"MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|C1|P|2.5\rPID|||M1\rOBR|1|||X|||20240101\r"
            b"OBX|1|")


@pytest.mark.parametrize("obx_tail, msa", [
    (b"FT|X||A\\.sp 99999999999999999999\\", "MSA|AA|C1"),
    (b"FT|X||A\\.sk 99999999999999999999\\B", "MSA|AA|C1"),
    (b"ED|X||^text^xml^^<a><section><text>" + b"<b>" * 1000 + b"x" + b"</b>" * 1000
     + b"</text></section></a>", "MSA|AE|C1|no report text in any OBX-5"),
    (b'ED|X||^text^xml^^<?xml version="1.0" encoding="x"?><a/>',
     "MSA|AE|C1|no report text in any OBX-5"),
])
def test_report_content_that_raised_is_answered_as_content(tmp_path, obx_tail, msa):
    # OverflowError, RecursionError and LookupError in the content check were AR 207.
    h = Harness(tmp_path)
    proto, transport = h.connect()
    proto.dataReceived(frame(FUZZ_ORU + obx_tail))
    (ack,) = unframe_all(transport.value())
    assert segments(ack)[1] == msa


def _with_msh18(payload: bytes, charset: bytes) -> bytes:
    return payload.replace(b"|2.5.1\r", b"|2.5.1||||||" + charset + b"\r", 1)


@pytest.mark.parametrize("mode", ["check", "none"])
@pytest.mark.parametrize("charset, codec, character", [
    ("SHIFT_JIS", "shift_jis", "倒"), ("SHIFT_JIS", "shift_jis", "ポ"), ("GB18030", "gb18030", "亅"),
    ("BIG5", "big5", "吜"),
])
def test_a_character_whose_second_byte_is_the_field_separator_is_read_in_the_declared_charset(
        tmp_path, mode, charset, codec, character):
    # Its second byte is 0x7C, "|": read byte by byte, MSH-18 moved one field and the
    # message got AR 200 for "ORU_R01", answered and stored under MSH-9 as its control id.
    assert character.encode(codec)[1:] == b"|"
    h = Harness(tmp_path, settings=MLLPSettings(map_before_ack=mode))
    proto, transport = h.connect()
    text = _with_msh18(oru("MSG0001"), charset.encode()).decode("ascii")
    proto.dataReceived(frame(text.replace("|RIS|", f"|RIS{character}|", 1).encode(codec)))
    (ack,) = unframe_all(transport.value())
    assert ack == (f"MSH|^~\\&|RIGW|RAD|RIS{character}|HOSP|{TS}||ACK^R01^ACK|ACK1|P|2.5.1||||||"
                   f"{charset}\rMSA|AA|MSG0001").encode(codec)
    assert [(m["status"], m["ack_code"], m["charset"], m["sender"]) for m in
            h.audit.messages_for("MSG0001")] == [("received", "AA", codec, f"RIS{character}^HOSP")]
    assert [a.header.sending_application for a in h.accepted] == [f"RIS{character}"]


MSH_ALONE = b"MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|C5|P|2.5"
UNREADABLE = b"MSH|\xef\xbf\xbd\xef\xbf\xbd|RIS|HOSP|RIGW|RAD|20240115||ORU^R01|BAD1|P|2.5\rPID|1\r"


@pytest.mark.parametrize("before, after", [(b"\x00", b""), (b"", b"\x00\x00"), (b"\x00\r\n", b"\r\n\x00")])
def test_nul_padding_around_a_message_is_ignored_in_every_mode(tmp_path, before, after):
    # Some senders pad frames with NULs. They are not part of the message, whether the
    # receiver normalises the segments ("check", "full") or reads MSH as sent ("none").
    answers = {}
    for mode in ("check", "full", "none"):
        h = Harness(tmp_path / mode, settings=MLLPSettings(map_before_ack=mode))
        proto, transport = h.connect()
        for payload in (oru("P1"), MSH_ALONE, UNREADABLE):
            proto.dataReceived(frame(before + payload + after))
        answers[mode] = [segments(ack)[:2] for ack in unframe_all(transport.value())]
        assert not transport.disconnecting
        assert [m["status"] for m in h.audit.messages_for("P1")] == ["received"]
    for mode, (oru_ack, msh_alone_ack, unreadable_ack) in answers.items():
        assert oru_ack[1] == "MSA|AA|P1"
        # MSH-12 is "2.5", not "2.5\x00" (AR 203). The content check finds no PID in "check"
        # (the test's mapper in "full" maps anything): the modes differ only by design.
        assert msh_alone_ack[0] == f"MSH|^~\\&|R|RF|A|F|{TS}||ACK^R01^ACK|ACK2|P|2.5"
        assert msh_alone_ack[1].split("|")[:3] == ["MSA", "AE" if mode == "check" else "AA", "C5"]
        assert unreadable_ack[1].startswith("MSA|AR|BAD1|")
    assert answers["check"][0] == answers["full"][0] == answers["none"][0]
    assert answers["check"][2] == answers["full"][2] == answers["none"][2]


@pytest.mark.parametrize("mode", ["check", "none"])
@pytest.mark.parametrize("bom, declared, sent_in, ack_in, named", [
    # A byte order mark wins over MSH-18: the ACK is in the BOM's encoding and says so.
    (b"\xef\xbb\xbf", "8859/1", "utf-8", "utf-8", "UNICODE UTF-8"),
    (b"\xff\xfe", "8859/1", "utf-16-le", "utf-16-le", "UNICODE UTF-16"),
    (b"\xfe\xff", "8859/1~UNICODE UTF-8", "utf-16-be", "utf-16-be", "UNICODE UTF-16"),
    # UTF-16 declared on an MSH that reads as ASCII: the message is read as UTF-8.
    (b"", "UNICODE UTF-16", "utf-8", "utf-8", "UNICODE UTF-8"),
    # Declared and used alike: echoed as sent, repetitions and unknown names included.
    (b"", "8859/1", "latin-1", "latin-1", "8859/1"),
    (b"", "X-NOT-KNOWN~8859/1", "latin-1", "latin-1", "X-NOT-KNOWN~8859/1"),
    (b"\xef\xbb\xbf", "UNICODE UTF-8", "utf-8", "utf-8", "UNICODE UTF-8"),
])
def test_the_ack_names_the_charset_it_is_encoded_in(tmp_path, mode, bom, declared, sent_in,
                                                    ack_in, named):
    h = Harness(tmp_path, settings=MLLPSettings(map_before_ack=mode))
    proto, transport = h.connect()
    text = oru("CS2", app="RADIOLOGIA").decode("ascii").replace(
        "|2.5.1\r", f"|2.5.1||||||{declared}\r", 1).replace("RADIOLOGIA", "RADIOLOGÍA")
    proto.dataReceived(frame(bom + text.encode(sent_in)))
    (ack,) = unframe_all(transport.value())
    msh, msa = ack.decode(ack_in).split("\r")[:2]
    fields = msh.split("|")
    assert fields[17] == named
    assert fields[4] == "RADIOLOGÍA"  # MSH-3 echoed at MSH-5, readable in what MSH-18 says
    assert msa == "MSA|AA|CS2"


def test_an_unreadable_msh_is_answered_in_its_charset_and_names_it(tmp_path):
    h = Harness(tmp_path)
    proto, transport = h.connect()
    # MSH-2 is not a set of encoding characters: MSH cannot be read, MSH-10 and MSH-18 can.
    text = ("MSH|^~^&|RADIOLOGÍA|HOSP|RIGW|RAD|20240115101500||ORU^R01|CS3|P|2.5.1||||||8859/1\r"
            "PID|1||MRN1\r")
    proto.dataReceived(frame(text.encode("latin-1")))
    (ack,) = unframe_all(transport.value())
    msh, msa = ack.decode("latin-1").split("\r")[:2]
    assert msh.split("|")[4] == "RADIOLOGÍA" and msh.split("|")[17] == "8859/1"
    assert msa.startswith("MSA|AR|CS3|")
