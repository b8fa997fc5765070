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
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.loaders import batch_positions, batches
from ..data.tokenizer import get_tokenizer
from ..device import autocast, resolve_device, resolve_precision
from ..models.packing import ladder_width
from ..models.spec import backbone_entry
from ..models.trainable import parse_trainable
from ..options import SPLITS
from ..reporting import Reporter
from ..runs.rundir import RunDirectory
from .config import TrainConfig
from .loop import BatchForward, batch_logits, packed_ladder
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

CALIBRATION_BATCHES = 5  # timed at least, after one warm-up batch ...
CALIBRATION_SECONDS = 1.0  # ... and for at least this long (fast batches are noisy) ...
MAX_CALIBRATION_STEPS = 40  # ... but never more than this many (cycling over the batches)


@dataclass
class DryRunReport:
    """What `dry_run` found; ``estimate`` holds seconds per phase (estimates, not measurements)."""

    data: dict[str, Any]
    token_lengths: dict[str, dict[str, float]]  # split -> min / median / p95 / max / mean
    padding: dict[str, Any]  # policy, tokens kept, share of padded positions in epoch 1
    parameters: dict[str, Any]  # trainable, total, policy
    cache: dict[str, Any]  # applies, note, bytes, where
    calibration: dict[str, Any]  # device, batches timed, seconds per batch and per position
    estimate: dict[str, float]  # phase -> seconds (estimate)
    flops: dict[str, float] = field(default_factory=dict)  # phase -> FLOPs (approximate)
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
            "flops": self.flops,
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
            f"text; {self.padding['waste']:.1%} of the positions of epoch 1's batches are "
            + ("padding, which --pack does not run" if self.padding.get("packed") else "padding")
        )
        if self.data.get("examples"):  # a windowed long-text policy
            sizes, over = self.data["split_sizes"], self.data.get("windowed") or {}
            counts = ", ".join(
                f"{split} {sizes.get(split, 0):,} texts -> {n:,} windows "
                f"({over.get(split, 0):,} over the cap)"
                for split, n in self.data["examples"].items()
            )
            lines.append(f"long texts {self.data['long_texts']}: {counts}")
        lines.append(f"parameters: {p['trainable']:,} trainable of {p['total']:,} ({p['policy']})")
        size = f", {c['bytes'] / 2**20:.1f} MiB in {c['where']}" if c["applies"] else ""
        lines.append(f"frozen-trunk cache: {'yes' if c['applies'] else 'no'}{size} ({c['note']})")
        cal = self.calibration
        kind = "packed" if self.padding.get("packed") else "padded"
        lines.append(
            f"calibration on {cal['device']}: {cal['train_seconds_per_position'] * 1e6:.1f} µs "
            f"a {kind} position in training, {cal['eval_seconds_per_position'] * 1e6:.1f} µs in "
            f"evaluation ({cal['batches']} step(s) timed)"
        )
        lines.append("time estimate (an estimate, from the batches timed above):")
        for phase, seconds in self.estimate.items():
            work = f"  ({self.flops[phase] / 1e12:.2f} TFLOP)" if phase in self.flops else ""
            lines.append(f"  {phase:<12} ~{_duration(seconds)}{work}")
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
    tokenizer = get_tokenizer(entry.tokenizer, entry.tokenizer_dir())
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
    trainer._report_setup(data, trainable, cache["note"])  # the data report, as fit shows it
    # --pack packs token ids or cached token states, not a head-only run's pooled vectors
    packs = cfg.pack and not (cache["applies"] and cache["pooled"])
    calibration = _calibrate(cfg, model, trainable, (data, policy, packs), device, amp_dtype, cache)
    work = _work(cfg, data, policy, packs, packed_ladder(device, amp_dtype))
    return DryRunReport(
        data=data.report.to_dict(),
        token_lengths={
            n: _stats(getattr(data, n).token_counts) for n in SPLITS if len(getattr(data, n))
        },
        padding=_padding(cfg, data, policy, packs),
        parameters={
            "trainable": trainable.trainable,
            "total": trainable.total,
            "policy": trainable.policy,
        },
        cache=cache,
        calibration={"device": str(device), **calibration},
        estimate=_estimate(work, cache, calibration),
        flops=_flops(model, trainable, work, cache),
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


def run_positions(lengths: list[int], width: int, packs: bool, ladder: bool = False) -> int:
    """The positions a batch of texts of ``lengths``, padded to ``width``, runs: its padded
    positions, or with ``--pack`` its real tokens (`llmclf.models.packing`; with ``ladder``,
    its packed row's `ladder_width`)."""
    if packs:
        tokens = sum(max(min(n, width), 1) for n in lengths)
        return ladder_width(tokens) if ladder else tokens
    return len(lengths) * width


def _padding(cfg: TrainConfig, data: Any, policy: Any, packs: bool) -> dict[str, Any]:
    """The share of padded positions in epoch 1's training batches, as the padding policy makes
    them (``packs``: ``--pack`` then runs none of them)."""
    real = total = 0
    for _, batch in _epoch_one(cfg, data, policy):
        lengths = [int(n) for n in batch.lengths.tolist()]
        real += sum(lengths)
        total += run_positions(lengths, batch.input_ids.shape[1], packs=False)
    waste = 1 - real / total
    return {"policy": cfg.padding, "packed": packs, "tokens_kept": policy.keep(), "waste": waste}


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
    prepared: tuple[Any, Any, bool],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    cache: dict[str, Any],
) -> dict[str, Any]:
    """Seconds per position (padded, or packed where the run packs: ``prepared`` is the data,
    the padding policy and ``packs``, see `run_positions`) of a training and of an
    evaluation batch, and per token of the cache build, timed on epoch 1's first batches (see
    `_timed`)."""
    data, policy, packs = prepared
    ladder = packed_ladder(device, amp_dtype)
    picked = _first_batches(cfg, data, policy)
    order = [p for positions in picked for p in positions]
    texts = [data.train.token_ids[p] for p in order]
    labels = [data.train.example_labels[p] for p in order]
    amp = partial(autocast, device, amp_dtype)
    trunk = _calibration_cache(model, policy, cache, texts, picked, device, amp, amp_dtype)
    forward = BatchForward(model)
    params = list(trainable.parameters.values())
    optimizer = make_optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    chunks, start = [], 0
    for positions in picked:  # indices into ``texts``
        chunks.append(list(range(start, start + len(positions))))
        start += len(positions)

    def loss_of(positions: list[int]) -> torch.Tensor:
        batch = policy.collate([texts[i] for i in positions], [labels[i] for i in positions])
        with amp():  # as training runs it: cached, packed (``--pack``) or padded
            cached = trunk["cache"]
            logits = batch_logits(forward, positions, batch, cached, device, packs, ladder)
        return F.cross_entropy(logits.float(), batch.labels.to(device))

    def train_step(positions: list[int]) -> None:
        loss_of(positions).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def size(positions: list[int]) -> int:  # the positions the batch runs, packed or padded
        lengths = [min(len(texts[i]), policy.keep()) for i in positions]
        return run_positions(lengths, policy.width(lengths), packs, ladder)

    model.train()
    train, timed = _timed(train_step, chunks, size, device)
    model.eval()
    with torch.no_grad():
        evaluation, _ = _timed(loss_of, chunks, size, device)
    return {
        "batches": timed,
        "train_seconds_per_position": train,
        "eval_seconds_per_position": evaluation,
        "cache_seconds_per_token": trunk["seconds_per_token"],
    }


def _first_batches(cfg: TrainConfig, data: Any, policy: Any) -> list[list[int]]:
    """The positions of epoch 1's first batches, drawn exactly as training draws them."""
    drawn = _epoch_one(cfg, data, policy)
    return [list(positions) for positions, _ in islice(drawn, CALIBRATION_BATCHES + 1)]


def _epoch_one(cfg: TrainConfig, data: Any, policy: Any) -> Any:
    """Epoch 1's training batches, ``(positions, batch)``, drawn exactly as training draws them."""
    return batches(
        data.train.token_ids,
        data.train.example_labels,
        policy,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        bucket=cfg.bucket,
    )


def _calibration_cache(
    model: Any,
    policy: Any,
    cache: dict[str, Any],
    texts: list[list[int]],
    picked: list[list[int]],
    device: torch.device,
    amp: Any,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """The frozen-trunk cache of the calibration texts (when the run builds one), stored as
    the run would store it, and the seconds it took per kept token (after a warm-up on the
    first batch's texts)."""
    if not cache["applies"]:
        return {"cache": None, "seconds_per_token": 0.0}
    layout = CacheLayout(dtype=storage_dtype(amp_dtype, cache["pooled"]), pooled=cache["pooled"])
    build = partial(
        build_trunk_cache, model, policy=policy, end_layer=cache["end_layer"], layout=layout
    )
    build(texts[: len(picked[0])], device=device, autocast_ctx=amp)  # warm-up
    started = time.perf_counter()
    trunk = build(texts, device=device, autocast_ctx=amp)
    tokens = sum(min(len(ids), policy.keep()) for ids in texts)
    return {"cache": trunk, "seconds_per_token": (time.perf_counter() - started) / max(tokens, 1)}


def _timed(
    step: Any, chunks: list[list[int]], size: Any, device: torch.device
) -> tuple[float, int]:
    """Median seconds per padded position of ``step`` over ``chunks`` after the first (a
    warm-up), cycling over them for at least `CALIBRATION_BATCHES` steps and
    `CALIBRATION_SECONDS`, so that fast batches are timed often enough; the median, so one
    batch delayed by another process does not set the estimate. Also returns the steps timed."""
    rates, spent = [], 0.0
    for i, positions in enumerate(islice(cycle(chunks), MAX_CALIBRATION_STEPS + 1)):
        started = time.perf_counter()
        step(positions)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        if i == 0 and len(chunks) > 1:
            continue
        rates.append(seconds / size(positions))
        spent += seconds
        if len(rates) >= CALIBRATION_BATCHES and spent >= CALIBRATION_SECONDS:
            break
    return statistics.median(rates), len(rates)


@dataclass
class _Work:
    """Padded positions each phase runs (training: per epoch), and tokens the cache holds."""

    epochs: int
    train: int  # one epoch's training batches
    evaluation: int  # every periodic, end-of-epoch and final evaluation of the run
    cache_tokens: int
    mean_width: float  # of a training batch


def _work(cfg: TrainConfig, data: Any, policy: Any, packs: bool, ladder: bool) -> _Work:
    """Count the positions of the batches the run makes, with the loader's own grouping (and
    packed where training packs: see `run_positions`)."""
    keep = policy.keep()

    def positions(name: str, *, shuffle: bool, limit: int | None = None) -> tuple[int, int]:
        counts = [len(ids) for ids in getattr(data, name).token_ids]  # per example (window)
        groups = batch_positions(
            counts, cfg.batch_size, shuffle=shuffle, seed=cfg.seed, bucket=cfg.bucket and shuffle
        )[:limit]
        total = 0
        for group in groups:
            lengths = [min(counts[i], keep) for i in group]
            total += run_positions(lengths, policy.width(lengths), packs, ladder)
        return total, len(groups)

    train, steps = positions("train", shuffle=True)
    evaluations = math.ceil(steps / cfg.grad_accum) // cfg.eval_every  # periodic, per epoch
    periodic = (
        positions("train", shuffle=False, limit=cfg.eval_batches)[0]
        + positions("validation", shuffle=False, limit=cfg.eval_batches)[0]
    )
    epoch_end = (
        positions("train", shuffle=False, limit=cfg.eval_batches)[0]
        + positions("validation", shuffle=False)[0]
    )
    final = sum(positions(name, shuffle=False)[0] for name in SPLITS)
    return _Work(
        epochs=cfg.epochs,
        train=train,
        evaluation=cfg.epochs * (evaluations * periodic + epoch_end) + final,
        cache_tokens=sum(
            min(len(ids), keep) for name in SPLITS for ids in getattr(data, name).token_ids
        ),
        mean_width=train / max(data.train.num_examples, 1),
    )


def _estimate(work: _Work, cache: dict[str, Any], cal: dict[str, Any]) -> dict[str, float]:
    """Seconds per phase: the padded positions each phase runs times the timed cost of one."""
    estimate = {}
    if cache["applies"]:
        estimate["trunk cache"] = work.cache_tokens * cal["cache_seconds_per_token"]
    estimate["training"] = work.epochs * work.train * cal["train_seconds_per_position"]
    estimate["evaluation"] = work.evaluation * cal["eval_seconds_per_position"]
    return {k: round(v, 3) for k, v in estimate.items()}


def _flops(model: Any, trainable: Any, work: _Work, cache: dict[str, Any]) -> dict[str, float]:
    """Approximate FLOPs per phase: 2 x a block's weights per position and block, plus
    attention's 4 x width x (mean batch width); a backward pass costs two forwards for the
    blocks from the first trainable one up. An upper bound where the last block runs at the
    pooled position only."""
    backbone = model.backbone
    n_layer, c = backbone.config.n_layer, backbone.config.n_embd
    block = sum(p.numel() for p in backbone.h[0].parameters())
    per_layer = 2 * block + 4 * c * work.mean_width
    bottom = cache["end_layer"] if cache["applies"] else 0
    first = max(trainable.first_trainable_layer, bottom)
    forward = (n_layer - bottom) * per_layer
    out = {}
    if cache["applies"]:
        out["trunk cache"] = work.cache_tokens * bottom * per_layer
    out["training"] = work.epochs * work.train * (forward + 2 * (n_layer - first) * per_layer)
    out["evaluation"] = work.evaluation * forward
    return {k: float(v) for k, v in out.items()}
