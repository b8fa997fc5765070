"""Where a batch's logits come from: the whole model, or a frozen-trunk cache.

When every block below ``k`` is frozen and deterministic (no dropout), a text's hidden state
after block ``k - 1`` never changes during training. `TrunkCache` computes it once per
text and `batch_logits` trains the top of the model on it. Because attention is causal,
a token's state never depends on what follows it, so the cached states of real tokens are the
same whatever padding or truncation a batch later applies: the cache is exact for every pooling
that reads real tokens only (``last-token``, ``first``, ``mean``), and for ``last`` when every
text is padded to one fixed length (``pad-dataset``, ``truncate-dataset``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..data.padding import Batch
from ..models.classifier import SequenceClassifier
from .distributed import DistContext

FIXED_LENGTH_POLICIES = ("pad-dataset", "truncate-dataset")
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
    padding: str,
) -> tuple[bool, str]:
    """Whether the frozen-trunk cache may be used, and why (a one-line reason)."""
    if not enabled:
        return False, "frozen-trunk cache off (--cache off)"
    if first_trainable_layer == 0:
        return False, "frozen-trunk cache off: every block trains"
    if dropout > 0:
        return False, "frozen-trunk cache off: dropout makes the frozen blocks non-deterministic"
    if pooling == "last" and padding not in FIXED_LENGTH_POLICIES:
        return (
            False,
            "frozen-trunk cache off: 'last' pooling reads padding that depends on the batch",
        )
    return True, f"frozen-trunk cache on: blocks 0-{first_trainable_layer - 1} run once per text"


def cache_bytes(token_counts: Sequence[int], width: int) -> int:
    return int(sum(token_counts)) * width * 4


def available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


@torch.no_grad()  # not inference_mode: the cached states later feed autograd
def build_trunk_cache(
    model: SequenceClassifier,
    token_ids: Sequence[Sequence[int]],
    policy_collate,  # (token lists) -> Batch, the run's padding policy
    end_layer: int,
    device: torch.device,
    autocast_ctx,
    batch_size: int = 32,
    ctx: DistContext | None = None,
    width_multiple: int = 1,
    progress: Callable[[int], None] | None = None,
) -> TrunkCache:
    """Run blocks ``[0, end_layer)`` once per text, in length-sorted batches.

    Under DistributedDataParallel each rank computes every ``world_size``-th text and the
    shards are exchanged, so every rank ends with the whole cache. ``width_multiple`` rounds
    the widths of these batches and of the batches the cache assembles later (see
    `REDUCED_PRECISION_WIDTH_MULTIPLE`). ``progress``, when given, is called after each batch
    with the number of texts it computed (this rank's: ``len(range(rank, n, world_size))`` in all).
    """
    ctx = ctx or DistContext()
    was_training = model.training
    model.eval()
    states: list[torch.Tensor] = [torch.empty(0)] * len(token_ids)
    mine = range(ctx.rank, len(token_ids), ctx.world_size)
    order = sorted(mine, key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        # each text as the policy would lay it out alone, then padded to the chunk's longest
        singles = [policy_collate([token_ids[i]]).input_ids[0] for i in chunk]
        limit = model.backbone.config.context_length
        width = round_width(max(len(s) for s in singles), width_multiple, limit)
        ids = torch.stack(
            [
                torch.cat([s, s.new_full((width - len(s),), int(s[-1]) if len(s) else 0)])
                for s in singles
            ]
        ).to(device)
        with autocast_ctx():
            hidden = model.trunk(ids, end_layer)
        hidden = hidden.float().cpu()
        for row, index in enumerate(chunk):
            states[index] = hidden[row, : len(singles[row])].clone()
        if progress is not None:
            progress(len(chunk))
    model.train(was_training)
    if ctx.enabled:
        for rank, part in enumerate(ctx.all_gather_objects([states[i] for i in mine])):
            for index, state in zip(range(rank, len(token_ids), ctx.world_size), part, strict=True):
                states[index] = state
    return TrunkCache(end_layer, states, width_multiple)
