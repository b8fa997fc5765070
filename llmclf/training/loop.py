"""The training loop: epochs, optimizer steps, periodic evaluation, checkpoints, resume state.

Under DistributedDataParallel every rank walks the same seeded global batches and takes rows
``rank::world_size`` of each, so a run on N processes sees exactly the batches (and, up to the
order of floating-point sums, the gradients) of a single-process run with the same global batch.
A batch that does not split evenly (an epoch's last) is weighted by examples, not by ranks: see
`rank_loss`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.loaders import batches
from ..data.padding import Batch
from ..data.pipeline import PreparedData, Split
from ..device import autocast
from ..errors import CheckpointError
from ..memory import RELEASE_EVERY, release_freed_memory
from ..models.classifier import SequenceClassifier
from ..models.packing import Packed, ladder_width, pack
from ..reporting import Reporter
from ..runs import checkpoint as ckpt
from ..runs.rundir import RunDirectory
from ..scoring import local_rows, score
from .config import TrainConfig
from .distributed import DistContext
from .trunk_cache import TrunkCache


class BatchForward(nn.Module):
    """Logits for a batch of token ids, of cached hidden states after ``start_layer`` blocks,
    or of cached pooled vectors (B, C).

    One module for both paths, so DistributedDataParallel sees every forward call.
    """

    def __init__(self, model: SequenceClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        x: torch.Tensor | Packed,
        lengths: torch.Tensor | None,
        start_layer: int = 0,
        packed: Packed | None = None,
    ) -> torch.Tensor:
        if isinstance(x, Packed):
            return self.model.forward_packed(x)
        if packed is not None:  # cached states (1, W, C) laid out as ``packed``
            return self.model.forward_packed(packed, x, start_layer)
        if x.dim() == 2 and x.is_floating_point():  # (B, C) pooled, from a head-only cache
            return self.model.head(x)
        if start_layer == 0:
            return self.model(x, lengths)
        return self.model.forward_from(x, lengths, start_layer)


def batch_logits(
    forward: nn.Module,
    positions: list[int],
    batch: Batch,
    cache: TrunkCache | None,
    device: torch.device,
    packs: bool,
    ladder: bool = False,
) -> torch.Tensor:
    """The logits of one collated batch through ``forward`` (a `BatchForward`): from the
    frozen-trunk ``cache`` when there is one (``positions`` are the batch's texts in its
    split); with ``packs`` (``--pack``), side by side in one row of their real tokens
    (`llmclf.models.packing`), unless the cache holds pooled vectors; with ``ladder``
    (reduced-precision autocast), a row `ladder_width` wide."""
    if packs and (cache is None or not cache.pooled):
        width = ladder_width(int(batch.lengths.sum())) if ladder else None
        packed = pack(batch.input_ids, batch.lengths, width)
        if cache is None:
            return forward(packed.to(device), None)
        hidden = cache.assemble_packed(positions, packed, device)
        return forward(hidden, None, cache.end_layer, packed.to(device))
    lengths = batch.lengths.to(device)
    if cache is None:
        return forward(batch.input_ids.to(device), lengths)
    return forward(cache.assemble(positions, batch, device), lengths, cache.end_layer)


def packed_ladder(device: torch.device, amp_dtype: torch.dtype | None) -> bool:
    """Whether packed rows take `ladder_width` widths: under reduced-precision autocast on a CPU,
    whose kernels are compiled (and kept) once per input shape."""
    return amp_dtype is not None and device.type == "cpu"


def shard(positions: list[int], batch: Batch, ctx: DistContext) -> tuple[list[int], Batch]:
    """This rank's rows of a global batch."""
    return local_rows(positions, batch, ctx.rank, ctx.world_size)


def rank_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    global_labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    world_size: int,
) -> tuple[torch.Tensor, float]:
    """This rank's loss to back-propagate, and its own mean loss (to report).

    Each rank back-propagates the sum of its (class-weighted) per-example losses over the
    weight of the whole global batch, times ``world_size``. DDP averages the ranks' gradients,
    so the result is the single-process gradient of the global batch's mean loss however
    unevenly the batch splits: a last batch of 5 split 3/2 counts as 5 examples, not 2 halves.
    """
    losses = F.cross_entropy(
        logits.float(), labels.to(logits.device), weight=class_weights, reduction="none"
    )
    total = losses.sum()
    local = batch_weight(labels, class_weights)
    return total * (world_size / batch_weight(global_labels, class_weights)), (
        total.item() / local if local else math.nan
    )


def batch_weight(labels: torch.Tensor, class_weights: torch.Tensor | None) -> float:
    """What a batch weighs in its mean loss: its example count, or with class weights the sum
    of its examples' weights (the denominator of cross-entropy's ``mean``)."""
    if class_weights is None:
        return float(len(labels))
    return float(class_weights.cpu()[labels].sum())


@dataclass(frozen=True)
class LoopModel:
    """What trains: the model, the module the loop calls (``BatchForward``, wrapped in DDP when
    distributed), its optimizer, and the parameters that train, by name."""

    model: SequenceClassifier
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    trainable: dict[str, nn.Parameter]


@dataclass(frozen=True)
class LoopData:
    """What it trains on: the prepared splits, the fitted padding policy, the frozen-trunk
    cache of each split (None: run the whole model), and the class weights of the loss."""

    data: PreparedData
    policy: Any
    caches: dict[str, TrunkCache | None]
    class_weights: torch.Tensor | None = None


@dataclass(frozen=True)
class LoopRuntime:
    """Where it runs and reports: device, autocast dtype, DDP context, reporter, run dir."""

    device: torch.device
    amp_dtype: torch.dtype | None
    ctx: DistContext
    reporter: Reporter
    run_dir: RunDirectory


class TrainingLoop:
    """Holds the loop's state (epoch, step, history, best loss) and runs it."""

    def __init__(
        self, cfg: TrainConfig, model: LoopModel, data: LoopData, runtime: LoopRuntime
    ) -> None:
        self.cfg = cfg
        self.model, self.forward, self.optimizer = model.model, model.forward, model.optimizer
        self.trainable = model.trainable  # the parameters that train, by name
        self.data, self.policy, self.caches = data.data, data.policy, data.caches
        self.class_weights = data.class_weights
        self.device, self.reporter, self.ctx = runtime.device, runtime.reporter, runtime.ctx
        self.run_dir = runtime.run_dir
        self.amp = partial(autocast, runtime.device, runtime.amp_dtype)
        self.ladder = packed_ladder(runtime.device, runtime.amp_dtype)
        # fp16 autocast needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(
            runtime.device.type, enabled=runtime.amp_dtype == torch.float16
        )
        self.history: list[dict[str, Any]] = []
        self.epochs_completed = 0
        self.step = 0
        self.examples_seen = 0
        self.batches_run = 0  # training and evaluation batches, for `release_freed_memory`
        self.best_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    # ----- batches and losses -----------------------------------------------------------------
    def _batches(self, name: str, *, shuffle: bool, epoch: int = 0):
        """``(positions, batch, global_labels)``: this rank's rows of each global batch, and the
        labels of the whole global batch (every rank knows them before sharding)."""
        split: Split = getattr(self.data, name)
        for positions, batch in batches(
            split.token_ids,
            split.example_labels,  # a windowed split: every window has its text's label
            self.policy,
            self.cfg.batch_size,
            shuffle=shuffle,
            seed=self.cfg.seed,
            epoch=epoch,
            bucket=self.cfg.bucket and shuffle,
        ):
            yield (*shard(list(positions), batch, self.ctx), batch.labels)

    def _logits(self, name: str, positions: list[int], batch: Batch) -> torch.Tensor:
        self.batches_run += 1
        if self.batches_run % RELEASE_EVERY == 0:  # the last batches' buffers, freed by now
            release_freed_memory()
        with self.amp():
            cache = self.caches[name]
            return batch_logits(
                self.forward, positions, batch, cache, self.device, self.cfg.pack, self.ladder
            )

    def evaluate(
        self,
        name: str,
        max_batches: int | None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Loss and metrics on a split (its first ``max_batches`` batches, in order).

        Every rank scores its rows; the results are gathered so all ranks agree.
        ``progress``, when given, is called with 1 after each (global) batch.
        """
        split: Split = getattr(self.data, name)
        self.model.eval()
        try:
            metrics = score(
                partial(self._logits, name),
                split.token_ids,
                split.example_labels,
                self.policy,
                owners=split.owners,  # a windowed split is scored per text
                label_names=self.data.labels.names,
                batch_size=self.cfg.batch_size,
                max_batches=max_batches,
                group=self.ctx if self.ctx.enabled else None,
                progress=None if progress is None else lambda _: progress(1),
            )
        finally:
            self.model.train()
        if not metrics["n"]:
            return {"loss": math.nan, "accuracy": math.nan, "metrics": {}}
        return {"loss": metrics["loss"], "accuracy": metrics["accuracy"], "metrics": metrics}

    # ----- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Train from the epoch after the last completed one to ``cfg.epochs`` (or early
        stopping), saving the model, progress and resume state after each epoch."""
        cfg = self.cfg
        self.model.train()
        steps = math.ceil(self.data.train.num_examples / cfg.batch_size)
        for epoch in range(self.epochs_completed, cfg.epochs):
            self.reporter.event("epoch_start", epoch=epoch + 1, epochs=cfg.epochs, steps=steps)
            started = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            running = []
            for i, (positions, batch, global_labels) in enumerate(
                self._batches("train", shuffle=True, epoch=epoch)
            ):
                logits = self._logits("train", positions, batch)
                loss, shown = rank_loss(
                    logits, batch.labels, global_labels, self.class_weights, self.ctx.world_size
                )
                self.scaler.scale(loss / cfg.grad_accum).backward()
                running.append(shown)
                self.examples_seen += len(global_labels)
                if (i + 1) % cfg.grad_accum == 0 or i + 1 == steps:
                    self._optimizer_step()
                    if self.step % cfg.eval_every == 0:
                        self._record(epoch, periodic=True)
                self.reporter.event("step", epoch=epoch + 1, step=i + 1, loss=shown)
            row = self._record(epoch, periodic=False)
            self.epochs_completed = epoch + 1
            improved = not row["val_loss"] >= self.best_loss  # NaN (no validation) counts
            if improved:
                self.best_loss = row["val_loss"]
                self.bad_epochs = 0
                self.best_state = self.trainable_state()
            else:
                self.bad_epochs += 1
            saved = cfg.save == "last" or improved
            if saved:
                self.save_model()
            self.run_dir.record_progress(self.epochs_completed)
            self._save_resume(self.run_dir)
            self.reporter.event(
                "epoch_end",
                epoch=epoch + 1,
                train_loss=float(np.mean(running)) if running else math.nan,
                val_loss=row["val_loss"],
                val_accuracy=row["val_accuracy"],
                saved=saved,
                seconds=round(time.perf_counter() - started, 3),
            )
            if cfg.early_stopping and self.bad_epochs >= cfg.early_stopping:
                self.reporter.event(
                    "message",
                    text=f"early stopping: validation loss has not improved for "
                    f"{self.bad_epochs} epoch(s)",
                )
                break

    def _optimizer_step(self) -> None:
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _record(self, epoch: int, *, periodic: bool) -> dict[str, Any]:
        train = self.evaluate("train", self.cfg.eval_batches)
        val = self.evaluate("validation", self.cfg.eval_batches if periodic else None)
        row = {
            "epoch": epoch + 1,
            "step": self.step,
            "examples_seen": self.examples_seen,
            "kind": "step" if periodic else "epoch",
            "train_loss": train["loss"],
            "val_loss": val["loss"],
            "train_accuracy": train["accuracy"],
            "val_accuracy": val["accuracy"],
        }
        self.history.append(row)
        self.reporter.event("evaluation", row=row)
        return row

    # ----- persistence (the run directory writes on rank 0 only) ------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.trainable.items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise CheckpointError(
                f"saved state does not match the model: {result.unexpected_keys[:5]}"
            )

    def save_model(self) -> None:
        """Write the weights, then the manifest that describes them (each atomically)."""
        self.run_dir.save_model(self.model.state_dict(), self.epochs_completed)

    def _save_resume(self, run_dir: RunDirectory) -> None:
        """Write what continuing takes (`RunDirectory.save_resume`), then the history."""
        if not run_dir.writes:
            return
        tensors, rest = ckpt.optimizer_to_tensors(self.optimizer.state_dict())
        tensors.update(rng_state())
        state = {
            "config": self.cfg.to_dict(),
            "optimizer": rest,
            "epochs_completed": self.epochs_completed,
            "step": self.step,
            "examples_seen": self.examples_seen,
            "best_loss": self.best_loss,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
        }
        weights = {"weights": self.trainable_state(), "optimizer": tensors}
        run_dir.save_resume(self.epochs_completed, weights, state)
        run_dir.write_history(self.history)

    def restore(self) -> None:
        """Continue from the state the last completed epoch left in the run's ``resume/``."""
        if self.run_dir.model_file.is_file():  # the best model so far
            saved = ckpt.load_tensors(self.run_dir.model_file)
            self.best_state = {n: t for n, t in saved.items() if n in self.trainable}
        state, tensors = self.run_dir.load_resume()
        self.load_trainable_state(tensors["weights"])
        optimizer = tensors["optimizer"]
        set_rng_state(optimizer)
        self.optimizer.load_state_dict(ckpt.optimizer_from_tensors(optimizer, state["optimizer"]))
        self.epochs_completed = state["epochs_completed"]
        self.step = state["step"]
        self.examples_seen = state["examples_seen"]
        self.best_loss = state["best_loss"]
        self.bad_epochs = state["bad_epochs"]
        self.history = state["history"]
        self.reporter.event(
            "message", text=f"resuming after epoch {self.epochs_completed} of {self.cfg.epochs}"
        )


def rng_state() -> dict[str, torch.Tensor]:
    """Every generator training draws from: ``rng.cpu``, ``rng.cuda.N`` a device, ``rng.mps``."""
    state = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda in enumerate(torch.cuda.get_rng_state_all()):
            state[f"rng.cuda.{index}"] = cuda
    if _mps_available():
        state["rng.mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    """Restore (and remove from ``tensors``) what `rng_state` saved.

    A generator saved by an older llmclf (CPU only) or on a device this machine lacks is left
    as seeded.
    """
    torch.set_rng_state(tensors.pop("rng.cpu"))
    cuda = {
        int(k.rsplit(".", 1)[1]): tensors.pop(k) for k in list(tensors) if k.startswith("rng.cuda.")
    }
    if cuda and torch.cuda.is_available():
        for index in sorted(cuda)[: torch.cuda.device_count()]:
            torch.cuda.set_rng_state(cuda[index], index)
    mps = tensors.pop("rng.mps", None)
    if mps is not None and _mps_available():
        torch.mps.set_rng_state(mps)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
