"""``llmclf sweep``: the options of ``llmclf fit`` as the base, a grid, a sweep file or a
preset as the rows -> `llmclf.sweeps.sweep`.

The base options are ``llmclf fit``'s, generated from the same `TrainConfig` fields
(`config_options`), less ``--output``, which here names the sweep directory.
"""

from __future__ import annotations

import signal
from typing import Any

import click

from ..sweeps.presets import PRESETS
from ..training.config import config_fields
from .fit import Terminated, config_options, sigterm_interrupts

_BASE_FIELDS = [f for f in config_fields() if f.name != "output"]


@click.command("sweep")
@config_options(_BASE_FIELDS)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="JSON or TOML file of config fields for every row; flags override it.",
)
@click.option(
    "--grid",
    multiple=True,
    metavar="FIELD=V1,V2",
    help="A config field and its values; repeat for a full grid (e.g. --grid pooling=last,first).",
)
@click.option(
    "--file",
    "sweep_file",
    type=click.Path(dir_okay=False),
    help="TOML or JSON file of named rows ([[rows]] tables of config fields).",
)
@click.option(
    "--preset", type=click.Choice(PRESETS), help="A named sweep: the book's ablation table."
)
@click.option(
    "--rows",
    "only",
    metavar="ROWS",
    help="Run only these rows: 1-based numbers, ranges or names (e.g. 1-5,10,16-19).",
)
@click.option(
    "--limit-size",
    metavar="BACKBONE",
    help="Skip rows whose backbone is larger than this one (e.g. gpt2-small); the table says so.",
)
@click.option(
    "--output",
    "output",
    type=click.Path(file_okay=False),
    help="Sweep directory: one run directory per row and the results; run the same command "
    "again to continue an interrupted sweep.  [default: sweeps/<preset>, or sweeps/sweep]",
)
@click.option(
    "--no-reuse",
    is_flag=True,
    help="Build the prepared data and the frozen-trunk cache anew for every row.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the results table.")
def sweep_command(
    config_file: str | None,
    grid: tuple[str, ...],
    sweep_file: str | None,
    preset: str | None,
    only: str | None,
    limit_size: str | None,
    output: str | None,
    no_reuse: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Run many fits, one per row of a grid, a sweep file or a preset, into one table."""
    from pathlib import Path

    from ..reporting import Reporter
    from ..sweeps import sweep
    from ..sweeps.rows import parse_grid
    from ..training.config import read_config_file
    from .render import RichReporter

    given = [n for n, v in (("--grid", grid), ("--file", sweep_file), ("--preset", preset)) if v]
    if len(given) > 1:
        raise click.UsageError(f"give one of --grid, --file or --preset, not {' and '.join(given)}")
    base = read_config_file(config_file) if config_file else {}
    base.pop("output", None)
    base.update({k: v for k, v in options.items() if v is not None})
    out = Path(output or f"sweeps/{preset or 'sweep'}")
    reporter = Reporter() if quiet else RichReporter()
    restore_sigterm = sigterm_interrupts()
    try:
        result = sweep(
            base,
            grid=parse_grid(grid) if grid else None,
            rows=sweep_file,
            preset=preset,
            output=out,
            only=only,
            limit_size=limit_size,
            reporter=reporter,
            reuse=not no_reuse,
        )
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        click.echo(f"Error: {what}; run the same command again to continue {out}", err=True)
        raise SystemExit(128 + signal.SIGTERM if terminated else 130) from None
    finally:
        restore_sigterm()
        reporter.close()
    click.echo(Path(result.files["markdown"]).read_text(encoding="utf-8").rstrip())
    saved = f"saved {result.files['csv']}, {result.files['markdown']}"
    saved += f", {result.files['plot']}" if result.files.get("plot") else ""
    click.echo(saved)
    if result.files.get("plot_note"):
        click.echo(result.files["plot_note"])
