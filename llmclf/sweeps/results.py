"""A sweep's table: one `RowResult` per row, written as ``results.csv``, ``results.md`` and,
when matplotlib is installed, ``results.png``.

Two layouts: the generic one (each row's overrides, then the measurements) and the book's
(model, weights, token position, trainable layers, context length, accuracies, time), which
the ``book-ablation`` preset uses.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..assets import atomic_path

__all__ = ["RowResult", "write_results"]

CSV_FILE = "results.csv"
MARKDOWN_FILE = "results.md"
PLOT_FILE = "results.png"
MEASURED = (
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
    "test_loss",
    "trainable_parameters",
    "wall_time_s",
    "peak_memory_mib",
)


@dataclass
class RowResult:
    """What one row ran and measured. ``status`` is ``done``, ``not run`` (a described row,
    see ``note``), ``skipped`` (left out by --limit-size) or ``pending`` (not reached yet)."""

    name: str
    overrides: dict[str, Any]
    config: dict[str, Any]
    status: str = "pending"
    note: str = ""
    label: str | None = None
    run_dir: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json
    trainable_parameters: int | None = None
    padding_length: int | None = None  # the fixed width the padding policy learned
    wall_time_s: float | None = None
    peak_memory_mib: float | None = None
    memory_kind: str = ""  # what peak_memory_mib measures: "RSS" or "CUDA"
    reused: list[str] = field(default_factory=list)  # taken from an earlier row: data, trunk cache

    def measured(self) -> dict[str, Any]:
        """The measurements, by `MEASURED` name (None where there is none)."""

        def split(name: str, key: str) -> Any:
            return (self.metrics.get(name) or {}).get(key)

        return {
            "train_accuracy": split("train", "accuracy"),
            "validation_accuracy": split("validation", "accuracy"),
            "test_accuracy": split("test", "accuracy"),
            "test_loss": split("test", "loss"),
            "trainable_parameters": self.trainable_parameters,
            "wall_time_s": self.wall_time_s,
            "peak_memory_mib": self.peak_memory_mib,
        }


def write_results(
    directory: Path, results: list[RowResult], *, layout: str = "overrides", title: str = ""
) -> dict[str, str | None]:
    """Write the table files into ``directory``; return their paths, and ``plot_note`` when the
    plot was skipped."""
    keys = list(dict.fromkeys(k for r in results for k in r.overrides))  # as given
    with atomic_path(directory / CSV_FILE) as tmp:
        tmp.write_text(_csv(results, keys), encoding="utf-8")
    table = _book_table(results) if layout == "book" else _overrides_table(results, keys)
    memory = {r.memory_kind for r in results if r.memory_kind}
    lines = [f"# {title or 'Sweep results'}", "", table, ""]
    if memory:
        kinds = ", ".join(sorted(memory))
        where = f"in {CSV_FILE}" if layout == "book" else "peak MiB"
        lines.append(f"Peak memory ({where}): {kinds} of the sweep process while the row ran.")
    with atomic_path(directory / MARKDOWN_FILE) as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    note = _plot(directory / PLOT_FILE, results)
    return {
        "csv": str(directory / CSV_FILE),
        "markdown": str(directory / MARKDOWN_FILE),
        "plot": None if note else str(directory / PLOT_FILE),
        "plot_note": note,
    }


def _csv(results: list[RowResult], keys: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", *keys, *MEASURED, "reused", "status", "note", "run_dir"])
    for r in results:
        measured = r.measured()
        writer.writerow(
            [r.label or r.name]
            + [_cell(r.overrides.get(k)) for k in keys]
            + [_cell(measured[m]) for m in MEASURED]
            + ["+".join(r.reused), r.status, r.note, r.run_dir]
        )
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _percent(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.2f}%"


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.2f} min"


def _overrides_table(results: list[RowResult], keys: list[str]) -> str:
    head = [
        "row",
        *keys,
        "train acc",
        "val acc",
        "test acc",
        "test loss",
        "trainable params",
        "time",
        "peak MiB",
        "status",
    ]
    body = []
    for r in results:
        m = r.measured()
        loss = m["test_loss"]
        body.append(
            [r.name]
            + [_cell(r.overrides.get(k)) or "(base)" for k in keys]
            + [
                _percent(m["train_accuracy"]),
                _percent(m["validation_accuracy"]),
                _percent(m["test_accuracy"]),
                "—" if loss is None else f"{loss:.4f}",
                "—" if m["trainable_parameters"] is None else f"{m['trainable_parameters']:,}",
                "—" if r.wall_time_s is None else f"{r.wall_time_s:.1f} s",
                "—" if r.peak_memory_mib is None else f"{r.peak_memory_mib:,.0f}",
                r.status if not r.note else f"{r.status}: {r.note}",
            ]
        )
    return _markdown(head, body)


TOKEN_POSITION = {
    "last": "last",
    "last-token": "last real token",
    "first": "first",
    "mean": "mean of real tokens",
    "mean-all": "last + pooled embeddings (mean of all positions)",
}


def _context(r: RowResult) -> str:
    cfg = r.config
    padding, width = cfg.get("padding"), r.padding_length
    shown = f" ({width})" if width else ""
    if padding == "pad-dataset":
        text = f"longest train ex.{shown}"
    elif padding == "truncate-dataset":
        text = f"context length{shown}"
    elif cfg.get("batch_size") == 1:
        accum = cfg.get("grad_accum", 1)
        accumulated = f", {accum} accumulated" if accum > 1 else ""
        text = f"variable: no padding (batch size 1{accumulated})"
    else:
        text = f"{padding}"
    if cfg.get("attention") == "bidirectional":
        text += "; but no causal mask"
    return text


def _book_table(results: list[RowResult]) -> str:
    head = [
        "",
        "Model",
        "Weights",
        "Trainable token position",
        "Trainable layers",
        "Context length",
        "Training acc",
        "Validation acc",
        "Test acc",
        "Training time",
        "Device",
        "Notes",
    ]
    body = []
    for r in results:
        cfg, m = r.config, r.measured()
        # a described row's note says it all; a skipped or pending row says so first
        notes = r.note if r.status in ("done", "not run") else f"{r.status}: {r.note}".rstrip(": ")
        if r.reused:
            notes = f"reused an earlier row's {' and '.join(r.reused)}"
        body.append(
            [
                r.label or r.name,
                cfg.get("backbone", ""),
                cfg.get("weights", ""),
                TOKEN_POSITION.get(cfg.get("pooling", ""), cfg.get("pooling", "")),
                cfg.get("trainable", ""),
                _context(r),
                _percent(m["train_accuracy"]),
                _percent(m["validation_accuracy"]),
                _percent(m["test_accuracy"]),
                _minutes(r.wall_time_s),
                cfg.get("device", "") if r.status == "done" else "—",
                notes,
            ]
        )
    return _markdown(head, body)


def _markdown(head: list[str], body: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(head), line(["---"] * len(head)), *map(line, body)])


def _plot(path: Path, results: list[RowResult]) -> str | None:
    """Bars of the train / validation / test accuracy of each finished row."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the user's backend stays as it is
    except ImportError:
        return f"{PLOT_FILE} skipped: install matplotlib (pip install 'llmclf[plot]')"
    done = [r for r in results if r.status == "done"]
    if not done:
        return f"{PLOT_FILE} skipped: no row has finished"
    fig = Figure(figsize=(max(6.0, 0.6 * len(done) + 2), 4))
    ax = fig.subplots()
    width = 0.27
    for i, (split, label) in enumerate(
        [
            ("train_accuracy", "train"),
            ("validation_accuracy", "validation"),
            ("test_accuracy", "test"),
        ]
    ):
        values = [r.measured()[split] or 0.0 for r in done]
        ax.bar([x + (i - 1) * width for x in range(len(done))], values, width, label=label)
    ax.set_xticks(range(len(done)), [r.label or r.name for r in done], rotation=45, ha="right")
    ax.set(ylabel="accuracy", ylim=(0, 1), title="Accuracy by row")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return None
