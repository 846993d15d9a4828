"""HL7 v2 <-> RI models: decoding, headers, ACKs, escapes and the ORU^R01 inbound mapping.

The only package that imports ``hl7`` (python-hl7) and ``hl7apy``. It does no I/O.

Receiving path: ``decode_message(raw)`` -> ``read_header(text)`` -> ``check_acceptable(header)``
-> ``build_ack(header, code, ...)`` / ``build_unreadable_ack(...)`` -> ``encode_message``;
analysis: ``map_oru(text, config)`` -> one ``MappedReport`` per OBR group.
"""

from __future__ import annotations

from .ack import (
    AckError, AckInfo, build_ack, build_unreadable_ack, encode_message, frameable_ack, parse_ack,
)
from .config import MappingConfig
from .decoding import DecodedMessage, charset_codec, decode_message
from .errors import (
    ContentError, HL7Error, MappingConfigError, UnreadableHeader, UnsupportedMessage,
)
from .escapes import escape, render_text
from .header import Delimiters, MessageHeader, read_header
from .inbound import MappedReport, map_oru
from .policy import SUPPORTED_VERSIONS, check_acceptable
from .report_text import Attachment, SourceMap, SourceRef

__all__ = sorted([
    "AckError", "AckInfo", "Attachment", "ContentError", "DecodedMessage", "Delimiters", "HL7Error",
    "MappedReport", "MappingConfig", "MappingConfigError", "MessageHeader", "SUPPORTED_VERSIONS",
    "SourceMap", "SourceRef", "UnreadableHeader", "UnsupportedMessage", "build_ack",
    "build_unreadable_ack", "charset_codec", "check_acceptable", "decode_message",
    "encode_message", "escape", "frameable_ack", "map_oru", "parse_ack", "read_header", "render_text",
])
