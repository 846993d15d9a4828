"""A path in the configuration is read as an administrator writes it."""

from __future__ import annotations

import subprocess
import sys

from gateway_process import WAIT, GatewayProcess, cli_env, exchange
from gateway_samples import oru


def test_a_database_path_under_home_is_the_home_directory(tmp_path):
    # "~/..." from a TOML file or the environment was taken literally: `serve` made a
    # directory named "~" in its working directory and the readers did not find the log.
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "work").mkdir()
    config = tmp_path / "gateway.toml"
    config.write_text('[storage]\ndb = "~/audit.sqlite3"\n')
    env = cli_env(HOME=str(home))
    gateway = GatewayProcess(home / "audit.sqlite3", HOME=str(home)).start()
    try:
        assert b"\rMSA|AA|W1" in exchange(gateway.port, oru("W1"))
    finally:
        assert gateway.stop() == 0
    for where in ({"RI_GATEWAY_STORAGE_DB": "~/audit.sqlite3"}, {}):
        shown = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "audit", "show", "W1",
             *(["--config", str(config)] if not where else [])],
            cwd=tmp_path / "work", env={**env, **where}, capture_output=True, text=True,
            timeout=WAIT)
        assert shown.returncode == 0, shown.stderr
        assert '"control_id": "W1"' in shown.stdout
    assert not (tmp_path / "work" / "~").exists()
