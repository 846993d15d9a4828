"""``ri-gateway send``: send HL7 messages from files over MLLP and print each ACK."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from gateway.errors import InputError, NegativeOutcome, PeerUnavailable

__all__ = ["send", "split_messages"]

# A segment that starts a message, at the start of the text or of a line.
_MSH = re.compile(rb"(?:^|(?<=[\r\n]))MSH")
_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


def split_messages(data: bytes) -> list[bytes]:
    """The messages in a file: split at MSH segments, segments joined by CR.

    Lines may end with CR, LF or CRLF; blank lines and batch/file envelope segments
    (FHS, BHS, BTS, FTS) are dropped.  A leading UTF-8 BOM is removed.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    starts = [m.start() for m in _MSH.finditer(data)]
    messages = []
    for i, start in enumerate(starts):
        chunk = data[start:starts[i + 1] if i + 1 < len(starts) else len(data)]
        segments = [s for s in re.split(rb"\r\n|\r|\n", chunk)
                    if s.strip() and s[:3] not in _ENVELOPE]
        messages.append(b"\r".join(segments) + b"\r")
    return messages


def _control_id(message: bytes) -> str:
    fs = message[3:4]
    fields = message.split(b"\r", 1)[0].split(fs) if fs else []
    return fields[9].decode("latin-1") if len(fields) > 9 else ""


def _ack_lines(ack: bytes) -> list[str]:
    text = ack.decode("utf-8", errors="replace")
    return [s for s in re.split(r"\r\n|\r|\n", text) if s[:3] in ("MSA", "ERR")]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Gateway host.")
@click.option("--port", default=2575, show_default=True, type=click.IntRange(1, 65535),
              help="Gateway MLLP port.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds to wait for each ACK.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def send(host: str, port: int, timeout: float, files: tuple[str, ...]) -> None:
    """Send the messages in FILES (several per file allowed) and print each ACK.

    Exits 0 only if every message was answered AA or CA.
    """
    from mappings.ack import parse_ack

    batch: list[tuple[str, int, bytes]] = []
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror}") from None
        messages = split_messages(data)
        if not messages:
            raise InputError(f"{name}: no HL7 message (no MSH segment) found")
        batch += [(name, i + 1, m) for i, m in enumerate(messages)]

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
    endpoint = f"tcp:host={host}:port={port}"

    async def run(reactor: Any) -> None:
        client = None
        for payload in payloads:
            try:
                if client is None:
                    client = await connect_client(reactor, endpoint)
                results.append(await client.send(payload, timeout))
            except Exception as exc:  # noqa: BLE001 - reported per message
                if client is None and not results:
                    errors.append(PeerUnavailable(f"cannot connect to {host}:{port}: {exc}"))
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
