"""``ri-gateway report``: quality measures and follow-up tracking over the audit log.

    ri-gateway report quality   [--since DATE] [--until DATE] [--json]
    ri-gateway report followups [--since DATE] [--until DATE] [--as-of DATE]
                                [--status completed|open|overdue|undated]
                                [--tolerance DAYS] [--json]
    ri-gateway report critical  [--since DATE] [--until DATE]
                                [--status alerted|pending|failed|not_alerted] [--json]

What is counted, and how a follow-up is matched to a later exam: :mod:`gateway.reports`;
how a critical result counts as alerted: :mod:`gateway.critical_results`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from typing import Any

import click

from gateway.audit import AuditLog, utc_now
from gateway.critical_results import STATUSES as CRITICAL_STATUSES
from gateway.critical_results import critical_results, summarise
from gateway.local_time import WIDTH, local_text
from gateway.reports import FollowUp, Patient, StoredReport, Window, followups, quality_summary

from .options import DATE_HELP, config_option, db_option, parse_date, settings_from

__all__ = ["report"]

_STATUSES = ("completed", "open", "overdue", "undated")

window_options = [
    click.option("--since", metavar="DATE",
                 help=f"Reports received at or after DATE ({DATE_HELP})."),
    click.option("--until", metavar="DATE", help=f"Reports received before DATE ({DATE_HELP})."),
    click.option("--json", "as_json", is_flag=True, help="One JSON object per line."),
    config_option, db_option,
]


def _with_window_options(fn: Any) -> Any:
    for option in reversed(window_options):
        fn = option(fn)
    return fn


def _open(config_path: str | None, db_path: str | None) -> tuple[AuditLog, Any]:
    settings = settings_from(config_path, {"storage.db": db_path})
    return AuditLog(settings.storage.db, readonly=True), settings


def _window(since: str | None, until: str | None) -> Window:
    return Window(*(utc_now(parse_date(v)) if v is not None else None for v in (since, until)))


@click.group()
def report() -> None:
    """Aggregates for quality teams: quality measures, follow-up completion and
    critical-result alerting."""


@report.command()
@_with_window_options
def quality(since: str | None, until: str | None, as_json: bool, config_path: str | None,
            db_path: str | None) -> None:
    """Quality measure outcomes per denominator, with the performance rate
    (met / (met + not met))."""
    from ri_engine.inferences.quality_measures import measure_types_for

    window = _window(since, until)
    audit, settings = _open(config_path, db_path)
    with audit:
        # A correction sent under the accession of a report replaces it, as for follow-ups.
        rows = quality_summary(audit, window, read=_mapped_reports(settings)[0])
    if as_json:
        for row in rows:
            click.echo(json.dumps({"denominator": row.denominator,
                                   "measure_types": measure_types_for(row.denominator),
                                   **row.counts, "rate": row.rate}))
        return
    if rows:
        click.echo(f"{'denominator':<36} {'measure':<9} {'met':>5} {'not met':>8} "
                   f"{'exception':>10} {'not eligible':>13} {'rate':>6}")
    for row in rows:
        c = row.counts
        rate = f"{row.rate:.0%}" if row.rate is not None else "-"
        click.echo(f"{row.denominator:<36} {','.join(measure_types_for(row.denominator)) or '-':<9} "
                   f"{c['performanceMet']:>5} {c['performanceNotMet']:>8} "
                   f"{c['denominatorException']:>10} {c['notEligible']:>13} {rate:>6}")
    if not rows:
        click.echo("no quality measure results in these reports "
                   "(measures are evaluated when [analysis] quality_measures names them)")


def _text(item: FollowUp) -> str:
    flags = [name for name, on in (("conditional", item.conditional), ("hedged", item.hedging),
                                   ("communicated", item.communicated)) if on]
    line = (f"{item.status:<10} {item.due.isoformat() if item.due else '-':<10} "
            f"{local_text(item.received_at):<{WIDTH}} {item.accession or '-':<14} "
            f"{item.control_id or '-':<14} "
            f"{'/'.join(m.removesuffix(' (PROCEDURE)') for m in item.modalities):<30} "
            f"{','.join(flags) or '-'}")
    done = item.completed_by
    if done is not None:
        line += (f"  by {done.accession or '-'} ({done.control_id or '-'}) "
                 f"{local_text(done.received_at)}")
        if item.timing is not None:
            line += f", {item.timing.replace('_', ' ')}"
    return line


def _mapped_reports(settings: Any) -> tuple[Any, Any]:
    """How :func:`gateway.reports.followups` reads a stored message: per OBR group, the
    patient's identifiers, accession, order modality and order text the inbound mapping
    gives; and the patients' identifiers alone, cheaply."""
    from mappings.decoding import decode_message
    from mappings.inbound import (
        NO_ORDER_STATUSES, NO_RESULT_STATUSES, ORDER_CANCELLED, map_oru, patient_identities,
    )
    from mappings.procedures import MODALITY_CODES

    def text_of(raw: bytes, charset: str | None) -> str:
        return decode_message(raw, charset or settings.mllp.default_charset).text

    def patients(raw: bytes, charset: str | None) -> dict[int, Patient]:
        return patient_identities(text_of(raw, charset), settings.mapping_config)

    def read(raw: bytes, charset: str | None) -> dict[int, StoredReport]:
        text = text_of(raw, charset)
        identities = patient_identities(text, settings.mapping_config)
        return {r.obr_index: StoredReport(identities.get(r.obr_index, frozenset()), r.accession,
                                          MODALITY_CODES.get(r.modality_hint or ""),
                                          _order_text(r),
                                          r.result_status not in NO_RESULT_STATUSES,
                                          _text_key(r.document_text),
                                          r.result_status == ORDER_CANCELLED,
                                          r.result_status is not None
                                          and r.result_status not in NO_ORDER_STATUSES)
                for r in map_oru(text, settings.mapping_config)}

    return read, patients


def _text_key(text: str) -> str | None:
    """A digest of a report text, to tell one report filed under several orders (the same
    text under each OBR) without keeping every text read in memory."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() \
        if text.strip() else None


def _order_text(report: Any) -> str:
    """The ordered procedure's descriptions and the procedure table's body part."""
    metadata = report.request.patients[0].patient_documents[0].administrative_metadata
    words = [p.description or "" for p in (metadata.ordered_procedures if metadata else [])]
    if report.procedure is not None and report.procedure.body_part:
        words.append(report.procedure.body_part)
    return " ".join(w for w in words if w)


@report.command("followups")
@_with_window_options
@click.option("--as-of", "as_of", metavar="DATE",
              help="Recommendations due before DATE (a local calendar day) are overdue "
                   "(default: today).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(_STATUSES),
              help="Only recommendations with this status (repeatable).")
@click.option("--tolerance", "tolerance_days", default=30, show_default=True,
              type=click.IntRange(min=0), metavar="DAYS",
              help="A follow-up completed within DAYS of its due date is on time; "
                   "before, early; after, late.")
def followups_(since: str | None, until: str | None, as_json: bool, config_path: str | None,
               db_path: str | None, as_of: str | None, statuses: tuple[str, ...],
               tolerance_days: int) -> None:
    """Imaging follow-up recommendations and whether a later exam completed them."""
    window = _window(since, until)
    # A local day, as the due dates and the exams' days it is compared with.
    today = parse_date(as_of).astimezone().date() if as_of else dt.date.today()
    audit, settings = _open(config_path, db_path)
    with audit:
        read, patients = _mapped_reports(settings)
        tracked = followups(audit, window, as_of=today, read=read, patients=patients,
                            tolerance_days=tolerance_days)
    shown = [item for item in tracked if not statuses or item.status in statuses]
    if shown and not as_json:
        click.echo(f"{'status':<10} {'due':<10} {'received (local)':<{WIDTH}} "
                   f"{'accession':<14} {'control id':<14} {'modality':<30} flags")
    for item in shown:
        click.echo(json.dumps(item.as_json()) if as_json else _text(item))
    if as_json:
        return
    counts = Counter(item.status for item in tracked)
    due = counts["completed"] + counts["overdue"]
    rate = f"{counts['completed'] / due:.0%}" if due else "-"
    timing = Counter(item.timing for item in tracked if item.timing is not None)
    click.echo(f"{len(tracked)} tracked follow-up recommendation(s): "
               + ", ".join(f"{counts[s]} {s}" for s in _STATUSES)
               + f"; completed {rate} of those done or due by {today.isoformat()}"
               + f"; of the completed with a due date, {timing['on_time']} on time "
               f"(within {tolerance_days} days), {timing['early']} early, {timing['late']} late")


def _critical_text(item: Any) -> str:
    alerts = f"{item.delivered}/{item.alerts}" + (f" ({item.dead} dead)" if item.dead else "")
    return (f"{item.status:<11} {local_text(item.received_at):<{WIDTH}} "
            f"{','.join(item.accessions) or '-':<14} "
            f"{item.control_id or '-':<14} {alerts:<12} {_seconds(item.seconds_to_alert):>9} "
            f"{'yes' if item.communicated else 'no':<12} {'; '.join(item.results)}"
            + (f"  ({len(item.versions)} versions)" if len(item.versions) > 1 else "")
            + (f"  withdrawn: {item.withdrawn} by {item.withdrawn_by or '-'}" if item.withdrawn
               else ""))


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "-"


@report.command("critical")
@_with_window_options
@click.option("--status", "statuses", multiple=True, type=click.Choice(CRITICAL_STATUSES),
              help="Only reports with this status (repeatable).")
def critical_(since: str | None, until: str | None, as_json: bool, config_path: str | None,
              db_path: str | None, statuses: tuple[str, ...]) -> None:
    """Reports with critical results: whether an alert was delivered, how long it took,
    and whether the report documents that the result was communicated."""
    window = _window(since, until)
    audit, settings = _open(config_path, db_path)
    with audit:
        # Versions of one report are matched by accession and patient (the mapping's rules),
        # and a cancelled order is read from its stored message.
        read, patients = _mapped_reports(settings)
        found = critical_results(audit, window, patients=patients, read=read)
    shown = [item for item in found if not statuses or item.status in statuses]
    if as_json:
        for item in shown:
            click.echo(json.dumps(item.as_json()))
        return
    if shown:
        click.echo(f"{'status':<11} {'received (local)':<{WIDTH}} {'accession':<14} "
                   f"{'control id':<14} "
                   f"{'delivered':<12} {'to alert':>9} {'communicated':<12} critical results")
    for item in shown:
        click.echo(_critical_text(item))
    total = summarise(found)
    click.echo(
        f"{total.reports} report(s) with critical results: "
        + ", ".join(f"{total.counts[s]} {s.replace('_', ' ')}" for s in CRITICAL_STATUSES)
        + f"; time to alert median {_seconds(total.median_seconds)}, 90th percentile "
        f"{_seconds(total.p90_seconds)}, longest {_seconds(total.max_seconds)}; "
        f"communication documented in {total.communicated}; "
        f"{total.unconfirmed} with neither a delivered alert nor documented communication; "
        f"{total.withdrawn} withdrawn by a correction or cancellation")
