"""The README's command-line reference names every command and every long option."""

from __future__ import annotations

import re
from pathlib import Path

import click

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path + " ")


def test_every_command_and_option_is_in_the_readme():
    missing = []
    for path, command in _commands(main):
        if f"`{path}" not in README:
            missing.append(path)
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in README:
                    missing.append(f"{path} {opt}")
    assert missing == []


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("ri-gateway serve")
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()


def test_the_try_it_commands_name_files_a_clone_has():
    # The quick start sent "my_oru.hl7", a file no clone has: the command failed (exit 2).
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n")[2].split("```", 1)[0]
    files = re.findall(r"(?<!\S)[\w./-]+\.(?:hl7|json|jsonl|toml|txt)(?!\S)", block)
    assert files
    assert [f for f in files if not (ROOT / f).is_file()] == []
