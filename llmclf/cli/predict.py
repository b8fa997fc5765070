"""``llmclf predict``: one output row per input text, in input order."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from ..data.readers import STDIN_FORMATS
from ..options import DEVICES
from .shared_options import precision_option

if TYPE_CHECKING:
    from ..inference import Classifier
    from ..prediction_io import PredictionWriter
    from ..reporting import Reporter

FORMATS = ("table", "json", "jsonl", "csv")  # as llmclf.prediction_io.FORMATS


@click.command("predict")
@click.argument("run", type=click.Path(file_okay=False))
@click.argument("texts", nargs=-1)
@click.option(
    "--file",
    "file_",
    help="Read texts from a csv/tsv/jsonl/json/parquet/txt file, or - for stdin.",
)
@click.option(
    "--text-column",
    default=None,
    help="Text column of a --file table (stdin: with --stdin-format csv/tsv/jsonl) "
    "[default: text].",
)
@click.option(
    "--stdin-format",
    type=click.Choice(STDIN_FORMATS),
    default=None,
    help="How --file - reads stdin: txt (one text per line) or a csv/tsv/jsonl table "
    "[default: txt].",
)
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of --file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format [by --output's suffix: .json, .jsonl or .csv; table without --output].",
)
@click.option("--output", type=click.Path(dir_okay=False), help="Write predictions to this file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Rows of --file read at a time (memory stays flat).",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@precision_option("Autocast precision for inference.")
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    default=None,
    help="Dynamic int8 quantisation of the linear layers (CPU).",
)
@click.option(
    "--engine",
    type=click.Choice(["torch", "onnxruntime"]),
    default="torch",
    show_default=True,
    help="onnxruntime: RUN is a directory written by llmclf export --format onnx.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def predict_command(
    run: str,
    texts: tuple[str, ...],
    file_: str | None,
    text_column: str | None,
    stdin_format: str | None,
    encoding: str,
    fmt: str | None,
    output: str | None,
    batch_size: int,
    chunk_size: int,
    device: str,
    precision: str,
    quantize: str | None,
    engine: str,
    quiet: bool,
) -> None:
    """Predict labels for TEXTS, or for every row of --file.

    One output row per input row, in order. A .txt file, and stdin unless --stdin-format says
    otherwise, hold one text per line; \\n, \\r\\n and a lone \\r each end a line, and an empty
    line is an empty text. In a one-column csv/tsv a blank line is an empty text too.
    """
    if texts and file_:
        raise click.UsageError("give texts as arguments or --file, not both")
    if not texts and not file_:
        raise click.UsageError("give one or more texts, or --file PATH (- for stdin)")
    from ..data.pipeline import load_texts
    from ..inference import Classifier
    from ..prediction_io import PredictionWriter, predict_chunks
    from ..reporting import Phase

    fmt = fmt or _format_of(output)
    chunks = (  # options are checked here, before the model loads; the file is read lazily
        [list(texts)]
        if texts
        else load_texts(
            file_,
            text_column=text_column,
            encoding=encoding,
            chunksize=chunk_size,
            stdin_format=stdin_format,
        )
    )
    reporter, screen = _progress(quiet, to_stdout=not output)
    with ExitStack() as stack:
        stack.callback(reporter.close)
        if screen is not None:
            stack.callback(screen.close)  # before the bar goes
        with Phase(reporter, "load model"):
            classifier = Classifier.load(
                run, device=device, precision=precision, quantize=quantize, engine=engine
            )
        out = screen or sys.stdout
        if output:
            out = stack.enter_context(_output_file(Path(output)))
        writer = PredictionWriter(out, fmt, classifier.labels)
        total = len(texts) if texts else None  # a file is read as it is predicted
        read = predict_chunks(
            classifier, chunks, writer, batch_size, reporter=reporter, total=total
        )
    unit = "text" if texts else "row"  # texts given as arguments are not rows of a file
    click.echo(_closing_line(read, unit, writer, classifier, output), err=True)


def _closing_line(
    read: int, unit: str, writer: PredictionWriter, classifier: Classifier, output: str | None
) -> str:
    """``read N rows|texts, wrote N predictions [to FILE]; <what was cut>`` (on stderr)."""
    from ..prediction_io import cut_summary, plural

    return (
        f"read {plural(read, unit)}, wrote {plural(writer.rows, 'prediction')}"
        + (f" to {output}" if output else "")
        + "; "
        + cut_summary(
            writer.truncated,
            classifier.max_tokens,
            writer.tokens_dropped,
            long_texts=classifier.policy.long_text.spec(),
        )
    )


@contextmanager
def _output_file(path: Path) -> Iterator[IO[str]]:
    """``path`` opened for writing: a regular file is written beside and renamed on success (a
    failed run leaves no partial file); a FIFO or device is written in place. A failed write
    (``/dev/full``: no space left) names ``path``."""
    from ..assets import atomic_path

    try:
        with atomic_path(path) as target, open(target, "w", encoding="utf-8", newline="") as f:
            yield f
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from None


def _progress(quiet: bool, *, to_stdout: bool) -> tuple[Reporter, IO[str] | None]:
    """The reporter that draws progress bars (on a terminal, unless ``--quiet``), and, when the
    predictions go to the same terminal, the stream that prints them above the bar."""
    from rich.console import Console

    from ..reporting import Reporter
    from .render import ConsoleStream, RichReporter

    if quiet or not Console(stderr=True).is_terminal:
        return Reporter(), None
    if to_stdout and sys.stdout.isatty():  # one terminal: bar and predictions through one console
        console = Console()
        return RichReporter(console), ConsoleStream(console)
    return RichReporter(), None


FILE_FORMATS = ("json", "jsonl", "csv")  # what --output's suffix can choose


def _format_of(output: str | None) -> str:
    """The format --output's suffix names (table without --output); refuse any other suffix."""
    if not output:
        return "table"
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix in FILE_FORMATS:
        return suffix
    named = f"suffix .{suffix}" if suffix else "no suffix"
    raise click.UsageError(
        f"--output {output} has {named}, which names no output format; name the file "
        f"{', '.join('.' + f for f in FILE_FORMATS)}, or pass --format "
        f"{'|'.join(FORMATS)} to write that format under any name"
    )
