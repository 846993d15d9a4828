"""``ri-gateway map``: show the RI request(s) an HL7 ORU^R01 maps to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.errors import InputError

from .options import config_option, settings_from

__all__ = ["map"]


@click.command("map")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--pretty", is_flag=True, help="Indent the JSON.")
@config_option
def map_command(file: str, pretty: bool, config_path: str | None) -> None:
    """Print the RI request JSON ({"jobData": ...}) for each OBR group of an ORU^R01.

    One JSON object per OBR group, one per line (--pretty indents them).  OBR groups
    the mapping does not analyse (cancelled, no report text) are named on stderr.
    """
    from gateway.inputs import looks_like_hl7, mapped_reports

    raw = _read(file)
    if not looks_like_hl7(raw):
        raise InputError(f"{file}: not an HL7 v2 message (it does not start with MSH)")
    settings = settings_from(config_path, {})
    for report in mapped_reports(raw, settings.mapping_config):
        if not report.analyse:
            click.echo(f"OBR {report.obr_index} not analysed: {report.skip_reason}", err=True)
        body = {"jobData": report.request.to_json()}
        click.echo(json.dumps(body, indent=2 if pretty else None))


def _read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from None


map = map_command  # noqa: A001 - the command module's attribute is named like the command
