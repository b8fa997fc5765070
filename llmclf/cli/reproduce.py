"""``llmclf reproduce``: train a finished run again from its saved config and compare."""

from __future__ import annotations

import json

import click


@click.command("reproduce")
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Where the new run goes (missing or empty).  [default: RUN-reproduced, or the first "
    "free RUN-reproduced-N]",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display, only the comparison.")
def reproduce_command(run: str, output: str | None, fmt: str, quiet: bool) -> None:
    """Re-run a finished run from its llmclf.json and compare config, metrics and weights."""
    from ..reporting import Reporter
    from ..reproduction import reproduce
    from .render import RichReporter

    reporter = Reporter() if quiet else RichReporter()
    try:
        report = reproduce(run, output, reporter=reporter)
    finally:
        reporter.close()
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.render())
