"""The audit database's write-ahead log under a stream of messages that never pauses."""

from __future__ import annotations

import asyncio

from gateway_process import GatewayProcess
from gateway_samples import frame, oru

CONNECTIONS = 4
PER_CONNECTION = 1000  # 4,000 messages of about 3 KB: some 60 MB of WAL frames in all


async def _stream(port: int, prefix: str) -> list[bytes]:
    """Send PER_CONNECTION messages back to back, each after the previous one's ACK."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acks = []
    try:
        for n in range(PER_CONNECTION):
            writer.write(frame(oru(f"{prefix}N{n}", obx=16)))
            acks.append(await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), 60))
    finally:
        writer.close()
    return acks


async def _load(port: int) -> list[bytes]:
    streams = await asyncio.gather(*[_stream(port, f"W{c}") for c in range(CONNECTIONS)])
    return [ack for acks in streams for ack in acks]


def test_the_wal_is_checkpointed_and_restarted_while_messages_keep_coming(tmp_path):
    # A checkpoint on a timer never caught up with a steady stream, so the log could never
    # start again from its beginning and grew by every commit (tens of MB here).
    db = tmp_path / "audit.sqlite3"
    gateway = GatewayProcess(db).start()
    try:
        acks = asyncio.run(_load(gateway.port))
        wal = db.with_name(db.name + "-wal").stat().st_size
    finally:
        gateway.stop()
    assert len(acks) == CONNECTIONS * PER_CONNECTION
    assert all(b"MSA|AA|" in ack for ack in acks)
    assert wal < 16 * 1024 * 1024, wal  # checkpoints come every 1000 pages, about 4 MB
