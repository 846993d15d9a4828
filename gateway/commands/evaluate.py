"""``ri-gateway evaluate``: precision, recall and F1 of the engine on a labelled corpus."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.errors import InputError

__all__ = ["evaluate"]


@click.command("evaluate")
@click.option("--corpus", "corpus", multiple=True, type=click.Path(exists=False),
              default=("eval/corpus",), show_default=True,
              help="Corpus directory (every *.jsonl in it) or file; repeat for several.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the scores (and per-case differences) as one JSON object.")
@click.option("--errors", "show_errors", is_flag=True,
              help="After the table, list each case whose keys differ (missing / extra).")
def evaluate_command(corpus: tuple[str, ...], as_json: bool, show_errors: bool) -> None:
    """Score the engine on labelled cases: P/R/F1 per inference kind and for negation.

    Each corpus line is one case (format in eval/README.md); only the kinds a case is
    labelled for are scored.
    """
    from ri_engine.evaluation import CorpusError, evaluate

    paths = [Path(p) for p in corpus]
    for path in paths:
        if not path.exists():
            raise InputError(f"corpus not found: {path}")
    try:
        report = evaluate(paths)
    except CorpusError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    click.echo(report.table())
    if show_errors:
        for error in report.errors:
            click.echo(f"{error['case']} {error['kind']}: missing {error['missing']} extra {error['extra']}")


evaluate = evaluate_command
