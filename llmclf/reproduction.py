"""``llmclf reproduce RUN``: train a finished run again from its saved config and compare.

`reproduce` reads ``RUN/llmclf.json``, checks that the dataset still has the fingerprint the
run was trained on (before any training), fits the same `TrainConfig` into a new directory and
returns a `ReproduceReport`: the config fields that differ (only ``output``, normally), each
split's accuracy and loss old and new, and the largest absolute difference between the two
``model.safetensors``.

On the same machine and torch build a CPU run reproduces bit for bit (the test suite checks
it). Elsewhere small differences are legitimate: another torch or BLAS build, another number of
threads (reductions summed in another order), other CPU kernels (MKL / oneDNN paths picked by
the instruction set), GPU kernels that are not deterministic, and bf16/fp16 autocast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, DataError, UsageError
from .reporting import Reporter

ELSEWHERE = (
    "on another machine, torch or BLAS build, thread count or GPU, small differences are "
    "expected: reductions summed in another order, other kernels, GPU nondeterminism, "
    "bf16/fp16 autocast"
)
COMPARED = ("accuracy", "loss")


@dataclass
class ReproduceReport:
    """What `reproduce` found: the two runs, and how they differ."""

    original: Path
    reproduced: Path
    config_changes: dict[str, tuple[Any, Any]]  # field -> (original, reproduced)
    metrics: dict[str, dict[str, tuple[float, float]]]  # split -> metric -> (old, new)
    max_weight_difference: float  # largest |old - new| over every tensor of model.safetensors
    versions: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """Same config (but for ``output``), same metrics and same weights, bit for bit."""
        same_metrics = all(_same(o, n) for m in self.metrics.values() for o, n in m.values())
        return (
            set(self.config_changes) <= {"output"}
            and same_metrics
            and self.max_weight_difference == 0.0
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values."""
        return {
            "original": str(self.original),
            "reproduced": str(self.reproduced),
            "identical": self.identical,
            "config_changes": {k: list(v) for k, v in self.config_changes.items()},
            "metrics": {
                split: {
                    k: {"original": o, "reproduced": n, "difference": n - o}
                    for k, (o, n) in values.items()
                }
                for split, values in self.metrics.items()
            },
            "max_weight_difference": self.max_weight_difference,
            "versions": {k: list(v) for k, v in self.versions.items()},
        }

    def render(self) -> str:
        """The side-by-side comparison the CLI prints."""
        width = max([len("metric"), *(len(f"{s} {k}") for s, m in self.metrics.items() for k in m)])
        lines = [f"{'config':<{width}}  {self.original}  ->  {self.reproduced}"]
        for name, (old, new) in self.config_changes.items():
            lines.append(f"  {name}: {old!r} -> {new!r}")
        if set(self.config_changes) <= {"output"}:
            lines.append("  identical but for output")
        lines.append(
            f"{'metric':<{width}}  {'original':>12}  {'reproduced':>12}  {'difference':>11}"
        )
        for split, values in self.metrics.items():
            for key, (old, new) in values.items():
                label = f"{split} {key}"
                lines.append(f"{label:<{width}}  {old:>12.6f}  {new:>12.6f}  {new - old:>+11.3g}")
        lines.append(f"largest weight difference: {self.max_weight_difference:.3g}")
        for name, (old, new) in self.versions.items():
            if old != new:
                lines.append(f"{name}: {old} -> {new}")
        verdict = "reproduced exactly" if self.identical else f"not identical; {ELSEWHERE}"
        lines.append(verdict)
        return "\n".join(lines)


def _same(old: float, new: float) -> bool:
    return old == new or (math.isnan(old) and math.isnan(new))


def reproduce(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    reporter: Reporter | None = None,
) -> ReproduceReport:
    """Train the finished run in ``run_dir`` again, from its ``llmclf.json``, into ``output``
    (default ``RUN-reproduced``, or the first free ``-2``, ``-3``...), and compare the two."""
    from .runs.rundir import RunDirectory
    from .training.config import TrainConfig
    from .training.trainer import Trainer

    run = Path(run_dir)
    manifest = _finished_manifest(run)
    out = Path(output) if output is not None else default_reproduce_dir(run)
    if out.resolve() == run.resolve():
        raise UsageError(f"--output {out} is the run itself; reproduce into a new directory")
    config = TrainConfig.from_dict(manifest["config"])
    check_same_data(config, manifest["data"], run)
    new = Trainer(config.replace(output=str(out)), reporter=reporter).fit()
    new_manifest = RunDirectory(new.output_dir).read_manifest()
    return ReproduceReport(
        original=run,
        reproduced=new.output_dir,
        config_changes=_changes(manifest["config"], new_manifest["config"]),
        metrics=_metrics(run, new.output_dir),
        max_weight_difference=max_weight_difference(run, new.output_dir),
        versions={
            key: (manifest.get(key), new_manifest.get(key))
            for key in ("llmclf_version", "torch_version")
        },
    )


def default_reproduce_dir(run: Path) -> Path:
    """``RUN-reproduced``, or the first free ``RUN-reproduced-2``, ``-3``, ..."""
    candidate = run.with_name(f"{run.name}-reproduced")
    n = 2
    while candidate.exists():
        candidate = run.with_name(f"{run.name}-reproduced-{n}")
        n += 1
    return candidate


def _finished_manifest(run: Path) -> dict[str, Any]:
    from .runs.rundir import RunDirectory

    if not (run / "llmclf.json").is_file():
        raise UsageError(f"{run} is not an llmclf run (no llmclf.json); give a run directory")
    manifest = RunDirectory(run).read_manifest()
    if not manifest.get("complete"):
        raise CheckpointError(
            f"{run} has not finished training; finish it first: llmclf fit --resume {run}"
        )
    return manifest


def check_same_data(config: Any, saved: dict[str, Any], run: Path) -> None:
    """Raise a one-line `DataError` saying what changed unless ``config``'s dataset has the
    fingerprint the run was trained on."""
    from .data.clean import fingerprint as fingerprint_of
    from .data.pipeline import _load_clean

    cleaned = _load_clean(config.data)
    if fingerprint_of(cleaned.frame) == saved["fingerprint"]:
        return
    report = saved.get("report", {})
    counts = cleaned.frame["label"].astype(str).value_counts().to_dict()
    changes = []
    if report.get("rows_kept") != len(cleaned.frame):
        changes.append(f"rows {report.get('rows_kept')} -> {len(cleaned.frame)}")
    old_counts = report.get("class_counts", {})
    if set(old_counts) != set(counts):
        changes.append(f"labels {sorted(old_counts)} -> {sorted(counts)}")
    elif old_counts != counts:
        diff = {k: f"{old_counts[k]} -> {counts[k]}" for k in counts if old_counts[k] != counts[k]}
        changes.append("label counts " + ", ".join(f"{k} {v}" for k, v in diff.items()))
    what = "; ".join(changes) or "same row and label counts, different texts or labels"
    raise DataError(
        f"the data of {run} changed since it was trained ({what}); restore {config.dataset} "
        "as it was to reproduce the run"
    )


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }


def _metrics(old_run: Path, new_run: Path) -> dict[str, dict[str, tuple[float, float]]]:
    from .runs import checkpoint as ckpt

    old = ckpt.read_json(old_run / ckpt.METRICS_FILE)
    new = ckpt.read_json(new_run / ckpt.METRICS_FILE)
    return {
        split: {
            key: (float(old[split].get(key, math.nan)), float(new[split].get(key, math.nan)))
            for key in COMPARED
        }
        for split in old
        if split in new
    }


def max_weight_difference(old_run: Path, new_run: Path) -> float:
    """The largest absolute difference between the two runs' ``model.safetensors`` tensors
    (infinity when they do not hold the same tensor names and shapes)."""
    from safetensors.torch import load_file

    from .runs import checkpoint as ckpt

    old = load_file(old_run / ckpt.MODEL_FILE)
    new = load_file(new_run / ckpt.MODEL_FILE)
    if old.keys() != new.keys() or any(old[k].shape != new[k].shape for k in old):
        return math.inf
    largest = 0.0
    for name, tensor in old.items():
        if tensor.numel():
            diff = (tensor.double() - new[name].double()).abs().max().item()
            largest = max(largest, diff)
    return largest
