"""``llmclf fit``: options -> TrainConfig -> Trainer.fit()."""

from __future__ import annotations

import sys
from typing import Any

import click

# option name -> (type, help). Every TrainConfig field a user sets from the command line.
FIT_OPTIONS: list[tuple[str, Any, str]] = [
    ("dataset", str, "Registered dataset name or a csv/tsv/jsonl/json/parquet file [sms]."),
    ("text-column", str, "Text column of a file dataset [text]."),
    ("label-column", str, "Label column of a file dataset [label]."),
    ("encoding", str, "Encoding of a file dataset [utf-8]."),
    ("balance", str, "Balancer: none, undersample, oversample, class-weight [undersample]."),
    (
        "balance-scope",
        click.Choice(["all", "train"]),
        "Balance the whole set before splitting (book) or the training split only [all].",
    ),
    ("split", str, "Train/validation/test fractions, e.g. 0.7,0.1,0.2."),
    ("dedupe/--no-dedupe", None, "Drop duplicate texts before splitting [no]."),
    (
        "padding",
        str,
        "Padding policy: pad-batch (per batch) [default], pad-dataset (pad to the longest "
        "training text, the book's), truncate-dataset (cut and pad to --max-length).",
    ),
    ("max-length", int, "Cap on tokens per text (never above the context length)."),
    ("bucket/--no-bucket", None, "Length-bucketed training batches [no]."),
    ("backbone", str, "Backbone: gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, gpt2-tiny."),
    ("weights", str, "pretrained, random, or a path to a model.safetensors (or its directory)."),
    ("pooling", click.Choice(["last", "last-token", "first", "mean"]), "Pooling [last-token]."),
    (
        "trainable",
        str,
        "head, last-block (default), last-blocks:N, all, lora, or lora:r=R,alpha=A.",
    ),
    ("dropout", float, "Dropout rate [0.0]."),
    ("epochs", int, "Epochs [5]."),
    ("batch-size", int, "Batch size [8]."),
    ("grad-accum", int, "Gradient accumulation steps [1]."),
    ("lr", float, "AdamW learning rate [5e-5]."),
    ("weight-decay", float, "AdamW weight decay [0.1]."),
    ("grad-clip", float, "Clip the gradient norm to this value."),
    ("early-stopping", int, "Stop after this many epochs without a better validation loss."),
    ("eval-every", int, "Steps between evaluations recorded in history.csv [50]."),
    ("eval-batches", int, "Batches per periodic evaluation [5]."),
    ("seed", int, "Random seed [123]."),
    ("device", click.Choice(["auto", "cpu", "cuda", "mps"]), "Device [auto]."),
    ("precision", click.Choice(["fp32", "bf16", "fp16", "auto"]), "Autocast precision [fp32]."),
    ("cache", click.Choice(["auto", "off"]), "Frozen-trunk cache when exact [auto]."),
    (
        "save",
        click.Choice(["best", "last"]),
        "Keep the best model by validation loss, or the last.",
    ),
    ("output", click.Path(file_okay=False), "Run directory [runs/<dataset>]."),
]


def _add_fit_options(command: Any) -> Any:
    for name, type_, help_text in reversed(FIT_OPTIONS):
        if type_ is None:  # boolean flag pair
            command = click.option(f"--{name}", default=None, help=help_text)(command)
        else:
            command = click.option(f"--{name}", type=type_, default=None, help=help_text)(command)
    return command


@click.command("fit")
@_add_fit_options
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="JSON or TOML file of config fields; flags override it.",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    help="Continue the interrupted run in this directory from its last epoch.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the llmclf run in --output (kept whole until the new one has finished).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the result.")
@click.option(
    "--log-json",
    type=click.Path(dir_okay=False),
    help="Write one JSON object per training event to this file.",
)
def fit_command(
    config_file: str | None,
    resume: str | None,
    overwrite: bool,
    quiet: bool,
    log_json: str | None,
    **options: Any,
) -> None:
    """Fine-tune a backbone as a classifier and save the run directory."""
    from ..settings import process_rank
    from ..training.config import TrainConfig, read_config_file
    from ..training.reporting import JsonLinesReporter, MultiReporter, Reporter
    from ..training.trainer import Trainer
    from .render import RichReporter

    reporters: list[Reporter] = [] if quiet else [RichReporter()]
    if log_json:
        reporters.append(JsonLinesReporter(log_json))
    reporter = MultiReporter(*reporters)
    trainer: Trainer | None = None
    try:
        if resume:
            if config_file or any(v is not None for v in options.values()):
                raise click.UsageError(
                    "--resume takes the run's own config; drop the other options"
                )
            trainer = Trainer.resume(resume, reporter=reporter)
        else:
            fields = read_config_file(config_file) if config_file else {}
            fields.update({k: v for k, v in options.items() if v is not None})
            if isinstance(fields.get("split"), str):
                fields["split"] = _parse_split(fields["split"])
            trainer = Trainer(TrainConfig.from_dict(fields), reporter=reporter)
        run = trainer.fit(overwrite=overwrite)
    except KeyboardInterrupt:
        hint = trainer.interruption_hint() if trainer is not None else None
        if hint:
            click.echo(f"Error: interrupted; {hint}", err=True)
            sys.exit(130)
        raise
    finally:
        reporter.close()
    test = run.metrics.get("test") or run.metrics.get("validation") or {}
    summary = f"saved {run.output_dir}"
    if test:
        split = "test" if "test" in run.metrics else "validation"
        summary += f"; {split} accuracy {test['accuracy']:.4f}"
    if not process_rank():  # under torchrun: once, not once per rank
        click.echo(summary)


def _parse_split(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}; give three fractions like 0.7,0.1,0.2", param_hint="--split"
        ) from None
    return values
