"""The Trainer: composes data, backbone, head, trainable policy and loop from one config."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data.padding import check_combination
from ..data.pipeline import DataSpec, PreparedData, Split, prepare_data
from ..data.sources import find_dataset
from ..data.tokenizer import Tokenizer, get_tokenizer
from ..errors import CheckpointError, ConfigError, UsageError
from ..models.classifier import SequenceClassifier
from ..models.trainable import TrainableReport, apply_trainable
from ..options import SPLITS
from ..registries import backbones, balancers, padding
from . import checkpoint as ckpt
from . import distributed, rundir
from .config import TrainConfig
from .device import autocast, resolve_device, resolve_precision
from .distributed import DistContext
from .features import (
    DEFAULT_BUDGET_FRACTION,
    REDUCED_PRECISION_WIDTH_MULTIPLE,
    TrunkCache,
    available_memory_bytes,
    build_trunk_cache,
    cache_bytes,
    cache_decision,
)
from .loop import BatchForward, TrainingLoop
from .reporting import Phase, Reporter


@dataclass
class Run:
    """The result of `Trainer.fit`: where the run lives and what it measured."""

    output_dir: Path
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def data_spec(config: TrainConfig) -> DataSpec:
    """The data part of a config: ``config.data`` (kept for callers of the old name)."""
    return config.data


def check_names(config: TrainConfig) -> None:
    """Look up every registry name in ``config`` (padding, balancer, backbone, dataset), so a
    mistyped one fails at once, before any data is read or any model built; and refuse a
    padding and pooling that would make predictions depend on their batch."""
    check_combination(config.padding, config.pooling, config.max_length)
    balancers.get(config.balance)
    backbones.get(config.backbone)
    find_dataset(config.dataset)


def default_output_dir(dataset: str, root: Path = Path("runs")) -> Path:
    """``runs/<dataset name or file stem>``, or the first free ``-2``, ``-3``, ..."""
    stem = Path(dataset).stem if any(c in dataset for c in "/\\.") else dataset
    candidate = root / stem
    n = 2
    while candidate.exists():
        candidate = root / f"{stem}-{n}"
        n += 1
    return candidate


class Trainer:
    """Fine-tunes a backbone as a sequence classifier.

    ``Trainer(TrainConfig(...))`` or ``Trainer(dataset="tickets", backbone="gpt2-small")``;
    keyword arguments override fields of ``config``. Under ``torchrun`` the same call trains
    with DistributedDataParallel; only rank 0 reports and writes files.
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        reporter: Reporter | None = None,
        **overrides: Any,
    ) -> None:
        config = config or TrainConfig()
        config = config.replace(**overrides) if overrides else config
        if Path(config.dataset).is_file():  # so evaluate finds it from any directory
            config = config.replace(dataset=str(Path(config.dataset).resolve()))
        self.config = config
        self.reporter = reporter or Reporter()
        self._resume_dir: Path | None = None  # where a resumed run's files are
        self._work_dir: Path | None = None  # where `fit` writes: the run, or its staging dir
        self._output: tuple[tuple[str | None, str], Path] | None = None

    @classmethod
    def resume(cls, run_dir: str | Path, *, reporter: Reporter | None = None) -> Trainer:
        """A Trainer that continues the run in ``run_dir`` from its last completed epoch."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UsageError(
                f"{run_dir} does not exist; --resume takes an interrupted run's directory"
            )
        work = _resumable_dir(run_dir)
        state = ckpt.read_json(work / ckpt.RESUME_DIR / ckpt.RESUME_STATE)
        config = TrainConfig.from_dict(state["config"])
        trainer = cls(config.replace(output=str(run_dir)), reporter=reporter)
        trainer._resume_dir = work
        return trainer

    @property
    def output_dir(self) -> Path:
        """Where `fit` writes the run: ``config.output``, or ``runs/<dataset>`` when unset.

        The default is the first free ``runs/<dataset>[-N]`` when first asked for, and stays
        that directory after `fit` has created it.
        """
        cfg = self.config
        key = (cfg.output, cfg.dataset)
        if self._output is None or self._output[0] != key:
            out = Path(cfg.output) if cfg.output else default_output_dir(cfg.dataset)
            self._output = (key, out)
        return self._output[1]

    def interruption_hint(self) -> str | None:
        """After an interrupted `fit`: how to continue it, or to start it again.

        None when the run had not written anything yet.
        """
        work = self._work_dir
        if work is None or not rundir.has_manifest(work):
            return None
        out = self.output_dir
        if (work / ckpt.RESUME_DIR / ckpt.RESUME_STATE).is_file():
            return f"continue with llmclf fit --resume {out}"
        kept = f"; {out} still holds the previous run" if work != out else ""
        return (
            f"stopped before the first epoch ended{kept}; start it again with "
            f"{rundir.repeat_command(self.config, out)}"
        )

    # ------------------------------------------------------------------------------------------
    def fit(self, *, overwrite: bool = False) -> Run:
        """Prepare the data, train, evaluate, and write the run directory."""
        cfg = self.config
        check_names(cfg)  # before any data work
        out = self.output_dir
        work = self._resume_dir or _new_run_dir(out, overwrite=overwrite)
        self._work_dir = work
        ctx, device_name = distributed.setup(cfg.device)
        try:
            if not ctx.is_main:
                self.reporter = Reporter()
            if cfg.batch_size % ctx.world_size:
                raise ConfigError(
                    f"batch_size: {cfg.batch_size} is the global batch and must divide by the "
                    f"{ctx.world_size} processes; pick a multiple of {ctx.world_size}"
                )
            return self._fit(out, work, ctx, resolve_device(device_name))
        finally:
            distributed.teardown(ctx)

    def _fit(self, out: Path, work: Path, ctx: DistContext, device: torch.device) -> Run:
        """Train into ``work`` (``out``, or ``out``'s staging dir under --overwrite)."""
        cfg = self.config
        resuming = self._resume_dir is not None
        amp_dtype = resolve_precision(cfg.precision, device)
        torch.manual_seed(cfg.seed)

        tokenizer = get_tokenizer()
        builder = backbones.get(cfg.backbone)
        backbone = None
        size = getattr(builder, "config", None)  # GPT2Builder knows its size without building
        if size is None:  # a plain builder function (a plugin): build first to learn the size
            backbone = self._build_backbone(builder)
            size = backbone.config
        context_length = size.context_length
        policy = padding.get(cfg.padding)(cfg.max_length, context_length, tokenizer.pad_id)
        with Phase(self.reporter, "data"):
            data = prepare_data(cfg.data, tokenizer, context_length)
        if resuming:
            saved = ckpt.read_json(work / ckpt.MANIFEST_FILE)["data"]["fingerprint"]
            if saved != data.fingerprint:
                raise CheckpointError(
                    f"the dataset changed since {out} was trained; start a new run instead"
                )
        policy.fit([len(ids) for ids in data.train.token_ids])
        self._report_cuts(data, policy)

        if backbone is None:
            backbone = self._build_backbone(builder)
        model = SequenceClassifier(backbone, len(data.labels), pooling=cfg.pooling)
        trainable = apply_trainable(model, cfg.trainable, seed=cfg.seed)
        model.to(device)

        caches, cache_note = self._build_caches(
            model, data, policy, trainable, device, amp_dtype, ctx
        )
        report = data.report.to_dict()
        report["cache"] = cache_note
        self.reporter.event("data", report=report)
        self.reporter.event(
            "model",
            trainable=trainable.trainable,
            total=trainable.total,
            policy=trainable.policy,
            cache=cache_note,
        )

        forward: torch.nn.Module = BatchForward(model)
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            forward = torch.nn.parallel.DistributedDataParallel(forward, device_ids=ids)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        class_weights = (
            torch.tensor(data.class_weights, dtype=torch.float32, device=device)
            if data.class_weights
            else None
        )
        loop = TrainingLoop(
            cfg,
            model,
            forward,
            optimizer,
            data,
            policy,
            caches,
            device,
            amp_dtype,
            class_weights,
            self.reporter,
            ctx,
        )
        manifest = _manifest(cfg, model, trainable, data, policy, tokenizer)
        if ctx.is_main:
            if not resuming:
                if work != out:
                    rundir.clear_staging(out)
                work.mkdir(parents=True, exist_ok=True)
                ckpt.write_json(work / ckpt.MANIFEST_FILE, manifest)  # first: marks an llmclf run
            tokenizer.save(work)
        if resuming:
            loop.restore(work)
            previous = ckpt.read_json(work / ckpt.MANIFEST_FILE)
            for key in ("epochs_completed", "model_epoch"):
                if key in previous:
                    manifest[key] = previous[key]
        loop.run(work, manifest)

        # the final metrics are those of the saved model: the best by validation loss, or the last
        if cfg.save == "best" and loop.best_state is not None:
            loop.load_trainable_state(loop.best_state)
        else:
            loop.save_model(work, manifest)
        scored = [name for name in SPLITS if len(getattr(data, name))]
        steps = sum(math.ceil(len(getattr(data, name)) / cfg.batch_size) for name in scored)
        with Phase(self.reporter, "final evaluation", total=steps) as phase:
            metrics = {
                name: loop.evaluate(name, max_batches=None, progress=phase.advance)["metrics"]
                for name in scored
            }
        if ctx.enabled:
            difference = ctx.max_abs_difference([p for p in model.parameters() if p.requires_grad])
            self.reporter.event(
                "message",
                text=f"{ctx.world_size} ranks agree on the final weights "
                f"(max abs difference {difference:.3g})",
            )
        if ctx.is_main:
            ckpt.write_json(work / ckpt.METRICS_FILE, metrics)
            ckpt.write_history(work / ckpt.HISTORY_FILE, loop.history)
            self._plot(work, loop.history)
            manifest["complete"] = True
            manifest["epochs_completed"] = loop.epochs_completed
            ckpt.write_json(work / ckpt.MANIFEST_FILE, manifest)
            rundir.remove_resume_files(work)
            if work != out:  # the new run is whole: now it replaces the old one
                rundir.promote(work, out)
        ctx.barrier()
        self.reporter.event("done", output_dir=str(out), metrics=metrics)
        return Run(out, cfg, loop.history, metrics)

    # ------------------------------------------------------------------------------------------
    def _report_cuts(self, data: PreparedData, policy: Any) -> None:
        """Put the length the fitted policy keeps, and what each split loses to it, in the
        data report; warn when it cuts most training texts."""
        warning = data.report.record_cuts(
            policy.keep(),
            {name: getattr(data, name).token_counts for name in SPLITS},
            self.config.padding,
            policy.length if policy.fixed_width else None,
        )
        if warning:
            self.reporter.event("message", text=f"warning: {warning}")

    def _build_backbone(self, builder: Any) -> Any:
        """The backbone module, built (weights read) under a ``backbone`` phase."""
        cfg = self.config
        with Phase(self.reporter, "backbone"):
            return builder(cfg.weights, dropout=cfg.dropout, seed=cfg.seed)

    def _build_caches(
        self,
        model: SequenceClassifier,
        data: PreparedData,
        policy: Any,
        trainable: TrainableReport,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        ctx: DistContext,
    ) -> tuple[dict[str, TrunkCache | None], str]:
        """The frozen-trunk cache for every split, when it is exact and fits in memory."""
        cfg = self.config
        use, note = cache_decision(
            enabled=cfg.cache == "auto",
            first_trainable_layer=trainable.first_trainable_layer,
            dropout=cfg.dropout,
            pooling=cfg.pooling,
            padding=policy,
        )
        if use:
            texts = [ids for name in SPLITS for ids in getattr(data, name).token_ids]
            need = cache_bytes(texts, policy, model.backbone.config.n_embd)
            budget = int(available_memory_bytes() * DEFAULT_BUDGET_FRACTION)
            if need > budget:
                use = False
                note = (
                    f"frozen-trunk cache off: it needs {need / 2**30:.1f} GiB, more than the "
                    f"{budget / 2**30:.1f} GiB budget (half the free memory); training runs the "
                    "whole model instead"
                )
            else:
                note += f" ({need / 2**20:.0f} MiB)"
        if not use:
            self.reporter.event("message", text=note)
        caches: dict[str, TrunkCache | None] = dict.fromkeys(SPLITS)
        if use:
            amp = partial(autocast, device, amp_dtype)
            # 'last' reads the batch's last position, so its widths must stay exact
            reduced = amp_dtype is not None and cfg.pooling != "last"
            multiple = REDUCED_PRECISION_WIDTH_MULTIPLE if reduced else 1
            splits: list[tuple[str, Split]] = [(n, getattr(data, n)) for n in SPLITS]
            mine = sum(len(range(ctx.rank, len(split), ctx.world_size)) for _, split in splits)
            with Phase(self.reporter, "trunk cache", total=mine) as phase:
                for name, split in splits:
                    if len(split):
                        caches[name] = build_trunk_cache(
                            model,
                            split.token_ids,
                            policy,
                            trainable.first_trainable_layer,
                            device,
                            amp,
                            ctx=ctx,
                            width_multiple=multiple,
                            progress=phase.advance,
                        )
        return caches, note

    def _plot(self, out: Path, history: list[dict[str, Any]]) -> None:
        from .curves import plot_curves

        note = plot_curves(history, out / ckpt.CURVES_FILE)
        if note:
            self.reporter.event("message", text=note)


def _manifest(
    cfg: TrainConfig,
    model: SequenceClassifier,
    trainable: TrainableReport,
    data: PreparedData,
    policy: Any,
    tokenizer: Tokenizer,
) -> dict[str, Any]:
    """``llmclf.json``: everything Classifier.load needs, and how the run was made."""
    return {
        "schema_version": ckpt.SCHEMA_VERSION,
        "llmclf_version": __version__,
        "torch_version": torch.__version__,
        "complete": False,
        "epochs_completed": 0,
        "backbone": {
            "name": cfg.backbone,
            "class": type(model.backbone).__name__,
            "config": asdict(model.backbone.config),
        },
        "pooling": cfg.pooling,
        "head": {"type": "linear", "num_classes": len(data.labels)},
        "trainable": {
            "policy": trainable.policy,
            "trainable_parameters": trainable.trainable,
            "total_parameters": trainable.total,
        },
        "labels": list(data.labels.names),
        "tokenizer": {"name": tokenizer.name, "pad_id": tokenizer.pad_id},
        "padding": policy.state(),
        "max_length": cfg.max_length,
        "config": cfg.to_dict(),
        "data": {
            "fingerprint": data.fingerprint,
            "class_weights": data.class_weights,
            "report": data.report.to_dict(),
            "split": data.split_ids(),
        },
    }


def _new_run_dir(out: Path, *, overwrite: bool) -> Path:
    """Where a new run in ``out`` trains: ``out`` itself, or its staging dir under --overwrite.

    Refuses a directory that is neither empty nor an llmclf run (even with --overwrite), and a
    run without --overwrite.
    """
    rundir.check_new_output(out)
    if not rundir.is_run(out):
        return out
    if not overwrite:
        raise UsageError(_existing_run_message(out))
    return out / rundir.STAGING_DIR


def _resumable_dir(run_dir: Path) -> Path:
    """The directory whose ``resume/`` continues ``run_dir``'s run, or a one-line error.

    An interrupted ``--overwrite`` (in ``run_dir``'s staging dir) is the newer run, so it wins.
    """
    staging = run_dir / rundir.STAGING_DIR
    if finished := rundir.finished_staging(run_dir):  # killed while it was being moved in
        rundir.promote(finished, run_dir)
        raise UsageError(f"{run_dir} is a finished run; there is nothing to resume")
    for work in (staging, run_dir):
        if (work / ckpt.RESUME_DIR / ckpt.RESUME_STATE).is_file():
            return work
    if rundir.has_manifest(staging):
        config = TrainConfig.from_dict(ckpt.read_json(staging / ckpt.MANIFEST_FILE)["config"])
        raise CheckpointError(
            f"the --overwrite of {run_dir} stopped before its first epoch ended and {run_dir} "
            f"still holds the previous run; start it again with "
            f"{rundir.repeat_command(config, run_dir)}"
        )
    if not rundir.has_manifest(run_dir):
        raise UsageError(
            f"{run_dir} is not an llmclf run (no llmclf.json); --resume takes an interrupted "
            "run's directory"
        )
    manifest = ckpt.read_json(run_dir / ckpt.MANIFEST_FILE)
    if manifest.get("complete"):
        raise UsageError(f"{run_dir} is a finished run; there is nothing to resume")
    config = TrainConfig.from_dict(manifest["config"])
    raise CheckpointError(
        f"{run_dir} stopped before its first epoch ended, so there is nothing to resume; start "
        f"it again with {rundir.repeat_command(config, run_dir)}"
    )


def _existing_run_message(out: Path) -> str:
    """Why ``out`` cannot take a new run, and what to do instead."""
    if not rundir.has_manifest(out):
        return (
            f"{out} holds a run that was being moved in when llmclf stopped; finish that with "
            f"llmclf fit --resume {out}, choose another --output, or pass --overwrite"
        )
    if (out / rundir.STAGING_DIR / ckpt.RESUME_DIR / ckpt.RESUME_STATE).is_file():
        return (
            f"{out} holds a run and an interrupted --overwrite of it; continue that with "
            f"llmclf fit --resume {out}, choose another --output, or pass --overwrite to start over"
        )
    if ckpt.read_json(out / ckpt.MANIFEST_FILE).get("complete"):
        return (
            f"{out} already holds a finished run; choose another --output "
            "or pass --overwrite to replace it"
        )
    if (out / ckpt.RESUME_DIR / ckpt.RESUME_STATE).is_file():
        return (
            f"{out} holds an unfinished run; continue it with llmclf fit --resume {out}, "
            "choose another --output, or pass --overwrite to start over"
        )
    return (
        f"{out} holds a run interrupted before its first epoch ended; pass --overwrite to "
        "start over or choose another --output"
    )


def make_optimizer(
    params: list[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel where torch has one for these parameters.

    The fused step does the same arithmetic as the default one and is ~5x faster on CPU for the
    book's recipe (7M trainable parameters: 27 -> 5 ms a step).
    """
    fusable = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    if fusable:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # older torch: no fused kernel for this device
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
