"""The ``llmclf`` command line: a thin layer that turns options into API calls."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import click

from .. import settings
from .._version import __version__
from ..errors import LlmclfError, LlmclfWarning, UsageError

# Click >= 8.2 signals "no arguments: show the help" with this usage error; 8.1 prints it itself.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class LlmclfGroup(click.Group):
    """Renders every error as one line on stderr (traceback only with ``--debug``).

    Library errors exit with their own code (1, usage errors 2), unreadable or unwritable paths
    with 1, Click's usage errors with 2, an interrupt with 130. Under ``torchrun`` a usage error
    (the same on every rank) is printed by rank 0 only; the other ranks exit with its code.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False  # so the errors below reach us
        try:
            result = super().main(*args, **kwargs)
        except _NO_ARGS_IS_HELP as exc:  # a bare command: its help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            if settings.process_rank():  # rank 0 prints the same error
                sys.exit(exc.exit_code)
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        # as in standalone mode: exit with ctx.exit()'s code (Click returns it), else 0
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():  # restores the default display afterwards
                warnings.showwarning = _one_line_warning(warnings.showwarning)
                return super().invoke(ctx)
        except LlmclfError as exc:
            if ctx.meta.get("llmclf.debug") or settings.debug():
                raise
            if isinstance(exc, UsageError) and settings.process_rank():
                sys.exit(exc.exit_code)  # rank 0 prints the same error
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # a path the user gave that cannot be read or written
            if ctx.meta.get("llmclf.debug") or settings.debug() or exc.filename is None:
                raise
            reason = exc.strerror or type(exc).__name__
            click.echo(f"Error: {exc.filename}: {reason}; check the path", err=True)
            sys.exit(1)


def _one_line_warning(default: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints llmclf's own warnings as ``Warning: ...``."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, LlmclfWarning):
            click.echo(f"Warning: {message}", err=True)
        else:
            default(message, category, *args, **kwargs)

    return show


@click.group(cls=LlmclfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="llmclf")
@click.option("--debug", is_flag=True, help="Show full tracebacks (or set LLMCLF_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Fine-tune GPT-2 as a text classifier, evaluate it, predict and serve."""
    ctx.meta["llmclf.debug"] = debug


def _add_commands() -> None:
    from .download import download_command
    from .evaluate import evaluate_command
    from .export import export_command
    from .fit import fit_command
    from .list_cmd import list_command
    from .predict import predict_command
    from .reproduce import reproduce_command
    from .serve import serve_command
    from .sweep import sweep_command

    commands = (fit_command, evaluate_command, predict_command, serve_command, list_command)
    for command in (*commands, export_command, download_command, reproduce_command, sweep_command):
        main.add_command(command)


_add_commands()
