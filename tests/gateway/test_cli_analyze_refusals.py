"""``analyze`` refuses an unusable request with the REST API's code, not InternalError."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gateway.cli import main

from gateway_fake_engine import FakeEngine


def test_a_refused_request_line_fails_as_invalid_request_body(tmp_path):
    # Both failed with "InternalError", which reads as a failure of the engine, where the
    # REST API answers the same bodies 400 InvalidRequestBody.
    lines = tmp_path / "requests.jsonl"
    lines.write_text('{"jobData": \n{"jobData": {"patients": 5}}\n')
    result = CliRunner().invoke(main, ["analyze", "--jsonl", str(lines)],
                                obj={"engine_factory": FakeEngine})
    assert result.exit_code == 2
    errors = [json.loads(line)["error"] for line in result.stdout.splitlines()]
    assert [(e["code"], e.get("target")) for e in errors] == [
        ("InvalidRequestBody", None), ("InvalidRequestBody", "jobData.patients")]
