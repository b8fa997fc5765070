"""``llmclf fit``: options -> TrainConfig -> Trainer.fit().

The config options are not written here: each `TrainConfig` field becomes one option, named,
typed, documented and constrained by the field's declaration (`config_option`).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import Field
from typing import TYPE_CHECKING, Any

import click

from ..options import OFFICIAL_SPLIT, flag, show_default, type_name
from ..training.config import config_fields

if TYPE_CHECKING:
    from ..training.config import TrainConfig
    from ..training.trainer import Run

_TYPES: dict[str, click.ParamType] = {
    "str": click.STRING,
    "int": click.INT,
    "float": click.FLOAT,
}


class CommaSeparatedFloats(click.ParamType):
    """``0.7,0.1,0.2`` -> ``[0.7, 0.1, 0.2]``; ``official`` stays a word."""

    name = "floats"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, list | tuple):
            return list(value)
        if str(value).strip() == OFFICIAL_SPLIT:
            return OFFICIAL_SPLIT
        try:
            return [float(part) for part in str(value).split(",")]
        except ValueError:
            self.fail(
                f"{value!r}; give comma-separated numbers like 0.7,0.1,0.2, or official",
                param,
                ctx,
            )


def config_option(f: Field[Any]) -> click.Option:
    """The option of config field ``f``: its flag, type or choices, help, shown default.

    The option's own default is None (not given), so a ``--config`` file's value is kept.
    """
    meta = f.metadata
    annotation = type_name(f).removesuffix(" | None")
    help_text = f"{meta['help']}  [default: {show_default(f)}]"
    if annotation == "bool":
        name = flag(f.name)
        return click.Option([f"{name}/--no-{name[2:]}"], default=None, help=help_text)
    if meta.get("choices"):
        param_type: click.ParamType = click.Choice(meta["choices"])
    elif annotation.startswith("tuple["):
        param_type = CommaSeparatedFloats()
    else:
        param_type = _TYPES[annotation]
    return click.Option(
        [flag(f.name)], type=param_type, default=None, help=help_text, metavar=meta.get("metavar")
    )


def config_options(fields: Iterable[Field[Any]]) -> Any:
    """A decorator adding `config_option` of each of ``fields`` to a Click command."""

    def add(command: Any) -> Any:
        params = getattr(command, "__click_params__", [])
        command.__click_params__ = params + [config_option(f) for f in reversed(list(fields))]
        return command

    return add


@click.command("fit")
@config_options(config_fields())
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
    help="Write one JSON object per training event to this file (replaced if it exists; "
    "missing folders are created).",
)
@click.option(
    "--log-to",
    multiple=True,
    metavar="TRACKER",
    help="Also log the run to tensorboard and/or mlflow (repeat, or tensorboard,mlflow).",
)
@click.option(
    "--tensorboard-dir",
    type=click.Path(file_okay=False),
    help="TensorBoard log root; the run logs to DIR/<run name>.  [default: tensorboard/ "
    "beside the run directory]",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Prepare the data and the model, train nothing, and estimate the cost per phase.",
)
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the report as JSON.")
def fit_command(
    config_file: str | None,
    resume: str | None,
    overwrite: bool,
    quiet: bool,
    log_json: str | None,
    log_to: tuple[str, ...],
    tensorboard_dir: str | None,
    dry_run: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Fine-tune a backbone as a classifier and save the run directory."""
    from ..reporting import JsonLinesReporter, MultiReporter, Reporter
    from ..settings import process_rank
    from ..tracking import make_tracker, parse_log_to
    from ..training.trainer import Trainer
    from .render import RichReporter

    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run")
    tracker_names = parse_log_to(log_to)  # a mistyped tracker fails a dry run too
    if dry_run:
        if resume:
            raise click.UsageError("--dry-run starts a new run; drop --resume")
        _dry_run(config_file, options, quiet=quiet or as_json, as_json=as_json)
        return
    trackers = [make_tracker(n, tensorboard_dir=tensorboard_dir) for n in tracker_names]
    reporters: list[Reporter] = [] if quiet else [RichReporter()]
    if log_json:
        reporters.append(JsonLinesReporter(log_json))
    reporters += trackers
    reporter = MultiReporter(*reporters)
    trainer: Trainer | None = None
    restore_sigterm = sigterm_interrupts()
    try:
        if resume:
            _refuse_options_with_resume(config_file, options)
            trainer = Trainer.resume(resume, reporter=reporter)
        else:
            trainer = Trainer(config_from(config_file, options), reporter=reporter)
        run = trainer.fit(overwrite=overwrite)
    except KeyboardInterrupt as exc:
        hint = trainer.interruption_hint() if trainer is not None else None
        terminated = isinstance(exc, Terminated)
        if hint or terminated:
            what = "terminated (SIGTERM)" if terminated else "interrupted"
            click.echo(f"Error: {what}" + (f"; {hint}" if hint else ""), err=True)
            sys.exit(128 + signal.SIGTERM if terminated else 130)
        raise
    finally:
        restore_sigterm()
        reporter.close()
    if not process_rank():  # under torchrun: once, not once per rank
        click.echo(_summary(run))


def config_from(config_file: str | None, options: dict[str, Any]) -> TrainConfig:
    """The config a fit command describes: the ``--config`` file, then the options given."""
    from ..training.config import TrainConfig, read_config_file

    fields = read_config_file(config_file) if config_file else {}
    fields.update({k: v for k, v in options.items() if v is not None})
    return TrainConfig.from_dict(fields)


def _summary(run: Run) -> str:
    """``saved DIR; test accuracy X`` (validation when there is no test split)."""
    summary = f"saved {run.output_dir}"
    split = "test" if run.metrics.get("test") else "validation"
    if run.metrics.get(split):
        summary += f"; {split} accuracy {run.metrics[split]['accuracy']:.4f}"
    return summary


def _refuse_options_with_resume(config_file: str | None, options: dict[str, Any]) -> None:
    """--resume rebuilds the run from its own config: name any other option given with it."""
    given = [
        flag(name) if value is not False else "--no-" + flag(name)[2:]
        for name, value in options.items()
        if value is not None
    ]
    if config_file:
        given.insert(0, "--config")
    if given:
        raise click.UsageError(
            f"--resume takes the run's own config; drop {', '.join(given)} (to train with other "
            "options, start a new run with --output elsewhere, or --overwrite)"
        )


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``docker stop``, ``timeout``) while fit runs: stopped as on Ctrl-C,
    so the run is left resumable and the hint is printed."""


def sigterm_interrupts() -> Callable[[], None]:
    """Make SIGTERM raise `Terminated` in the main thread; returns the function that restores
    the previous handler (a no-op where no handler can be installed)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _dry_run(
    config_file: str | None, options: dict[str, Any], *, quiet: bool, as_json: bool
) -> None:
    """``fit --dry-run``: the config as fit would build it, prepared and timed, not trained."""
    import json

    from ..reporting import Reporter
    from ..training.dry_run import dry_run
    from .render import RichReporter

    reporter = Reporter() if quiet else RichReporter()
    try:
        report = dry_run(config_from(config_file, options), reporter=reporter)
    finally:
        reporter.close()
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
