"""Batches: seeded shuffling, optional length bucketing, collated by a padding policy.

Plain generators over lists of token ids: no DataLoader workers, nothing to pickle. The same
seed and epoch always give the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..errors import ConfigError
from .padding import Batch, PaddingPolicy

BUCKET_BATCHES = 50  # bucketing sorts by length within chunks of this many batches


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """How many batches `batches` yields for ``n`` texts."""
    _check_batch_size(batch_size)
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(
    split_token_ids: Sequence[Sequence[int]],
    labels: Sequence[int] | None,
    policy: PaddingPolicy,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    bucket: bool = False,
    drop_last: bool = False,
    indices: Sequence[int] | None = None,
) -> Iterator[tuple[list[int], Batch]]:
    """Yield ``(positions, batch)``: the positions in the split, and their collated batch.

    ``shuffle`` draws the order from a ``torch.Generator`` seeded with ``seed + epoch``.
    ``bucket`` sorts texts by length within chunks of ~50 batches so each batch holds similar
    lengths (less padding), then shuffles the batch order when ``shuffle`` is set.
    ``indices`` restricts the iteration to those positions (a distributed shard).
    """
    for positions in batch_positions(
        [len(ids) for ids in split_token_ids],
        batch_size,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        bucket=bucket,
        drop_last=drop_last,
        indices=indices,
    ):
        yield (
            positions,
            policy.collate(
                [split_token_ids[i] for i in positions],
                None if labels is None else [labels[i] for i in positions],
            ),
        )


def batch_positions(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    bucket: bool = False,
    drop_last: bool = False,
    indices: Sequence[int] | None = None,
) -> list[list[int]]:
    """The positions of every batch, as `batches` would yield them."""
    _check_batch_size(batch_size)
    order = list(range(len(lengths))) if indices is None else [int(i) for i in indices]
    generator = torch.Generator().manual_seed(seed + epoch)
    if shuffle:
        order = [order[i] for i in torch.randperm(len(order), generator=generator).tolist()]
    if bucket:
        chunk = batch_size * BUCKET_BATCHES
        order = [
            i
            for start in range(0, len(order), chunk)
            for i in sorted(order[start : start + chunk], key=lambda j: lengths[j])
        ]
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and groups and len(groups[-1]) < batch_size:
        groups.pop()
    if bucket and shuffle:
        groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
    return groups


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
