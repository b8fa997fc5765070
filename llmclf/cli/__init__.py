"""The ``llmclf`` command line: a thin layer that turns options into API calls."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import settings
from .._version import __version__
from ..errors import LlmclfError


class LlmclfGroup(click.Group):
    """Renders library errors as one line on stderr (traceback only with ``--debug``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmclfError as exc:
            if ctx.meta.get("llmclf.debug") or settings.debug():
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=LlmclfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="llmclf")
@click.option("--debug", is_flag=True, help="Show full tracebacks (or set LLMCLF_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Fine-tune GPT-2 as a text classifier, evaluate it, predict and serve."""
    ctx.meta["llmclf.debug"] = debug


def _add_commands() -> None:
    from .evaluate import evaluate_command
    from .fit import fit_command
    from .list_cmd import list_command
    from .predict import predict_command
    from .serve import serve_command

    for command in (fit_command, evaluate_command, predict_command, serve_command, list_command):
        main.add_command(command)


_add_commands()
