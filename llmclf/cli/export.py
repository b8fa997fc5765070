"""``llmclf export``: a run as a transformers model or an ONNX model."""

from __future__ import annotations

import click

FORMATS = ("hf", "onnx")  # as llmclf.export.FORMATS (not imported: that would import torch)


@click.command("export")
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="hf: a directory transformers loads (AutoModelForSequenceClassification, pipeline); "
    "onnx: model.onnx with the pooling inside, for onnxruntime.",
)
@click.option(
    "--output", required=True, type=click.Path(), help="Directory to write (new or empty)."
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in --output.")
def export_command(run: str, fmt: str, output: str, overwrite: bool) -> None:
    """Export a run for transformers (--format hf) or onnxruntime (--format onnx)."""
    from ..export import export_run

    export_run(run, output, format=fmt, overwrite=overwrite)
    if fmt == "hf":
        how = f"transformers.pipeline('text-classification', model='{output}', truncation=True)"
    else:
        how = f"llmclf predict {output} --engine onnxruntime TEXT..."
    click.echo(f"exported {run} to {output} ({fmt}); use it with {how}", err=True)
