"""The rows of a sweep: named sets of config overrides, from a grid, a file or a preset.

A row is a name and the `TrainConfig` fields it changes. `grid_rows` makes the full grid of
``--grid field=v1,v2`` flags (each value typed by its field's declaration, as ``llmclf fit``
types it); `read_sweep_file` reads the rows of a TOML or JSON file; `resolve_rows` checks every
row against the base config before anything runs, so a bad key or value is a one-line error
naming the row.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LlmclfError, UsageError
from ..training.config import TrainConfig, config_fields

__all__ = ["SweepRow", "grid_rows", "parse_grid", "read_sweep_file", "resolve_rows", "select"]

# fields a row may not set: the sweep places each row's run directory itself
NOT_PER_ROW = ("output",)


@dataclass(frozen=True)
class SweepRow:
    """One run of a sweep: its ``name`` (also its run directory's), the config fields it
    overrides, and, for a row that is described but not run, the ``note`` saying why."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # set: the row is not run, and the table says this instead
    label: str | None = None  # what the table calls the row (the preset's row number)

    @property
    def runs(self) -> bool:
        return self.note is None


def slug(text: str) -> str:
    """A directory name from ``text``: characters other than letters, digits, ``.=+-`` become
    ``_`` (``trainable=last-blocks:2`` -> ``trainable=last-blocks_2``)."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_") or "row"


def _field(name: str) -> Any:
    fields = {f.name: f for f in config_fields()}
    key = name.strip().replace("-", "_")
    if key not in fields:
        known = ", ".join(sorted(set(fields) - set(NOT_PER_ROW)))
        raise UsageError(f"--grid {name}: not a config field; known: {known}")
    if key in NOT_PER_ROW:
        raise UsageError(f"--grid {name}: the sweep sets each row's {key} itself; use --output")
    return fields[key]


def _typed(f: Any, text: str) -> Any:
    """``text`` as the value of field ``f``, converted as ``llmclf fit``'s option converts it."""
    import click

    from ..cli.fit import config_option

    option = config_option(f)
    if option.is_flag or option.is_bool_flag:
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise UsageError(f"--grid {f.name}={text}: give true or false")
    try:
        return option.type.convert(text.strip(), option, None)
    except click.BadParameter as exc:
        raise UsageError(f"--grid {f.name}={text}: {exc.format_message()}") from None


def parse_grid(specs: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """``["trainable=head,all", "lr=1e-4,5e-5"]`` -> ``{"trainable": ["head", "all"], ...}``.

    Values are split on commas; a value with a comma of its own (``lora:r=16,alpha=16``) goes
    in a sweep file instead.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values.strip():
            raise UsageError(f"--grid {spec!r}: write FIELD=V1,V2 (e.g. pooling=last,first)")
        f = _field(name)
        if f.name in grid:
            raise UsageError(f"--grid {f.name}: given twice; list all its values in one --grid")
        grid[f.name] = [_typed(f, v) for v in values.split(",")]
    return grid


def grid_rows(grid: dict[str, list[Any]]) -> list[SweepRow]:
    """Every combination of the grid's values, in order (the last field varies fastest), each
    named after its values: ``trainable=head_pooling=last``."""
    names = list(grid)
    rows = []
    for values in itertools.product(*(grid[n] for n in names)):
        overrides = dict(zip(names, values, strict=True))
        name = "_".join(f"{n}={_shown(v)}" for n, v in overrides.items())
        rows.append(SweepRow(slug(name) if names else "base", overrides))
    return rows or [SweepRow("base", {})]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "-".join(str(v) for v in value)
    return str(value)


def read_sweep_file(path: str | Path) -> list[SweepRow]:
    """The rows of a TOML or JSON sweep file.

    TOML: one ``[[rows]]`` table per row, with an optional ``name`` and the fields it sets.
    JSON: ``{"rows": [...]}`` or a bare list of such objects. Field names may use ``-``.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"sweep file {path} does not exist; pass a TOML or JSON file of rows")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise UsageError(f"sweep file {path} is not valid {kind}: {exc}") from None
    items = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise UsageError(f"sweep file {path} must hold a non-empty list of rows ([[rows]] tables)")
    rows = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise UsageError(f"sweep file {path}: row {i} must be a table of config fields")
        fields = {k.replace("-", "_"): v for k, v in item.items()}
        name = str(fields.pop("name", "") or f"row{i}")
        rows.append(SweepRow(slug(name), fields))
    return rows


def select(rows: list[SweepRow], spec: str | None) -> list[SweepRow]:
    """The rows ``spec`` names: 1-based numbers and ranges, or names (``1-5,10,lora``)."""
    if not spec:
        return rows
    chosen: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        names = [i for i, r in enumerate(rows) if part in (r.name, r.label)]
        if names:
            chosen += names
            continue
        bounds = part.split("-")
        if len(bounds) in (1, 2) and all(b.isdigit() for b in bounds):
            low, high = int(bounds[0]), int(bounds[-1])
            if 1 <= low <= high <= len(rows):
                chosen += range(low - 1, high)
                continue
        raise UsageError(
            f"--rows {part!r}: not a row name or a number in 1-{len(rows)}; give e.g. 1-5,10"
        )
    return [rows[i] for i in sorted(set(chosen))]


def resolve_rows(base: dict[str, Any], rows: list[SweepRow], root: Path) -> list[TrainConfig]:
    """Each row's config (``base`` with the row's overrides, output ``root/<row name>``),
    checked the way ``llmclf fit`` checks it (fields, registry names, padding and pooling),
    before any run starts. A problem is one line that names the row."""
    from ..training.trainer import check_names

    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UsageError(
            f"row names must be unique; {', '.join(repr(n) for n in twice)} "
            f"{'is' if len(twice) == 1 else 'are'} given twice"
        )
    configs = []
    for row in rows:
        if set(row.overrides) & set(NOT_PER_ROW):
            raise UsageError(f"row {row.name}: the sweep sets output itself; drop it from the row")
        try:
            fields = {**base, **row.overrides, "output": str(root / row.name)}
            config = TrainConfig.from_dict(fields)
            if row.runs:
                check_names(config)
                _check_weights(config)
        except LlmclfError as exc:
            raise type(exc)(f"row {row.name}: {exc}") from None
        configs.append(config)
    return configs


def _check_weights(config: TrainConfig) -> None:
    """Refuse weights that cannot be loaded, before any row runs: pretrained weights of a
    backbone that has none, or a path that does not exist."""
    from ..models.spec import backbone_entry

    if config.weights == "pretrained":
        builder = backbone_entry(config.backbone).builder
        if getattr(builder, "url", "") is None:
            raise UsageError(
                f"backbone {config.backbone!r} has no pretrained weights; use --weights random "
                "or a path to a model.safetensors file"
            )
    elif config.weights != "random" and not Path(config.weights).exists():
        raise UsageError(
            f"weights {config.weights}: no such file or directory; give pretrained, random or "
            "the path of a model.safetensors (or its directory)"
        )
