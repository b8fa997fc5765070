"""Where a batch's logits come from: the whole model, or a frozen-trunk cache.

When every block below ``k`` is frozen and deterministic (no dropout), a text's hidden state
after block ``k - 1`` never changes during training. `TrunkCache` computes it once per text and
the training loop (`TrainingLoop._logits`) runs the top of the model on it. Because attention is
causal, a token's state never depends on what follows it, so the cached states of real tokens
are the same whatever padding or truncation a batch later applies: the cache is exact for every
pooling that reads real tokens only (``last-token``, ``first``, ``mean``), and for ``last`` when
every text is padded to one fixed length (a policy with `PaddingPolicy.fixed_width`:
``pad-dataset``, ``truncate-dataset``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..data.padding import Batch, PaddingPolicy
from ..models.classifier import SequenceClassifier
from .distributed import DistContext

CACHE_BATCH_SIZE = 32  # texts a batch when the cache is built
DEFAULT_BUDGET_FRACTION = 0.5  # of the memory available when the cache is built
# Under bf16/fp16 autocast the CPU kernels keep a compiled primitive per input shape, so
# memory grows with every new batch width; rounding widths up to a multiple bounds the shapes.
REDUCED_PRECISION_WIDTH_MULTIPLE = 16


def round_width(width: int, multiple: int, limit: int | None = None) -> int:
    """``width`` rounded up to a multiple of ``multiple``, but never past ``limit``."""
    rounded = -(-width // multiple) * multiple
    return max(width, min(rounded, limit)) if limit is not None else rounded


@dataclass
class TrunkCache:
    """Hidden states after block ``end_layer - 1`` for every text of one split (CPU, fp32)."""

    end_layer: int
    states: list[torch.Tensor]  # per text: (L_i, C)
    width_multiple: int = 1  # assembled batches are this many positions wide, or a multiple

    def assemble(
        self, positions: Sequence[int], batch: Batch, device: torch.device
    ) -> torch.Tensor:
        """The (B, T, C) hidden states for a collated batch: cached rows cut or zero-padded to T.

        Positions past a text's cached length are padding; with the exactness rule above they
        never reach the pooled vector. ``T`` is the batch's width rounded up to
        ``width_multiple`` (only ever set > 1 for poolings that read real tokens).
        """
        t = round_width(batch.input_ids.shape[1], self.width_multiple)
        c = self.states[0].shape[-1]
        out = torch.zeros(len(positions), t, c, dtype=self.states[0].dtype)
        for row, position in enumerate(positions):
            state = self.states[position][:t]
            out[row, : state.shape[0]] = state
        return out.to(device, non_blocking=True)


def cache_decision(
    *,
    enabled: bool,
    first_trainable_layer: int,
    dropout: float,
    pooling: str,
    padding: PaddingPolicy,
) -> tuple[bool, str]:
    """Whether the frozen-trunk cache may be used, and why (a one-line reason)."""
    if not enabled:
        return False, "frozen-trunk cache off (--cache off)"
    if first_trainable_layer == 0:
        return False, "frozen-trunk cache off: every block trains"
    if dropout > 0:
        return False, "frozen-trunk cache off: dropout makes the frozen blocks non-deterministic"
    if pooling in ("last", "mean-all") and not padding.fixed_width:
        return (
            False,
            f"frozen-trunk cache off: {pooling!r} pooling reads padding that depends on the batch",
        )
    return True, f"frozen-trunk cache on: blocks 0-{first_trainable_layer - 1} run once per text"


def cache_bytes(token_ids: Sequence[Sequence[int]], policy: PaddingPolicy, width: int) -> int:
    """The cache's size for these texts: each text's width on its own (as ``policy`` lays it
    out, padding included) times the model width, in fp32."""
    return sum(policy.width([len(ids)]) for ids in token_ids) * width * 4


def available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def cache_batches(
    token_counts: Sequence[int],
    batch_size: int = CACHE_BATCH_SIZE,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> list[list[int]]:
    """The texts (positions) of each batch the cache build runs: this rank's share
    (``rank::world_size``), sorted by length, ``batch_size`` at a time."""
    order = sorted(range(rank, len(token_counts), world_size), key=lambda i: token_counts[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def cache_input(
    policy: PaddingPolicy,
    texts: Sequence[Sequence[int]],
    width_multiple: int = 1,
    limit: int | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """The (B, T) token ids the frozen blocks run for one cache batch, and the width of each
    text on its own (`PaddingPolicy.width`: the states the cache keeps for it).

    Each text is laid out as the policy lays it out alone, in a batch padded to the widest;
    causal attention keeps the padding after a text out of its states. ``T`` is rounded up to
    ``width_multiple``, never past ``limit``.
    """
    ids = policy.collate(texts).input_ids
    alone = [policy.width([len(t)]) for t in texts]
    width = round_width(max(ids.shape[1], *alone), width_multiple, limit)
    ids = torch.cat([ids, ids.new_full((len(texts), width - ids.shape[1]), policy.pad_id)], 1)
    return ids, alone


@torch.no_grad()  # not inference_mode: the cached states later feed autograd
def build_trunk_cache(
    model: SequenceClassifier,
    token_ids: Sequence[Sequence[int]],
    policy: PaddingPolicy,
    end_layer: int,
    device: torch.device,
    autocast_ctx,
    batch_size: int = CACHE_BATCH_SIZE,
    ctx: DistContext | None = None,
    width_multiple: int = 1,
    progress: Callable[[int], None] | None = None,
) -> TrunkCache:
    """Run blocks ``[0, end_layer)`` once per text, in length-sorted batches.

    Under DistributedDataParallel each rank computes every ``world_size``-th text and the
    shards are exchanged, so every rank ends with the whole cache. Each text keeps the states of
    its width on its own (`PaddingPolicy.width`). ``width_multiple`` rounds
    the widths of these batches and of the batches the cache assembles later (see
    `REDUCED_PRECISION_WIDTH_MULTIPLE`). ``progress``, when given, is called after each batch
    with the number of texts it computed (this rank's: ``len(range(rank, n, world_size))`` in all).
    """
    ctx = ctx or DistContext()
    was_training = model.training
    model.eval()
    states: list[torch.Tensor] = [torch.empty(0)] * len(token_ids)
    limit = model.backbone.config.context_length
    lengths = [len(ids) for ids in token_ids]
    for chunk in cache_batches(lengths, batch_size, rank=ctx.rank, world_size=ctx.world_size):
        ids, alone = cache_input(policy, [token_ids[i] for i in chunk], width_multiple, limit)
        with autocast_ctx():
            hidden = model.trunk(ids.to(device), end_layer)
        hidden = hidden.float().cpu()
        for row, index in enumerate(chunk):
            states[index] = hidden[row, : alone[row]].clone()
        if progress is not None:
            progress(len(chunk))
    model.train(was_training)
    if ctx.enabled:
        mine = range(ctx.rank, len(token_ids), ctx.world_size)
        for rank, part in enumerate(ctx.all_gather_objects([states[i] for i in mine])):
            for index, state in zip(range(rank, len(token_ids), ctx.world_size), part, strict=True):
                states[index] = state
    return TrunkCache(end_layer, states, width_multiple)
