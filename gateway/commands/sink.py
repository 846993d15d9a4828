"""``ri-gateway sink``: a downstream stand-in that records what it receives and ACKs it.

Each received message is appended to ``--out`` as one block: its segments one per
line, then an empty line.  The ACK code is fixed by ``--ack``; an AE or AR carries an ERR
segment with the table 0357 code ``--err`` (207, application internal error, by default),
so a test or a rehearsal can play a destination that refuses for good (101, 200) or for now
(207, 206).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any, TextIO

import click

from gateway.errors import PeerUnavailable
from mappings.errors import ERROR_TEXTS

__all__ = ["SinkHandler", "sink"]


class SinkHandler:
    """An ``mllp`` MessageHandler: record the message, answer with a fixed ACK code."""

    def __init__(self, code: str, out: TextIO | None, ids: Any = None,
                 err_code: str = "207") -> None:
        from gateway.receiver import ControlIds

        self.code = code
        self.err_code = err_code
        self.out = out
        self.ids = ids or ControlIds(prefix="SNK")
        self.received = 0

    def handle(self, payload: bytes, conn: Any) -> bytes | None:
        from mappings.ack import build_ack, build_unreadable_ack, encode_message
        from mappings.decoding import decode_message
        from mappings.errors import HL7Error, UnreadableHeader
        from mappings.header import read_header

        decoded = decode_message(payload)
        self.received += 1
        if self.out is not None:
            self.out.write("\n".join(decoded.text.rstrip("\r").split("\r")) + "\n\n")
            self.out.flush()
        now = datetime.now(timezone.utc)
        try:
            header = read_header(decoded.text)
        except UnreadableHeader as exc:
            text = build_unreadable_ack(decoded.text, "AR", self.ids(), now, exc)
            return encode_message(text, decoded.charset) if text is not None else None
        error = None
        if self.code != "AA":
            error = HL7Error(f"{self.code} configured by the sink", err_code=self.err_code)
        return encode_message(build_ack(header, self.code, control_id=self.ids(), now=now,
                                        error=error), decoded.charset)


@click.command()
@click.option("--port", required=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one; the port is printed).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--ack", "ack_code", default="AA", show_default=True,
              type=click.Choice(["AA", "AE", "AR"]), help="ACK code to answer every message with.")
@click.option("--err", "err_code", default="207", show_default=True,
              type=click.Choice(sorted(ERROR_TEXTS.keys() - {"0"}, key=int)),
              help="HL7 table 0357 code of the ERR segment of an AE or AR.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Append every received message here (one block per message).")
def sink(port: int, host: str, ack_code: str, err_code: str, out_path: str | None) -> None:
    """Listen for MLLP messages, record them and ACK each one."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from gateway.logging import log_to_stderr
    from mllp.server import MLLPServerFactory

    log_to_stderr()
    out = open(out_path, "a", encoding="utf-8") if out_path else None
    handler = SinkHandler(ack_code, out, err_code=err_code)
    factory = MLLPServerFactory(handler, idle_timeout=None, clock=reactor)
    failed: list[str] = []

    def listening(port_obj: Any) -> None:
        address = port_obj.getHost()
        answer = ack_code if ack_code == "AA" else f"{ack_code}, ERR {err_code}"
        click.echo(f"sink listening on {address.host}:{address.port} (ACK {answer})")
        sys.stdout.flush()

    def cannot(failure: Any) -> None:
        failed.append(failure.getErrorMessage())
        reactor.stop()

    def start() -> None:
        d = TCP4ServerEndpoint(reactor, port, interface=host).listen(factory)
        d.addCallbacks(listening, cannot)

    reactor.callWhenRunning(start)
    try:
        reactor.run()
    finally:
        if out is not None:
            out.close()
    if failed:
        raise PeerUnavailable(f"cannot listen on {host}:{port}: {failed[0]}")
    click.echo(f"sink received {handler.received} messages")
