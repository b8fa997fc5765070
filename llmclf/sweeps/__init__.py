"""``llmclf sweep``: many runs, one table.

``sweep(base, grid=..., rows=..., preset=..., output=...)`` runs each row (a set of
`TrainConfig` overrides on top of ``base``) into its own run directory under ``output`` and
writes ``results.csv``, ``results.md`` and ``results.png``. Every row is checked before the
first one starts. Running the same sweep again continues it where it stopped. Rows that share
the dataset, the tokenizer and the frozen part of the model reuse the prepared data and the
frozen-trunk cache (`llmclf.sweeps.reuse`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..training.config import TrainConfig
from .presets import PRESETS, preset_rows
from .results import RowResult
from .rows import SweepRow, grid_rows, read_sweep_file, resolve_rows, select

if TYPE_CHECKING:  # the runner imports torch; `llmclf sweep --help` must not
    from ..reporting import Reporter
    from .runner import SweepPlan, SweepResult

__all__ = ["PRESETS", "RowResult", "SweepResult", "SweepRow", "plan_sweep", "sweep"]


def plan_sweep(
    base: TrainConfig | dict[str, Any] | None = None,
    *,
    grid: dict[str, list[Any]] | None = None,
    rows: list[SweepRow] | str | Path | None = None,
    preset: str | None = None,
    output: str | Path,
    only: str | None = None,
    limit_size: str | None = None,
) -> SweepPlan:
    """Every row's checked config, before anything runs (see `sweep` for the arguments)."""
    named = (("grid", grid), ("rows", rows), ("preset", preset))
    sources = [name for name, given in named if given]
    if len(sources) > 1:
        raise UsageError(f"give one of grid, rows or preset, not {' and '.join(sources)}")
    fields: dict[str, Any] = {}
    layout, title = "overrides", "Sweep results"
    if preset:
        fields, chosen = preset_rows(preset)
        layout, title = "book", f"{preset}: the book's ablation table, run by llmclf sweep"
    elif isinstance(rows, str | Path):
        chosen = read_sweep_file(rows)
    elif rows:
        chosen = list(rows)
    else:
        chosen = grid_rows(grid or {})
    given = base.to_dict() if isinstance(base, TrainConfig) else dict(base or {})
    given.pop("output", None)
    if isinstance(base, TrainConfig):  # a config's every field is set: keep only non-defaults
        default = TrainConfig().to_dict()
        given = {k: v for k, v in given.items() if v != default.get(k)}
    fields.update(given)
    root = Path(output)
    configs = resolve_rows(fields, chosen, root)
    selected = select(chosen, only)
    skipped = {r.name: "not in --rows" for r in chosen if r not in selected}
    if limit_size:
        skipped = {**_too_large(chosen, configs, limit_size), **skipped}
    from .runner import SweepPlan

    return SweepPlan(chosen, configs, skipped, layout, title)


def sweep(
    base: TrainConfig | dict[str, Any] | None = None,
    *,
    grid: dict[str, list[Any]] | None = None,
    rows: list[SweepRow] | str | Path | None = None,
    preset: str | None = None,
    output: str | Path = "sweeps/sweep",
    only: str | None = None,
    limit_size: str | None = None,
    reporter: Reporter | None = None,
    reuse: bool = True,
) -> SweepResult:
    """Run a sweep and return its table.

    Args:
        base: the fields every row starts from (a `TrainConfig`'s non-default fields, or a
            dict of fields, as a ``--config`` file holds them).
        grid: ``{"trainable": ["head", "all"], "pooling": ["last", "first"]}``: every
            combination is a row.
        rows: a list of `SweepRow`, or the path of a TOML/JSON sweep file of named rows.
        preset: a named sweep (``"book-ablation"``); its own base comes under ``base``.
        output: the sweep directory (one run directory per row; rerun to continue).
        only: the rows to run, by 1-based number, range or name (``"1-5,10"``).
        limit_size: skip rows whose backbone has more parameters than this backbone's.
        reporter: receives every run's training events and one message per row.
        reuse: share prepared data and frozen-trunk caches between rows where exact.
    """
    plan = plan_sweep(
        base,
        grid=grid,
        rows=rows,
        preset=preset,
        output=output,
        only=only,
        limit_size=limit_size,
    )
    from .runner import run_sweep

    return run_sweep(plan, Path(output), reporter=reporter, reuse=reuse)


def _parameters(backbone: str) -> int | None:
    """A backbone's parameter count from its registered size, without building it."""
    from ..models.spec import backbone_entry

    size = backbone_entry(backbone).size
    try:
        c, layers = size.n_embd, size.n_layer
        return layers * 12 * c * c + (size.vocab_size + size.context_length) * c
    except AttributeError:
        return None


def _too_large(rows: list[SweepRow], configs: list[TrainConfig], limit: str) -> dict[str, str]:
    """The rows whose backbone is larger than backbone ``limit``, and why they are skipped."""
    most = _parameters(limit)
    if most is None:
        raise UsageError(f"--limit-size {limit}: its size is unknown; name a registered GPT-2 size")
    skipped = {}
    for row, cfg in zip(rows, configs, strict=True):
        size = _parameters(cfg.backbone)
        if row.runs and size is not None and size > most:
            skipped[row.name] = f"{cfg.backbone} is larger than --limit-size {limit}"
    return skipped


def __getattr__(name: str) -> Any:
    if name in ("SweepPlan", "SweepResult"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'llmclf.sweeps' has no attribute {name!r}")
