from __future__ import annotations

import io
import json

from gateway.logging import REDACTED, configure_logging, get_logger, redact


def test_redaction_masks_content_keeps_ids():
    event = {"event": "hl7.message", "control_id": "C1", "payload": "MSH|^~\\&|A|B",
             "text": "x" * 200, "error": "bad segment PID|1||123", "ack_code": "AA",
             "raw": b"MSH|", "nested": {"segment": "OBX|1|TX|"}, "reason": "missing PID-3",
             "data": "a|b", "peer": "h" * 100}
    assert redact(None, "info", dict(event)) == {
        "event": "hl7.message", "control_id": "C1", "payload": REDACTED, "text": REDACTED,
        "error": REDACTED, "ack_code": "AA", "raw": REDACTED, "nested": {"segment": REDACTED},
        "reason": "missing PID-3", "data": REDACTED, "peer": "h" * 100}


def test_json_lines_and_twisted_events_share_the_chain():
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    get_logger(conn_id=3).info("hl7.message", control_id="C9", ack_code="AA",
                               message="OBX|1|TX|secret")
    get_logger().debug("hidden")
    from twisted.logger import Logger

    Logger(namespace="test").info("twisted says {what}", what="PID|1||secret")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [{k: v for k, v in line.items() if k != "timestamp"} for line in lines] == [
        {"conn_id": 3, "control_id": "C9", "ack_code": "AA", "message": REDACTED,
         "event": "hl7.message", "level": "info"},
        {"source": "twisted", "namespace": "test", "event": REDACTED, "level": "info"},
    ]
