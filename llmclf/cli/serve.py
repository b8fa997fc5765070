"""``llmclf serve``: a trained run behind an HTTP API (needs the ``serve`` extra)."""

from __future__ import annotations

import click

from ..options import DEVICES
from ..serve import DEFAULT_MAX_BATCH, DEFAULT_MAX_CHARS


@click.command("serve")
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (0.0.0.0 listens on every interface).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes, each with its own copy of the model.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BATCH,
    show_default=True,
    help="Most texts in one request (more get 413).",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CHARS,
    show_default=True,
    help="Longest text in characters (longer get 413).",
)
@click.option(
    "--device", type=click.Choice(DEVICES), default="auto", show_default=True, help="Where to run."
)
def serve_command(
    run: str, host: str, port: int, workers: int, max_batch: int, max_chars: int, device: str
) -> None:
    """Serve a trained run over HTTP (needs llmclf[serve]).

    POST /predict takes {"texts": [...]}; GET /info, GET /health, a page at /, docs at /docs.
    """
    from ..serve import ServeConfig, serve

    serve(
        ServeConfig(
            run=run,
            host=host,
            port=port,
            workers=workers,
            max_batch=max_batch,
            max_chars=max_chars,
            device=device,
        )
    )
