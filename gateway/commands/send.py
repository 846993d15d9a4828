"""``ri-gateway send``: send HL7 messages from files over MLLP and print each ACK.

What a file may hold (each rule has a test in tests/gateway/test_send.py):

* **Bare messages**, one after another, segments ended by CR, LF or CRLF, with or
  without blank lines between them.
* **MLLP frames** (``VT payload FS CR``), as interface engines dump what they sent or
  received: back to back, with line breaks between them, with or without the VT or the
  CR, and mixed with bare messages.  VT and FS are boundaries, never content (a payload
  holding either could not be framed again): a message ends at its frame's FS, and text
  between a frame's end and the next ``MSH`` (a timestamp line an engine wrote) is not
  part of any message.  A VT inside a frame (a sender that gave up and started again)
  ends the truncated message before it, which is still sent: ``send`` sends every
  message in the file and lets the receiver judge it, rather than drop one silently.
* **Batch and file envelopes** (FHS, BHS, BTS, FTS) are dropped and each message of the
  batch is sent on its own, with its own ACK: MLLP carries one message per frame, and a
  receiver reads a payload by its MSH (the gateway rejects one without), so a batch sent
  whole would be refused whole.

A message starts at ``MSH`` followed by its field separator at the start of a line or a
frame, so report text quoting ``MSH`` inside a segment starts nothing; lines before the
first ``MSH`` of a file or frame are not sent, blank lines are dropped, and each message
is sent with its segments joined by CR.  A file without any message is an InputError.

Encodings (decided once per file, then once per frame of a byte-framed dump):

* Bytes in an ASCII-compatible encoding (UTF-8, ISO 8859, Windows-125x, ...) are sent
  unchanged; the receiver reads MSH-18 to decode them.
* A **UTF-8 BOM** at the start of the file is sent at the start of every message of the
  file, and one that stands before a message's MSH (files joined with ``cat``) is sent
  with that message: the BOM is the file's word that its bytes are UTF-8, and the
  gateway lets a BOM win over MSH-18 and its default charset (mappings.decoding), so
  without it a message would be decoded by whatever those say.
* A **UTF-16 BOM** at the start makes the whole file UTF-16 text (VT/FS, if any, are
  UTF-16 characters, as an editor saves a framed dump).  Without a BOM a file is taken
  for UTF-16 when it starts (after blank lines) with a segment id in UTF-16: the pattern
  of NUL bytes by which the gateway itself recognises a UTF-16 message without a BOM.
  Each message is sent in the file's byte order, with the BOM if the file had one, so
  the gateway decodes it as it would decode the file's first message sent as it is.
* A frame of a byte-framed dump whose payload starts with a UTF-16 BOM or the UTF-16
  pattern above (a capture of UTF-16 traffic, where VT and FS are single bytes) is
  decoded on its own in the same way.  A file without a BOM that starts with a VT in
  UTF-16 cannot be told from such a capture (``0B 00 4D 00 53 00 48 00`` is VT MSH in
  UTF-16LE, and a VT byte before MSH in UTF-16BE), so it is read as a capture; its
  frames then have an odd number of bytes, and the file is refused: it needs its BOM.
* UTF-16 that does not decode (an odd number of bytes) is an InputError naming the byte.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.errors import InputError, NegativeOutcome, PeerUnavailable

if TYPE_CHECKING:
    from twisted.internet.endpoints import HostnameEndpoint

__all__ = ["client_endpoint", "send", "split_messages"]

_UTF8_BOM_TEXT = codecs.BOM_UTF8.decode("latin-1")  # the UTF-8 BOM in text read as latin-1
_BOM_TEXT = f"\ufeff|{_UTF8_BOM_TEXT}"  # a BOM in UTF-16 text, or in bytes read as latin-1
# VT and FS: the MLLP frame boundaries (the CR after FS is a line break like any other).
_FRAMING = re.compile("[\x0b\x1c]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A field separator: never a letter, a digit or white space (a reader could not tell it
# from the field's content), so a line of report text such as "MSH was..." starts nothing.
_SEPARATOR = r"[^\sA-Za-z0-9]"
# A message starts at MSH and its field separator at the start of a line (or of a frame),
# perhaps after a BOM that is then sent with it.
_MESSAGE_START = re.compile(rf"(?:^|(?<=[\r\n]))(?P<bom>{_BOM_TEXT})?(?P<msh>MSH)(?={_SEPARATOR})")
# Lines not sent: blank ones, and batch/file envelope segments (see the module docstring).
_DROPPED_LINE = re.compile(rf"(?:{_BOM_TEXT})?(?:\s*$|(?:FHS|BHS|BTS|FTS)(?:{_SEPARATOR}|$))")
# UTF-16 without a BOM: blank lines, then a segment id, with the NUL byte of each
# character on its side of the byte order.
_UTF16_WITHOUT_BOM = (
    (re.compile(rb"(?:[\t\n\r ]\x00)*[A-Z]\x00[A-Z0-9]\x00[A-Z0-9]\x00"), "utf-16-le"),
    (re.compile(rb"(?:\x00[\t\n\r ])*\x00[A-Z]\x00[A-Z0-9]\x00[A-Z0-9]"), "utf-16-be"),
)
_BOMS = {"latin-1": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE,
         "utf-16-be": codecs.BOM_UTF16_BE}


def split_messages(data: bytes) -> list[bytes]:
    """The messages in a file's bytes, each as it is to be sent (module docstring).

    Raises ValueError when the file is UTF-16 by its BOM or its first bytes but does not
    decode as UTF-16.
    """
    bom, codec = _encoding(data)
    text = _decode(data[len(bom):], codec, len(bom), bom)
    messages: list[bytes] = []
    end = len(bom)
    for frame in _FRAMING.split(text):
        # Where the frame starts in the file (in bytes: used only while codec is latin-1);
        # the 1 is the VT or FS that ended it.
        start, end = end, end + len(frame) + 1
        if codec == "latin-1":
            raw = frame.encode("latin-1")  # the frame's bytes as they are in the file
            frame_bom, frame_codec = _encoding(raw)
            if frame_codec != "latin-1":  # a UTF-16 payload in a byte-framed dump
                payload = _decode(raw[len(frame_bom):], frame_codec, start + len(frame_bom),
                                  frame_bom)
                messages += _messages(payload, frame_codec, frame_bom)
                continue
        messages += _messages(frame, codec, bom)
    return messages


def _encoding(data: bytes) -> tuple[bytes, str]:
    """The BOM that ``data`` starts with (``b""`` if none) and the codec to read it with.

    ASCII-compatible bytes are read as latin-1, which maps every byte to one character
    and back: splitting them never changes a byte of a message.
    """
    if data.startswith(codecs.BOM_UTF8):
        return codecs.BOM_UTF8, "latin-1"
    for codec in ("utf-16-le", "utf-16-be"):
        if data.startswith(_BOMS[codec]):
            return _BOMS[codec], codec
    for pattern, codec in _UTF16_WITHOUT_BOM:
        if pattern.match(data):
            return b"", codec
    return b"", "latin-1"


def _decode(data: bytes, codec: str, offset: int, bom: bytes) -> str:
    """``data``, found at byte ``offset`` of the file after ``bom``, as text."""
    # surrogatepass: a lone surrogate in a UTF-16 file goes out as the bytes it came in.
    try:
        return data.decode(codec, "surrogatepass")
    except UnicodeDecodeError as exc:
        # Without a BOM the byte order was read from the NUL bytes: say so, since a file
        # written in the other order (module docstring) is refused as this one.
        guessed = "" if bom else "; without a byte order mark, the encoding was guessed"
        raise ValueError(f"not valid {codec.upper()} ({exc.reason} at byte "
                         f"{offset + exc.start}{guessed})") from None


def _messages(frame: str, codec: str, bom: bytes) -> list[bytes]:
    """The messages of one frame (or of a whole unframed file) as bytes in ``codec``."""
    starts = list(_MESSAGE_START.finditer(frame))
    ends = [match.start() for match in starts[1:]] + [len(frame)]
    messages = []
    for start, end in zip(starts, ends):
        segments = [line for line in _LINE_BREAK.split(frame[start.start("msh"):end])
                    if not _DROPPED_LINE.match(line)]
        own_bom = _BOMS[codec] if start.group("bom") else b""
        body = ("\r".join(segments) + "\r").encode(codec, "surrogatepass")
        messages.append((bom or own_bom) + body)
    return messages


def client_endpoint(reactor: Any, host: str, port: int) -> HostnameEndpoint:
    """The TCP endpoint for ``host`` (a name, an IPv4 or an IPv6 address, ``[::1]`` too).

    An endpoint object rather than a ``tcp:host=...`` string: in the string every colon of
    an IPv6 address would need escaping (``tcp:host=::1:port=2575`` reads as host ''
    port 1), and HostnameEndpoint tries every address a name has, IPv6 and IPv4 alike,
    where the string's TCP4ClientEndpoint resolves names to IPv4 only.
    """
    from twisted.internet.endpoints import HostnameEndpoint

    return HostnameEndpoint(reactor, _unbracketed(host), port)


def _unbracketed(host: str) -> str:
    host = host.strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _address(host: str, port: int) -> str:
    host = _unbracketed(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _text(payload: bytes) -> str:
    """A message or an ACK as text, decoded as the gateway decodes it (BOM, UTF-16, MSH-18)."""
    from mappings.decoding import decode_message

    return decode_message(payload, normalise=False).text


def _control_id(message: bytes) -> str:
    first = _LINE_BREAK.split(_text(message), 1)[0]
    fields = first.split(first[3]) if len(first) > 3 else []
    return fields[9] if len(fields) > 9 else ""


def _ack_lines(ack: bytes) -> list[str]:
    return [s for s in _LINE_BREAK.split(_text(ack)) if s[:3] in ("MSA", "ERR")]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Gateway host: a name, an IPv4 or an IPv6 address.")
@click.option("--port", default=2575, show_default=True, type=click.IntRange(1, 65535),
              help="Gateway MLLP port.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds to wait for each ACK.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def send(host: str, port: int, timeout: float, files: tuple[str, ...]) -> None:
    """Send the messages in FILES and print each ACK.

    A file may hold several messages, bare or in MLLP frames, in UTF-8, UTF-16 (with or
    without a BOM) or any charset MSH-18 names.  Exits 0 only if every message was
    answered AA or CA.
    """
    from gateway.logging import log_to_stderr
    from mappings.ack import parse_ack

    batch: list[tuple[str, int, bytes]] = []
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror}") from None
        try:
            messages = split_messages(data)
        except ValueError as exc:
            raise InputError(f"{name}: {exc}") from None
        if not messages:
            raise InputError(f"{name}: no HL7 message (no MSH segment) found")
        batch += [(name, i + 1, m) for i, m in enumerate(messages)]

    log_to_stderr("WARNING")  # what goes wrong on the wire (a reply timeout, stray bytes)
    results = _exchange(host, port, timeout, [m for _, _, m in batch])
    accepted = 0
    for (name, index, message), reply in zip(batch, results):
        click.echo(f"{name}#{index} MSH-10={_control_id(message)}")
        if isinstance(reply, BaseException):
            click.echo(f"  no ACK: {reply}")
            continue
        for line in _ack_lines(reply):
            click.echo(f"  {line}")
        try:
            code = parse_ack(reply).code
        except Exception:  # noqa: BLE001 - an unreadable ACK is not an acceptance
            code = ""
        accepted += code in ("AA", "CA")
    if accepted != len(batch):
        raise NegativeOutcome(f"{len(batch) - accepted} of {len(batch)} messages not accepted")


def _exchange(host: str, port: int, timeout: float, payloads: list[bytes]) -> list[Any]:
    """Send on one connection; after a timeout or a lost connection, reconnect."""
    from twisted.internet import task

    from mllp.client import connect_client

    results: list[Any] = []
    errors: list[BaseException] = []

    async def run(reactor: Any) -> None:
        endpoint = client_endpoint(reactor, host, port)
        client = None
        for payload in payloads:
            try:
                if client is None:
                    client = await connect_client(reactor, endpoint)
                results.append(await client.send(payload, timeout))
            except Exception as exc:  # noqa: BLE001 - reported per message
                if client is None and not results:
                    errors.append(PeerUnavailable(
                        f"cannot connect to {_address(host, port)}: {exc}"))
                    return
                results.append(exc)
                client = None  # the client dropped the connection (timeout, lost)
        if client is not None:
            await client.close()

    def main(reactor: Any) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(run(reactor))

    try:
        task.react(main)
    except SystemExit:
        pass  # react() always exits; the outcome is in results/errors
    if errors:
        raise errors[0]
    return results
