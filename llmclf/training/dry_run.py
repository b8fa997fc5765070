"""``llmclf fit --dry-run``: what a run will hold and cost, without training it.

`dry_run` goes through the Trainer's own first steps (the same data preparation, backbone and
model, the same frozen-trunk cache decision), trains nothing and writes nothing, then times a
few real batches on this device (after one warm-up batch) and scales them by the number of
batches each phase runs. The times are estimates: they assume every batch costs what the
timed ones did (bucketing and long texts change that), and early stopping can end training
sooner.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.loaders import batches
from ..data.tokenizer import get_tokenizer
from ..models.spec import backbone_entry
from ..models.trainable import parse_trainable
from ..options import SPLITS
from .config import TrainConfig
from .device import autocast, resolve_device, resolve_precision
from .loop import BatchForward
from .reporting import Reporter
from .rundir import RunDirectory
from .trainer import Trainer, check_names, make_optimizer
from .trunk_cache import (
    DEFAULT_BUDGET_FRACTION,
    CacheLayout,
    available_memory_bytes,
    build_trunk_cache,
    cache_bytes,
    cache_decision,
    gib,
    plan_storage,
    pooled_cache,
    storage_dtype,
)

CALIBRATION_BATCHES = 5  # timed, after one warm-up batch


@dataclass
class DryRunReport:
    """What `dry_run` found; ``estimate`` holds seconds per phase (estimates, not measurements)."""

    data: dict[str, Any]
    token_lengths: dict[str, dict[str, float]]  # split -> min / median / p95 / max / mean
    padding: dict[str, Any]  # policy, tokens kept, share of padded positions in epoch 1
    parameters: dict[str, Any]  # trainable, total, policy
    cache: dict[str, Any]  # applies, note, bytes, where
    calibration: dict[str, Any]  # device, batches timed, seconds per batch
    estimate: dict[str, float]  # phase -> seconds (estimate)
    measured: dict[str, float] = field(default_factory=dict)  # phases the dry run really ran

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (``fit --dry-run --json``)."""
        return {
            "data": self.data,
            "token_lengths": self.token_lengths,
            "padding": self.padding,
            "parameters": self.parameters,
            "cache": self.cache,
            "calibration": self.calibration,
            "estimate_seconds": self.estimate,
            "measured_seconds": self.measured,
        }

    def render(self) -> str:
        """The text ``fit --dry-run`` prints."""
        p, c = self.parameters, self.cache
        lines = ["token lengths (before any cut):"]
        for split, s in self.token_lengths.items():
            lines.append(
                f"  {split:<10} min {s['min']:.0f}  median {s['median']:.0f}  p95 {s['p95']:.0f}"
                f"  max {s['max']:.0f}  mean {s['mean']:.1f}"
            )
        lines.append(
            f"padding {self.padding['policy']}: keeps {self.padding['tokens_kept']} tokens a "
            f"text; {self.padding['waste']:.1%} of the positions of epoch 1's batches are padding"
        )
        lines.append(f"parameters: {p['trainable']:,} trainable of {p['total']:,} ({p['policy']})")
        size = f", {c['bytes'] / 2**20:.1f} MiB in {c['where']}" if c["applies"] else ""
        lines.append(f"frozen-trunk cache: {'yes' if c['applies'] else 'no'}{size} ({c['note']})")
        cal = self.calibration
        lines.append(
            f"calibration on {cal['device']}: {cal['train_seconds_per_batch'] * 1000:.1f} ms a "
            f"training batch, {cal['eval_seconds_per_batch'] * 1000:.1f} ms an evaluation batch "
            f"({cal['batches']} batch(es) timed)"
        )
        lines.append("time estimate (an estimate, from the batches timed above):")
        for phase, seconds in self.estimate.items():
            lines.append(f"  {phase:<12} ~{_duration(seconds)}")
        lines.append(f"  {'total':<12} ~{_duration(sum(self.estimate.values()))}")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def dry_run(config: TrainConfig, *, reporter: Reporter | None = None) -> DryRunReport:
    """Prepare the data and the model of ``config``, train nothing, and estimate the cost."""
    trainer = Trainer(config, reporter=reporter)
    cfg = trainer.config
    check_names(cfg)
    device = resolve_device(cfg.device)
    amp_dtype = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    entry = backbone_entry(cfg.backbone)
    tokenizer = get_tokenizer(entry.tokenizer)
    started = time.perf_counter()
    backbone = trainer._build_backbone(entry)  # the Trainer's own steps, so nothing differs
    measured = {"backbone": time.perf_counter() - started}
    context_length = entry.context_length or backbone.config.context_length
    started = time.perf_counter()
    unused = RunDirectory(Path("."), writes=False)  # read only when resuming
    data, policy = trainer._prepare_data(tokenizer, context_length, unused)
    measured["data"] = time.perf_counter() - started
    model, _, trainable = trainer._build_model(
        entry, backbone, parse_trainable(cfg.trainable), len(data.labels), device
    )
    spill_dir = Path(cfg.cache_dir) if cfg.cache_dir else trainer.output_dir
    cache = _cache(cfg, model, (data, policy), trainable, (amp_dtype, spill_dir))
    calibration = _calibrate(cfg, model, trainable, data, policy, device, amp_dtype, cache)
    return DryRunReport(
        data=data.report.to_dict(),
        token_lengths={
            n: _stats(getattr(data, n).token_counts) for n in SPLITS if len(getattr(data, n))
        },
        padding=_padding(cfg, data, policy),
        parameters={
            "trainable": trainable.trainable,
            "total": trainable.total,
            "policy": trainable.policy,
        },
        cache=cache,
        calibration={"device": str(device), **calibration},
        estimate=_estimate(cfg, data, cache, calibration),
        measured={k: round(v, 3) for k, v in measured.items()},
    )


def _stats(counts: list[int]) -> dict[str, float]:
    ordered = sorted(counts)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def _padding(cfg: TrainConfig, data: Any, policy: Any) -> dict[str, Any]:
    """The share of padded positions in epoch 1's training batches, as training makes them."""
    real = total = 0
    for _, batch in batches(
        data.train.token_ids,
        data.train.labels,
        policy,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        bucket=cfg.bucket,
    ):
        real += int(batch.lengths.sum())
        total += batch.input_ids.numel()
    return {"policy": cfg.padding, "tokens_kept": policy.keep(), "waste": 1 - real / total}


def _cache(
    cfg: TrainConfig,
    model: Any,
    prepared: tuple[Any, Any],
    trainable: Any,
    storage: tuple[torch.dtype | None, Path],
) -> dict[str, Any]:
    """Whether fit would build the frozen-trunk cache, its size and where (the Trainer's rule)."""
    (data, policy), (amp_dtype, spill_dir) = prepared, storage
    use, note = cache_decision(
        enabled=cfg.cache == "auto",
        first_trainable_layer=trainable.first_trainable_layer,
        dropout=cfg.dropout,
        pooling=cfg.pooling,
        padding=policy,
    )
    pooled = pooled_cache(trainable.trainable_names)
    itemsize = storage_dtype(amp_dtype, pooled).itemsize
    width = model.backbone.config.n_embd
    needs = {
        n: cache_bytes(getattr(data, n).token_ids, policy, width, itemsize=itemsize, pooled=pooled)
        for n in SPLITS
    }
    where = "memory"
    if use:
        budget = int(available_memory_bytes() * DEFAULT_BUDGET_FRACTION)
        plan, refusal = plan_storage(needs, budget, spill_dir)
        spilled = [n for n, d in (plan or {}).items() if d is not None]
        if plan is None:
            use, note = False, refusal
        elif spilled:
            where = f"memory and a memory-mapped file in {spill_dir} ({'/'.join(spilled)})"
            note += f"; over the {gib(budget)} memory budget"
    return {
        "applies": use,
        "note": note,
        "bytes": sum(needs.values()) if use else 0,
        "where": where,
        "pooled": pooled,
        "end_layer": trainable.first_trainable_layer if use else None,
    }


def _calibrate(
    cfg: TrainConfig,
    model: Any,
    trainable: Any,
    data: Any,
    policy: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    cache: dict[str, Any],
) -> dict[str, Any]:
    """Seconds per training batch, per evaluation batch and per cached text, timed on epoch 1's
    first batches (one warm-up batch, then `CALIBRATION_BATCHES`)."""
    drawn = batches(  # epoch 1's first batches, drawn exactly as training draws them
        data.train.token_ids,
        data.train.labels,
        policy,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        bucket=cfg.bucket,
    )
    picked = [list(positions) for positions, _ in islice(drawn, CALIBRATION_BATCHES + 1)]
    order = [p for positions in picked for p in positions]
    texts = [data.train.token_ids[p] for p in order]
    labels = [data.train.labels[p] for p in order]
    n, size = len(order), len(picked[0])
    amp = partial(autocast, device, amp_dtype)
    trunk, per_text = None, 0.0
    if cache["applies"]:
        layout = CacheLayout(
            dtype=storage_dtype(amp_dtype, cache["pooled"]), pooled=cache["pooled"]
        )
        build = partial(
            build_trunk_cache, model, policy=policy, end_layer=cache["end_layer"], layout=layout
        )
        build(texts[:size], device=device, autocast_ctx=amp)  # warm-up
        started = time.perf_counter()
        trunk = build(texts, device=device, autocast_ctx=amp)
        per_text = (time.perf_counter() - started) / n
    forward = BatchForward(model)
    params = list(trainable.parameters.values())
    optimizer = make_optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    chunks, start = [], 0
    for positions in picked:  # indices into ``texts``
        chunks.append(list(range(start, start + len(positions))))
        start += len(positions)

    def loss_of(positions: list[int]) -> torch.Tensor:
        batch = policy.collate([texts[i] for i in positions], [labels[i] for i in positions])
        lengths = batch.lengths.to(device)
        with amp():
            if trunk is None:
                logits = forward(batch.input_ids.to(device), lengths)
            else:
                hidden = trunk.assemble(positions, batch, device)
                logits = forward(hidden, lengths, trunk.end_layer)
        return F.cross_entropy(logits.float(), batch.labels.to(device))

    def train_step(positions: list[int]) -> None:
        loss_of(positions).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    train = _timed(train_step, chunks, device)
    model.eval()
    with torch.no_grad():
        evaluation = _timed(loss_of, chunks, device)
    return {
        "batches": max(1, len(chunks) - 1),
        "train_seconds_per_batch": train,
        "eval_seconds_per_batch": evaluation,
        "cache_seconds_per_text": per_text,
    }


def _timed(step: Any, chunks: list[list[int]], device: torch.device) -> float:
    """Median seconds of ``step`` over ``chunks`` after the first (a warm-up), or of the only
    one; the median, so one batch delayed by another process does not set the estimate."""
    times = []
    for positions in chunks:
        started = time.perf_counter()
        step(positions)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:] or times)


def _estimate(
    cfg: TrainConfig, data: Any, cache: dict[str, Any], cal: dict[str, Any]
) -> dict[str, float]:
    """Seconds per phase: the batches each phase runs times the timed cost of one."""

    def count(name: str, limit: int | None = None) -> int:
        full = math.ceil(len(getattr(data, name)) / cfg.batch_size)
        return full if limit is None else min(limit, full)

    steps = count("train")
    evaluations = math.ceil(steps / cfg.grad_accum) // cfg.eval_every  # periodic, per epoch
    per_epoch = evaluations * (
        count("train", cfg.eval_batches) + count("validation", cfg.eval_batches)
    )
    per_epoch += count("train", cfg.eval_batches) + count("validation")
    final = sum(count(name) for name in SPLITS)
    texts = sum(len(getattr(data, name)) for name in SPLITS)
    estimate = {}
    if cache["applies"]:
        estimate["trunk cache"] = texts * cal["cache_seconds_per_text"]
    estimate["training"] = cfg.epochs * steps * cal["train_seconds_per_batch"]
    estimate["evaluation"] = (cfg.epochs * per_epoch + final) * cal["eval_seconds_per_batch"]
    return {k: round(v, 3) for k, v in estimate.items()}
