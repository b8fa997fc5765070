"""`sweep`: run each row of a sweep into its own run directory and write the table.

The sweep directory holds one llmclf run directory per row (``<sweep>/<row name>``), the
table files (`llmclf.sweeps.results`) and ``sweep.json``, the times and peak memory the sweep
measured. Running the same sweep again continues it: a row whose run directory holds a
finished run (a complete manifest) is read, not run again; a row stopped after an epoch
resumes from it (``llmclf fit --resume``); a row stopped before its first epoch ended starts
again in place. A row whose settings equal another finished row's (the book's row 10 is row
5 once every row runs with ``--weights random``) is not run twice: it shows that row's run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..assets import atomic_path
from ..errors import UsageError
from ..reporting import Reporter
from ..runs import checkpoint as ckpt
from ..runs import rundir
from ..runs.rundir import STAGING_DIR, RunDirectory
from ..training.config import TrainConfig
from .memory import PeakMemory
from .results import RowResult, write_results
from .reuse import PreparedStore
from .rows import SweepRow

STATE_FILE = "sweep.json"
SAME_AS = "same settings as row"  # the note of a row shown with another row's run


@dataclass
class SweepResult:
    """What `sweep` ran: the sweep directory, one `RowResult` per row, the table files, and how
    often prepared data and frozen-trunk caches were reused."""

    output_dir: Path
    rows: list[RowResult]
    files: dict[str, str | None] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)


@dataclass
class SweepPlan:
    """A checked sweep: its rows, their configs, and how the table is laid out."""

    rows: list[SweepRow]
    configs: list[TrainConfig]
    skipped: dict[str, str] = field(default_factory=dict)  # row name -> why it is left out
    layout: str = "overrides"
    title: str = ""


def run_sweep(
    plan: SweepPlan, output: Path, *, reporter: Reporter | None = None, reuse: bool = True
) -> SweepResult:
    """Run every row of ``plan`` that is not finished yet into ``output``; write the table
    after each row, so an interrupted sweep leaves the table of what it had done."""
    reporter = reporter or Reporter()
    output.mkdir(parents=True, exist_ok=True)
    store = PreparedStore() if reuse else None
    state = _read_state(output)
    results = [
        _pending(row, cfg, plan.skipped.get(row.name), state.get(row.name, {}))
        for row, cfg in zip(plan.rows, plan.configs, strict=True)
    ]
    files: dict[str, str | None] = {}
    to_run = [r for r in plan.rows if r.runs and r.name not in plan.skipped]
    done = 0
    for i, (row, cfg, result) in enumerate(zip(plan.rows, plan.configs, results, strict=True)):
        if result.status != "pending":
            continue
        done += 1
        counted = f"sweep row {done}/{len(to_run)}: {row.name}"
        if _finished(Path(cfg.output)):  # type: ignore[arg-type]
            counted += " (finished earlier: read from its run directory)"
        elif twin := _twin(i, results, plan.configs):
            state[row.name] = {"same_as": twin.name}
            _copy_twin(twin, result)
            _write_state(output, state)
            reporter.event("message", text=f"{counted}: {result.note}")
            continue
        reporter.event("message", text=counted)
        try:
            _run_row(row, cfg, result, state, store, reporter)
        finally:
            _note_stopped(result, Path(cfg.output))  # type: ignore[arg-type]
            _write_state(output, state)
            files = write_results(output, results, layout=plan.layout, title=plan.title)
    _read_twins(results, plan.configs, state)
    files = write_results(output, results, layout=plan.layout, title=plan.title)
    reused = dict(store.hits) if store else {}
    return SweepResult(output, results, files, reused)


def _pending(
    row: SweepRow, cfg: TrainConfig, skipped: str | None, mine: dict[str, Any]
) -> RowResult:
    """A row's result before the sweep runs: not run (a described row), skipped (left out
    this time: read from its run directory when an earlier sweep finished it), or pending."""
    result = RowResult(
        row.name, dict(row.overrides), cfg.to_dict(), label=row.label, run_dir=str(cfg.output)
    )
    path = Path(cfg.output)  # type: ignore[arg-type]
    if not row.runs:
        result.status, result.note, result.run_dir = "not run", row.note or "", ""
    elif skipped and _finished(path) and not _config_differences(cfg, _saved_config(path)):
        _read_finished(row, cfg, path, result, mine)
    elif skipped:
        result.status, result.note, result.run_dir = "skipped", skipped, ""
    else:
        _note_stopped(result, path)
    return result


def _note_stopped(result: RowResult, path: Path) -> None:
    """Say in a pending row's note how far an interrupted run of it got."""
    if result.status != "pending" or not RunDirectory(path).has_resume_state():
        return
    epochs = RunDirectory(path).read_manifest().get("epochs_completed")
    if isinstance(epochs, int) and epochs > 0:
        result.note = f"stopped after epoch {epochs}; the same command continues it"


def _twin(i: int, results: list[RowResult], configs: list[TrainConfig]) -> RowResult | None:
    """The first finished row other than row ``i`` whose settings equal row ``i``'s (a run of
    its own, not itself a copy of another row's)."""
    want = _settings(configs[i])
    for j, (result, cfg) in enumerate(zip(results, configs, strict=True)):
        own_run = result.status == "done" and not result.note.startswith(SAME_AS)
        if j != i and own_run and _settings(cfg) == want:
            return result
    return None


def _settings(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k != "output"}


def _read_twins(
    results: list[RowResult], configs: list[TrainConfig], state: dict[str, Any]
) -> None:
    """Show again the rows an earlier sweep found equal to another row, when they are left
    out this time (``--rows``)."""
    by_name = {r.name: (r, c) for r, c in zip(results, configs, strict=True)}
    for result, cfg in zip(results, configs, strict=True):
        twin, twin_cfg = by_name.get(state.get(result.name, {}).get("same_as"), (None, None))
        same = twin is not None and _settings(twin_cfg) == _settings(cfg)
        if same and result.status == "skipped" and twin.status == "done":
            _copy_twin(twin, result)


def _copy_twin(twin: RowResult, result: RowResult) -> None:
    """Fill ``result`` with the figures of ``twin``, a finished row with the same settings."""
    result.status = "done"
    result.note = f"{SAME_AS} {twin.label or twin.name}: its run, not run twice"
    result.run_dir = twin.run_dir
    result.metrics = dict(twin.metrics)
    result.trainable_parameters = twin.trainable_parameters
    result.padding_length = twin.padding_length
    result.wall_time_s = twin.wall_time_s
    result.peak_memory_mib = twin.peak_memory_mib
    result.memory_kind = twin.memory_kind
    if "device" in twin.config:
        result.config["device"] = twin.config["device"]


def _saved_config(path: Path) -> dict[str, Any]:
    return ckpt.read_json(path / ckpt.MANIFEST_FILE)["config"]


def _run_row(
    row: SweepRow,
    cfg: TrainConfig,
    result: RowResult,
    state: dict[str, Any],
    store: PreparedStore | None,
    reporter: Reporter,
) -> None:
    """Run (or continue, or read) one row and fill ``result``."""
    path = Path(cfg.output)  # type: ignore[arg-type]
    if staged := rundir.finished_staging(path):  # killed while a restart was moved in
        rundir.promote(staged, path)
    mine = state.setdefault(row.name, {})
    if not _finished(path):
        resume = _resumable(cfg, path)
        if not resume:  # a fresh start: the time and memory of an earlier attempt do not count
            mine.clear()
        _fit_row(cfg, path, resume, mine, store, reporter)
    _read_finished(row, cfg, path, result, mine)


def _resumable(cfg: TrainConfig, path: Path) -> bool:
    """Whether the row's run directory holds an interrupted run of this very config that can
    continue from a saved epoch (a run of other settings starts again)."""
    for work in (path / STAGING_DIR, path):  # an interrupted --overwrite is the newer run
        if RunDirectory(work).has_resume_state():
            saved = RunDirectory(work).resume_config().to_dict()
            return not _config_differences(cfg, saved)
    return False


def _fit_row(
    cfg: TrainConfig,
    path: Path,
    resume: bool,
    mine: dict[str, Any],
    store: PreparedStore | None,
    reporter: Reporter,
) -> None:
    """Fit the row (or resume it), adding its wall time and peak memory to ``mine``."""
    from ..device import resolve_device
    from ..training.trainer import Trainer

    device = resolve_device(cfg.device)
    peak = PeakMemory(device)
    hits = dict(store.hits) if store else {}
    start = time.perf_counter()
    try:
        with peak:
            if resume:
                Trainer.resume(path, reporter=reporter, reuse=store).fit()
            else:
                trainer = Trainer(cfg, reporter=reporter, reuse=store)
                trainer.fit(overwrite=rundir.is_run(path))
    finally:  # an interrupted row keeps the time it ran, for when it resumes
        mine["wall_time_s"] = mine.get("wall_time_s", 0.0) + time.perf_counter() - start
        if peak.mib is not None:
            mine["peak_memory_mib"] = max(mine.get("peak_memory_mib", 0.0), peak.mib)
            mine["memory_kind"] = peak.kind
        mine["device"] = device.type
        if store:  # what this row took from earlier rows instead of building it
            reused = [kind for kind, n in store.hits.items() if n > hits.get(kind, 0)]
            mine["reused"] = sorted(set(mine.get("reused", [])) | set(reused))


def _finished(path: Path) -> bool:
    if not rundir.has_manifest(path):
        return False
    return bool(ckpt.read_json(path / ckpt.MANIFEST_FILE).get("complete"))


def _read_finished(
    row: SweepRow, cfg: TrainConfig, path: Path, result: RowResult, mine: dict[str, Any]
) -> None:
    """Fill ``result`` from the finished run in ``path`` (refused if it ran other settings)."""
    manifest = RunDirectory(path).read_manifest()
    differences = _config_differences(cfg, manifest["config"])
    if differences:
        raise UsageError(
            f"row {row.name}: {path} holds a finished run with other settings "
            f"({'; '.join(differences[:3])}); remove it, or sweep into another --output"
        )
    result.status = "done"
    result.metrics = ckpt.read_json(path / ckpt.METRICS_FILE)
    result.trainable_parameters = manifest["trainable"]["trainable_parameters"]
    result.padding_length = (manifest.get("padding") or {}).get("length")
    result.wall_time_s = mine.get("wall_time_s")
    result.peak_memory_mib = mine.get("peak_memory_mib")
    result.memory_kind = mine.get("memory_kind", "")
    result.reused = list(mine.get("reused", []))
    if "device" in mine:
        result.config["device"] = mine["device"]


def _config_differences(cfg: TrainConfig, saved: dict[str, Any]) -> list[str]:
    """The fields (other than output) in which a saved run's config differs from ``cfg``."""
    want = cfg.to_dict()
    if Path(cfg.dataset).is_file():  # the Trainer saves a file dataset's absolute path
        want["dataset"] = str(Path(cfg.dataset).resolve())
    have = TrainConfig.from_dict(saved).to_dict()
    return [
        f"{name} {have.get(name)!r} there, {want.get(name)!r} now"
        for name in sorted(set(want) | set(have))
        if name != "output" and want.get(name) != have.get(name)
    ]


def _read_state(output: Path) -> dict[str, Any]:
    path = output / STATE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data.get("rows", {}) if isinstance(data, dict) else {}


def _write_state(output: Path, state: dict[str, Any]) -> None:
    with atomic_path(output / STATE_FILE) as tmp:
        tmp.write_text(json.dumps({"rows": state}, indent=2) + "\n", encoding="utf-8")
