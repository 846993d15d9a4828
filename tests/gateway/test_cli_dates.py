"""A DATE option that is not a date: exit 2 with click's usage error naming the option."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gateway.cli import main


@pytest.mark.parametrize("args, option", [
    (["replay", "--status", "failed", "--since", "yesterday"], "--since"),
    (["report", "critical", "--since", "2024-01-01", "--until", "yesterday"], "--until"),
    (["report", "followups", "--as-of", "yesterday"], "--as-of"),
    (["report", "quality", "--since", "yesterday"], "--since"),
    (["outbox", "purge", "--delivered", "--before", "yesterday"], "--before"),
])
def test_a_bad_date_names_its_option(tmp_path, args, option):
    # "Error: Invalid value: 'yesterday' is not ..." left the reader to find which of the
    # command's dates was meant.
    result = CliRunner().invoke(main, [*args, "--db", str(tmp_path / "none.sqlite3")])
    assert result.exit_code == 2, result.output
    assert (f"Error: Invalid value for '{option}': 'yesterday' is not an ISO 8601 date "
            "or date-time") in result.output
