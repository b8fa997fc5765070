"""Score a split with a model: the one place a loss and metrics are computed from logits.

`score` is used by the end-of-training metrics and periodic evaluations (`TrainingLoop`), by
``llmclf evaluate`` (`llmclf.evaluation.evaluate_run`) and by the benchmarks. It walks a split's
token ids in order, in batches the library builds (`llmclf.data.loaders.batches`), asks a
"logits for a batch" callable for each batch's logits, and computes the mean cross-entropy and
the classification metrics. The callable is the seam: `model_logits` runs a whole model; the
training loop passes one that reads the frozen-trunk cache and goes through DDP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .data.loaders import batches
from .data.long_texts import aggregate_examples
from .data.padding import Batch, PaddingPolicy
from .device import autocast
from .metrics import classification_metrics

LogitsFn = Callable[[list[int], Batch], torch.Tensor]
"""``(positions, batch) -> logits (B, K)``: positions are the batch's rows in the split."""


class Group(Protocol):
    """The processes that score one split together (`llmclf.training.distributed.DistContext`
    is one): each takes rows ``rank::world_size`` of every batch, then they exchange results."""

    rank: int
    world_size: int

    def all_gather_objects(self, obj: Any) -> list[Any]: ...


def model_logits(
    model: torch.nn.Module, device: torch.device, amp_dtype: torch.dtype | None = None
) -> LogitsFn:
    """The `LogitsFn` of a whole model on ``device`` (under autocast to ``amp_dtype``)."""

    def logits(positions: list[int], batch: Batch) -> torch.Tensor:
        with autocast(device, amp_dtype):
            return model(batch.input_ids.to(device), batch.lengths.to(device))

    return logits


def local_rows(
    positions: list[int], batch: Batch, rank: int, world_size: int
) -> tuple[list[int], Batch]:
    """Rows ``rank::world_size`` of a batch (a process's share of a global batch)."""
    if world_size == 1:
        return positions, batch
    rows = slice(rank, None, world_size)
    labels = batch.labels[rows] if batch.labels is not None else None
    return positions[rows], Batch(batch.input_ids[rows], batch.lengths[rows], labels)


@torch.no_grad()  # not inference_mode: the training loop's cached states later feed autograd
def score(
    logits: LogitsFn,
    token_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    policy: PaddingPolicy,
    *,
    label_names: Sequence[str],
    batch_size: int,
    max_batches: int | None = None,
    group: Group | None = None,
    progress: Callable[[int], None] | None = None,
    owners: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Mean cross-entropy (``loss``) and `classification_metrics` of a split.

    ``token_ids`` and ``labels`` are the split's examples. With ``owners`` (a windowed split:
    ``owners[e]`` is example ``e``'s text) the examples' probabilities are aggregated into one
    per text by ``policy.long_text`` and the metrics are per text: ``n`` counts texts and the
    loss is the mean of ``-log p(label)`` of the aggregated probabilities. Under
    ``max_batches`` only the texts with a scored example count, each from the examples scored.

    The texts are scored in order, in batches of ``batch_size`` collated by ``policy``; only
    the first ``max_batches`` batches when given (a periodic evaluation). With ``group``, this
    process scores its rows of every batch and the results of all processes are gathered, so
    every process returns the same metrics. ``progress``, when given, is called after each
    batch with the number of texts in it (all processes' rows). An empty split gives
    ``{"n": 0, "loss": nan, "accuracy": nan}``. The caller puts the model in eval mode.
    """
    rank, world_size = (group.rank, group.world_size) if group is not None else (0, 1)
    total, probs, targets, scored = 0.0, [], [], []
    for i, (positions, batch) in enumerate(
        batches(token_ids, labels, policy, batch_size, shuffle=False, seed=0)
    ):
        if max_batches is not None and i >= max_batches:
            break
        size = len(positions)
        positions, batch = local_rows(list(positions), batch, rank, world_size)
        if positions:
            out = logits(positions, batch).float()
            y = batch.labels.to(out.device)
            total += F.cross_entropy(out, y, reduction="sum").item()
            probs.append(torch.softmax(out, dim=-1).cpu())
            targets.append(batch.labels)
            scored.append(torch.as_tensor(positions, dtype=torch.long))
        if progress is not None:
            progress(size)
    parts = [(total, _cat(probs), _cat(targets), _cat(scored))]
    if group is not None:
        parts = group.all_gather_objects(parts[0])
    parts = [p for p in parts if p[2] is not None]
    n = sum(len(p[2]) for p in parts)
    if n == 0:
        return {"n": 0, "loss": math.nan, "accuracy": math.nan}
    all_probs = torch.cat([p[1] for p in parts])
    all_targets = torch.cat([p[2] for p in parts])
    if owners is not None:
        where = torch.cat([p[3] for p in parts]).tolist()
        return _per_text(all_probs, all_targets, [owners[e] for e in where], policy, label_names)
    loss = sum(p[0] for p in parts) / n
    return classification_metrics(all_targets.numpy(), all_probs.numpy(), label_names, loss=loss)


def _per_text(
    probs: torch.Tensor,
    targets: torch.Tensor,
    owners: list[int],
    policy: PaddingPolicy,
    label_names: Sequence[str],
) -> dict[str, Any]:
    """`classification_metrics` of the texts whose examples (windows) were scored: each
    text's probabilities aggregated by the long-text policy, its loss ``-log p(label)``."""
    texts, text_probs = aggregate_examples(probs, owners, policy.long_text)
    label_of = dict(zip(owners, targets.tolist(), strict=True))  # a text's windows share it
    y = torch.tensor([label_of[t] for t in texts], dtype=torch.long)
    picked = text_probs.gather(1, y[:, None]).squeeze(1)
    loss = -torch.log(picked.clamp_min(torch.finfo(picked.dtype).tiny)).mean().item()
    return classification_metrics(y.numpy(), text_probs.numpy(), label_names, loss=loss)


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    return torch.cat(tensors) if tensors else None
