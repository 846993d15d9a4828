"""``ri-gateway send`` as a real process against real listeners on loopback: which files it
reads (MLLP-framed dumps, batches, UTF-16, UTF-8 with a BOM), what the receiver gets, and
where it connects (IPv6 addresses).

The receiver is ``ri-gateway sink --out``, which decodes every message with the gateway's
own decoder (mappings.decoding) and writes its segments one per line, so what it wrote
is what the gateway would read; the charset the gateway itself picks is checked against
``ri-gateway serve``.
"""

from __future__ import annotations

import codecs
import re
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner, Result
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from gateway.cli import main
from gateway.commands.send import client_endpoint

from gateway_process import ROOT, GatewayProcess, LineReader, cli_env, run_cli
from gateway_samples import oru

VT, FS, CR = "\x0b", "\x1c", "\r"


class Sink:
    """``ri-gateway sink`` on a free port of ``host``; ``received()`` is what it decoded."""

    def __init__(self, tmp_path, host: str = "127.0.0.1") -> None:
        self.out = tmp_path / "sink.hl7"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "sink", "--host", host, "--port", "0",
             "--out", str(self.out)],
            cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = LineReader(self.proc.stdout)
        line = self.output.wait_for(lambda l: l.startswith("sink listening on "))
        self.port = int(re.search(r":(\d+) \(ACK", line).group(1))
        self.seen = 0  # characters of the --out file already returned by received()

    def received(self) -> list[list[str]]:
        """The messages received since the last call, each as its list of segments."""
        text = self.out.read_text(encoding="utf-8") if self.out.exists() else ""
        new, self.seen = text[self.seen:], len(text)
        return [block.split("\n") for block in new.split("\n\n") if block]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    process = Sink(tmp_path_factory.mktemp("sink"))
    yield process
    process.stop()


def message(control_id: str) -> str:
    """An ORU whose patient name and report have characters outside ASCII and latin-1.

    Windows-1252 decodes each of their UTF-8 bytes too, so a gateway whose default is
    Windows-1252 picks UTF-8 for them only if told by a BOM (the gateway test below).
    """
    return (oru(control_id).decode("ascii")
            .replace("DOE^JANE", "MÜLLER^ZOË")
            .replace("Dr. Smith", "Dr. Søren Wójcik (王), ±2 mm"))


def segments(text: str) -> list[str]:
    return text.rstrip(CR).split(CR)


def send(port: int, *paths, host: str = "127.0.0.1") -> subprocess.CompletedProcess:
    return run_cli("send", "--host", host, "--port", str(port), "--timeout", "30",
                   *[str(p) for p in paths])


def acked(path, ids: list[str]) -> list[str]:
    """What ``send`` prints for ``path`` when every message in it was answered AA."""
    lines = []
    for index, control_id in enumerate(ids, 1):
        lines += [f"{path}#{index} MSH-10={control_id}", f"  MSA|AA|{control_id}"]
    return lines


THREE = [message("F1"), message("F2"), message("F3")]
DUMPS = {
    "frames back to back": "".join(VT + m + FS + CR for m in THREE),
    "frames with LF after each": "".join(VT + m + FS + CR + "\n" for m in THREE),
    "frames with CRLF after each": "".join(VT + m + FS + CR + "\r\n" for m in THREE),
    "frames without VT": "".join(m + FS + CR for m in THREE),
    "frames without the CR after FS": "".join(VT + m + FS for m in THREE),
    "frames with an engine's log line before each": "".join(
        f"2024-01-15 10:15:0{i} received from 127.0.0.1:41562 ({len(m)} bytes)\n"
        + VT + m + FS + CR + "\n" for i, m in enumerate(THREE)),
    "bare, framed and bare with LF line ends": (
        THREE[0].replace(CR, "\n") + "\n" + VT + THREE[1] + FS + CR + "\n\n"
        + THREE[2].replace(CR, "\r\n")),
    "bare with blank lines (as before)": "\n\n".join(m.replace(CR, "\r\n") for m in THREE),
}


def write(tmp_path, contents: dict[str, bytes]) -> list:
    """One file per entry, named after its key (so a failure names the case)."""
    paths = []
    for name, content in contents.items():
        paths.append(tmp_path / (re.sub(r"\W+", "-", name) + ".hl7"))
        paths[-1].write_bytes(content)
    return paths


def test_send_reads_mllp_framed_dumps(sink, tmp_path):
    # One send for every layout (a process each would cost a second apiece).
    paths = write(tmp_path, {name: dump.encode("utf-8") for name, dump in DUMPS.items()})
    result = send(sink.port, *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        line for path in paths for line in acked(path, ["F1", "F2", "F3"])]
    assert sink.received() == [segments(m) for m in THREE] * len(paths)


def test_send_sends_each_message_of_a_batch_alone(sink, tmp_path):
    # Two batches in a file envelope, bare, and a batch framed whole as one MLLP frame.
    # MLLP carries one message per frame: the envelope segments are not sent, and each
    # message gets its own ACK.  A line of text quoting MSH does not start a message.
    first = message("B1").replace("PV1|1|O", "NTE|1||Seen on\nMSH segment quoted in the text")
    batches = "\r\n".join([
        "FHS|^~\\&|RIS|HOSP|||20240115", "BHS|^~\\&|RIS|HOSP|||20240115", first,
        message("B2"), "BTS|2", "BHS|^~\\&|RIS|HOSP|||20240115", message("B3"), "BTS|1",
        "FTS|2"])
    framed = VT + "BHS|^~\\&|RIS|HOSP\r" + message("B4") + message("B5") + "BTS|2\r" + FS + CR
    bare, whole = tmp_path / "batches.hl7", tmp_path / "framed-batch.hl7"
    bare.write_bytes(batches.encode("utf-8"))
    whole.write_bytes(framed.encode("utf-8"))
    result = send(sink.port, bare, whole)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == (acked(bare, ["B1", "B2", "B3"])
                                          + acked(whole, ["B4", "B5"]))
    received = sink.received()
    assert [m[0].split("|")[9] for m in received] == ["B1", "B2", "B3", "B4", "B5"]
    assert not [s for m in received for s in m if s[:3] in ("FHS", "BHS", "BTS", "FTS")]
    assert received[0] == segments(first.replace("\nMSH", "\rMSH"))


def refused(path) -> Result:
    """``send`` in process (a second faster than a process) for a file it refuses before
    it connects, so no reactor runs in the test process."""
    return CliRunner().invoke(main, ["send", "--port", "9", str(path)])


@pytest.mark.parametrize("content", [
    b"", b"hello\n", b"\x0b\x1c\r\n\x0b\x1c\r\n", b"FHS|^~\\&|RIS\rBHS|^~\\&\rBTS|0\rFTS|1\r",
    b"PID|1||MRN1\r", "no message here\r\n".encode("utf-16"),
], ids=["empty", "text", "empty frames", "empty batch", "no MSH", "UTF-16 text"])
def test_a_file_without_a_message_exits_2(tmp_path, content):
    path = tmp_path / "none.hl7"
    path.write_bytes(content)
    result = refused(path)
    assert result.exit_code == 2
    assert result.stderr == f"ri-gateway: {path}: no HL7 message (no MSH segment) found\n"


LE, BE, UTF8 = codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF8


@pytest.mark.parametrize(("content", "error"), [
    (LE + message("T1").encode("utf-16-le") + b"\n",
     f"not valid UTF-16-LE (truncated data at byte {2 + 2 * len(message('T1'))})"),
    # Without a BOM, a VT in UTF-16 is read as the VT byte of a capture (see send.py):
    # the "frame" from byte 1 (LE) or 2 (BE) to the FS byte ends one byte short.
    ((VT + message("T2") + FS + CR).encode("utf-16-le"),
     f"not valid UTF-16-BE (truncated data at byte {1 + 2 * len(message('T2'))}; without a "
     "byte order mark, the encoding was guessed)"),
    ((VT + message("T3") + FS + CR).encode("utf-16-be"),
     f"not valid UTF-16-BE (truncated data at byte {2 + 2 * len(message('T3'))}; without a "
     "byte order mark, the encoding was guessed)"),
], ids=["odd length", "framed LE without BOM", "framed BE without BOM"])
def test_utf16_that_does_not_decode_exits_2(tmp_path, content, error):
    path = tmp_path / "odd.hl7"
    path.write_bytes(content)
    result = refused(path)
    assert result.exit_code == 2
    assert result.stderr == f"ri-gateway: {path}: {error}\n"


def test_send_reads_utf16_and_utf8_bom_files(sink, tmp_path):
    # Each file in one encoding, as an editor saves it: CRLF line ends, a blank line
    # between messages; framed, the VT and FS are characters of the file's encoding.
    ids = ["U1", "U2", "U3"]
    texts = [message(i) for i in ids]
    bare = "\r\n".join(t.replace(CR, "\r\n") for t in texts)
    framed = "".join(VT + t + FS + CR + "\r\n" for t in texts)
    paths = write(tmp_path, {
        "UTF-16LE BOM": LE + bare.encode("utf-16-le"),
        "UTF-16BE BOM": BE + bare.encode("utf-16-be"),
        "UTF-16LE": bare.encode("utf-16-le"),
        "UTF-16BE": bare.encode("utf-16-be"),
        "UTF-8 BOM": UTF8 + bare.encode("utf-8"),
        "UTF-16LE BOM framed": LE + framed.encode("utf-16-le"),
        "UTF-16BE BOM framed": BE + framed.encode("utf-16-be"),
        "UTF-8 BOM framed": UTF8 + framed.encode("utf-8"),
    })
    result = send(sink.port, *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    # The ACKs come back in the message's encoding; send prints them decoded.
    assert result.stdout.splitlines() == [line for path in paths for line in acked(path, ids)]
    assert sink.received() == [segments(t) for t in texts] * len(paths)


def test_send_reads_a_capture_of_utf16_frames(sink, tmp_path):
    # A dump of UTF-16 traffic as it was on the wire: single-byte VT/FS around payloads
    # in UTF-16, each with its own BOM or none, next to an ASCII-compatible frame.
    texts = [message("C1"), message("C2"), message("C3")]
    payloads = [LE + texts[0].encode("utf-16-le"), texts[1].encode("utf-16-be"),
                texts[2].encode("utf-8")]
    path = tmp_path / "capture.hl7"
    path.write_bytes(b"".join(b"\x0b" + p + b"\x1c\r\n" for p in payloads))
    result = send(sink.port, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == acked(path, ["C1", "C2", "C3"])
    assert sink.received() == [segments(t) for t in texts]


def test_the_gateway_decodes_each_message_in_the_files_encoding(tmp_path):
    # A gateway whose default charset is not UTF-8: a message without MSH-18 is decoded
    # by its BOM, so the file's BOM must go with every message, not just the first.
    gateway = GatewayProcess(tmp_path / "var" / "audit.sqlite3",
                             RI_GATEWAY_MLLP_DEFAULT_CHARSET="cp1252").start()
    try:
        utf16, utf8 = tmp_path / "utf16.hl7", tmp_path / "utf8.hl7"
        utf16.write_bytes("\r\n".join([message("G1"), message("G2")]).encode("utf-16"))
        utf8.write_bytes(UTF8 + "\n".join(
            [message("G3"), message("G4")]).encode("utf-8"))
        result = send(gateway.port, utf16, utf8)
    finally:
        gateway.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == acked(utf16, ["G1", "G2"]) + acked(utf8, ["G3", "G4"])
    with sqlite3.connect(gateway.db) as con:
        rows = dict(con.execute("SELECT control_id, charset FROM messages"))
    assert rows == {"G1": "utf-16-le", "G2": "utf-16-le", "G3": "utf-8", "G4": "utf-8"}


@implementer(IHostResolution)
class Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass  # resolved at once: nothing left to cancel


@implementer(IHostnameResolver)
class NumericResolver:
    """Resolves address literals as the system does (no name look-up, no network) and
    records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        self.asked.append((hostName, portNumber))
        resolution = Resolution(hostName)
        receiver.resolutionBegan(resolution)
        for family, _, _, _, address in socket.getaddrinfo(
                hostName, portNumber, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST):
            kind = IPv6Address if family == socket.AF_INET6 else IPv4Address
            receiver.addressResolved(kind("TCP", address[0], address[1]))
        receiver.resolutionComplete()
        return resolution


@pytest.mark.parametrize("host", ["::1", "[::1]", " ::1 ", "127.0.0.1"])
def test_the_endpoint_connects_to_an_ipv6_address_and_port(host):
    # No IPv6 networking needed: the reactor records the connection instead of making it.
    reactor = MemoryReactorClock()
    reactor.nameResolver = NumericResolver()
    client_endpoint(reactor, host, 23001).connect(Factory.forProtocol(Protocol))
    reactor.advance(0)
    address = host.strip(" []")
    assert reactor.nameResolver.asked == [(address, 23001)]
    assert [c[:2] for c in reactor.tcpClients] == [(address, 23001)]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_send_to_an_ipv6_address(tmp_path):
    sink = Sink(tmp_path, host="::1")
    path = tmp_path / "m.hl7"
    path.write_bytes(oru("V6"))
    try:
        result = send(sink.port, path, host="::1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == acked(path, ["V6"])
    finally:
        sink.stop()
    closed = send(sink.port, path, host="::1")  # nothing listens there any more
    assert closed.returncode == 3
    assert closed.stderr.startswith(f"ri-gateway: cannot connect to [::1]:{sink.port}: ")


def test_a_reply_ended_by_fs_alone_then_a_close_is_named(tmp_path):
    # A receiver that ends its ACK with FS and no CR and then closes the connection: send
    # said only "connection lost before the reply arrived", as if the peer had sent nothing,
    # where a timeout on the same reply names the missing CR and lenient_end.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_and_close() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\x1c\r" not in data:
                data += conn.recv(65536)
            conn.sendall(b"\x0bMSH|^~\\&|EHR|H|RIGW|H|20240115||ACK^R01^ACK|A1|P|2.5.1\r"
                         b"MSA|AA|FSCLOSE1\r\x1c")

    thread = threading.Thread(target=answer_and_close, daemon=True)
    thread.start()
    path = tmp_path / "one.hl7"
    path.write_bytes(oru("FSCLOSE1"))
    try:
        result = run_cli("send", "--host", "127.0.0.1", "--port", str(port), "--timeout", "10",
                         str(path))
    finally:
        server.close()
        thread.join(5)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "connection lost before the reply arrived" in result.stdout
    assert "ended with FS and no CR" in result.stdout and "lenient_end" in result.stdout
