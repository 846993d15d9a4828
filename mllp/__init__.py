"""MLLP (HL7 Minimal Lower Layer Protocol) framing and Twisted protocols.

- :mod:`mllp.framing`: sans-IO encoder and incremental decoder.
- :mod:`mllp.server`: the listener protocol and factory.
- :mod:`mllp.client`: a client that sends a message and waits for its reply.
- :mod:`mllp.errors`: the error hierarchy.

This package moves bytes only; it never parses HL7.
"""

from __future__ import annotations

from mllp.client import MLLPClientProtocol, connect_client, send_messages
from mllp.errors import (
    AckTimeout,
    ClientBusy,
    CloseWithoutReply,
    ConnectionClosed,
    InvalidPayload,
    MLLPError,
    ReplyTooLarge,
)
from mllp.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    Event,
    Frame,
    FrameDecoder,
    FrameRestarted,
    FrameTooLarge,
    StrayBytes,
    encode_frame,
)
from mllp.server import (
    ConnectionInfo,
    ListenerStats,
    MessageHandler,
    MLLPServerFactory,
    MLLPServerProtocol,
)

__all__ = [
    "AckTimeout",
    "ClientBusy",
    "CloseWithoutReply",
    "ConnectionClosed",
    "ConnectionInfo",
    "DEFAULT_MAX_FRAME_SIZE",
    "Event",
    "Frame",
    "FrameDecoder",
    "FrameRestarted",
    "FrameTooLarge",
    "InvalidPayload",
    "ListenerStats",
    "MLLPClientProtocol",
    "MLLPError",
    "MLLPServerFactory",
    "MLLPServerProtocol",
    "MessageHandler",
    "ReplyTooLarge",
    "StrayBytes",
    "connect_client",
    "encode_frame",
    "send_messages",
]
