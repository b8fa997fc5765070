"""``llmclf fit``: options -> TrainConfig -> Trainer.fit().

The config options are not written here: each `TrainConfig` field becomes one option, named,
typed, documented and constrained by the field's declaration (`config_option`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import Field
from typing import Any

import click

from ..options import OFFICIAL_SPLIT, flag, show_default, type_name
from ..training.config import config_fields

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
