"""``ri-gateway analyze``: run the engine on reports and print RI job JSON."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click

from gateway.errors import InputError, NegativeOutcome

from .options import config_option, settings_from

__all__ = ["analyze", "job_json"]

JOB_RETENTION = timedelta(days=1)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def job_json(result: Any = None, error: Any = None, *, job_id: str | None = None,
             created: datetime | None = None, updated: datetime | None = None,
             code: str = "InternalError") -> dict[str, Any]:
    """An RI job object: ``succeeded`` with ``result`` or ``failed`` with ``error``
    (its own ``code``, else ``code``)."""
    from ri_engine.models import ErrorDetail, RadiologyInsightsJob

    created = created or datetime.now(timezone.utc)
    updated = updated or datetime.now(timezone.utc)
    job = RadiologyInsightsJob(
        id=job_id or str(uuid.uuid4()), status="succeeded" if error is None else "failed",
        created_at=_iso(created), updated_at=_iso(updated), expires_at=_iso(created + JOB_RETENTION),
        result=result,
        error=None if error is None else ErrorDetail(
            code=getattr(error, "code", None) or code,
            message=getattr(error, "message", None) or str(error),
            target=getattr(error, "target", None) or getattr(error, "path", None) or None))
    return job.to_json()


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror}") from None


def _default_engine() -> Any:
    from ri_engine import Engine

    return Engine()


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--jsonl", "jsonl", type=click.Path(dir_okay=False, allow_dash=True),
              help="A file with one RI request JSON per line (- for stdin).")
@click.option("--sex", type=click.Choice(["female", "male", "unspecified"]),
              help="Patient sex, for plain-text input.")
@click.option("--birth-date", metavar="YYYY-MM-DD", help="Patient birth date, for plain-text input.")
@click.option("--procedure-code", help="Ordered procedure code, for plain-text input.")
@click.option("--procedure-display", help="Ordered procedure name, for plain-text input.")
@click.option("--procedure-system", default="http://loinc.org", show_default=True,
              help="Code system of --procedure-code.")
@click.option("--pretty", is_flag=True, help="Indent the JSON (a single result only).")
@config_option
@click.pass_obj
def analyze(obj: Any, files: tuple[str, ...], jsonl: str | None, sex: str | None,
            birth_date: str | None, procedure_code: str | None, procedure_display: str | None,
            procedure_system: str, pretty: bool, config_path: str | None) -> None:
    """Analyse FILES (HL7 ORU^R01, RI request JSON or plain report text; - for stdin).

    Prints one RI job JSON per request, one per line: {id, status, createdAt,
    updatedAt, expiresAt, result: {patientResults, modelVersion}} or, for a request
    that failed, status "failed" with error.  Exits 2 when an input was refused,
    1 when an analysis failed.
    """
    from gateway.inputs import (
        Request, TextMetadata, parse_json, request_from_json, requests_from,
    )

    if not files and not jsonl:
        raise click.UsageError("give at least one FILE (or - for stdin) or --jsonl FILE")
    settings = settings_from(config_path, {})
    meta = TextMetadata(sex=sex, birth_date=birth_date, procedure_code=procedure_code,
                        procedure_display=procedure_display, procedure_system=procedure_system)
    factory: Callable[[], Any] = (obj or {}).get("engine_factory") or _default_engine
    engine: Any = None
    refused = failed = 0
    outputs = 0

    def emit(job: dict[str, Any]) -> None:
        nonlocal outputs
        outputs += 1
        click.echo(json.dumps(job, indent=2 if pretty else None))

    def run(requests: list[Request]) -> None:
        nonlocal engine, failed, refused
        from ri_engine.errors import RequestError

        for request in requests:
            if request.data is None:
                click.echo(f"{request.label}: not analysed ({request.skip_reason})", err=True)
                continue
            created = datetime.now(timezone.utc)
            if engine is None:
                engine = factory()
            try:
                result = engine.analyze(request.data)
            except RequestError as exc:
                refused += 1
                emit(job_json(error=exc, created=created))
                continue
            except Exception as exc:  # noqa: BLE001 - an engine failure fails this job only
                failed += 1
                emit(job_json(error=exc, created=created))
                continue
            emit(job_json(result, created=created))

    def refuse(label: str, exc: Exception) -> None:
        nonlocal refused
        refused += 1
        click.echo(f"{label}: {getattr(exc, 'message', None) or exc}", err=True)
        # The REST API's code for a body it cannot use: "InternalError" read as a failure
        # of the engine, for a line that was never valid JSON or a request.
        emit(job_json(error=exc, code="InvalidRequestBody"))

    for name in files:
        try:
            run(requests_from(_read(name), name, meta, settings.mapping_config))
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - HL7Error/ModelError/RequestError: refused
            if not _is_refusal(exc):
                raise
            refuse(name, exc)
    if jsonl:
        for number, line in enumerate(_read(jsonl).decode("utf-8-sig").splitlines(), 1):
            if not line.strip():
                continue
            label = f"{jsonl}:{number}"
            try:
                value = parse_json(line)
            except InputError as exc:
                refuse(label, exc)
                continue
            try:
                run([request_from_json(value, label)])
            except Exception as exc:  # noqa: BLE001 - see above
                if not _is_refusal(exc):
                    raise
                refuse(label, exc)
    if refused:
        raise _Refused(f"{refused} input(s) refused")
    if failed:
        raise NegativeOutcome(f"{failed} analysis/analyses failed")


def _is_refusal(exc: Exception) -> bool:
    from mappings.errors import HL7Error
    from ri_engine.errors import RequestError
    from ri_engine.models import ModelError

    return isinstance(exc, (HL7Error, RequestError, ModelError, InputError))


class _Refused(InputError):
    """Some inputs were refused (exit 2); each was reported on stderr already."""
