"""``llmclf evaluate``: score a run on its saved split or on another dataset."""

from __future__ import annotations

import json
from typing import Any

import click

from ..options import DEVICES
from .shared_options import precision_option


@click.command("evaluate")
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--dataset", help="Score this dataset (name or file) whole instead of the saved split."
)
@click.option(
    "--split",
    type=click.Choice(["test", "validation", "train"]),
    default=None,
    help="Which saved split to score [default: test].",
)
@click.option("--text-column", help="Text column of a --dataset file [the run's].")
@click.option("--label-column", help="Label column of a --dataset file [the run's].")
@click.option("--encoding", help="Encoding of a --dataset file [the run's, utf-8].")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@precision_option("Autocast precision for inference (the fit's own to reproduce its metrics.json).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def evaluate_command(
    run: str,
    dataset: str | None,
    split: str | None,
    text_column: str | None,
    label_column: str | None,
    encoding: str | None,
    batch_size: int,
    device: str,
    precision: str,
    fmt: str,
    quiet: bool,
) -> None:
    """Evaluate a trained run: accuracy, per-class F1, confusion matrix, ROC AUC."""
    from ..evaluation import evaluate_run
    from ..reporting import Reporter
    from .render import RichReporter

    reporter = Reporter() if quiet else RichReporter()  # bars on stderr, only on a terminal
    try:
        metrics = evaluate_run(
            run,
            dataset=dataset,
            split=split,
            text_column=text_column,
            label_column=label_column,
            encoding=encoding,
            batch_size=batch_size,
            device=device,
            precision=precision,
            reporter=reporter,
        )
    finally:
        reporter.close()
    if fmt == "json":
        click.echo(json.dumps(metrics, indent=2))
        return
    _print_metrics(metrics, (split or "test") if dataset is None else "dataset")


def _print_metrics(metrics: dict[str, Any], name: str) -> None:
    """The metrics table, the per-class table and the confusion matrix, with rich."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .render import metrics_table

    console = Console()
    console.print(f"[bold]{escape(metrics['scope'])}[/bold]")
    console.print(metrics_table({name: metrics}))
    per_class = Table(show_edge=False)
    for column in ("label", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for label, c in metrics["per_class"].items():
        per_class.add_row(
            escape(label),
            f"{c['precision']:.3f}",
            f"{c['recall']:.3f}",
            f"{c['f1']:.3f}",
            str(c["support"]),
        )
    console.print(per_class)
    # the title on its own line: as a table title it would wrap to the (narrow) table's width
    console.print("confusion (rows: true, columns: predicted)", soft_wrap=True)
    confusion = Table(show_edge=False)
    confusion.add_column("")
    for label in metrics["labels"]:
        confusion.add_column(escape(label), justify="right")
    for label, row in zip(metrics["labels"], metrics["confusion_matrix"], strict=True):
        confusion.add_row(escape(label), *map(str, row))
    console.print(confusion)
