"""The recipe's batches and their matrix-product FLOPs, counted on the padded tokens computed.

The batches are the ones llmclf builds: training and evaluation batches come from
`llmclf.data.loaders.batches` with the run's padding policy (so bucketing, the policy's widths
and any loader change are counted as they run), the cache build's from
`llmclf.training.trunk_cache.cache_batches` / `cache_input`.

A block's forward pass on a (B, T) batch of width C does ``24 C^2`` FLOPs a token in its four
linear layers (qkv 3C^2, output C^2, MLP 8C^2, times 2 for multiply-add) and ``4 T C`` a token in
attention (scores and weighted sum, the full T x T square as the kernels compute it). A training
step's backward pass is counted as twice its forward pass. LayerNorms, GELU, embeddings and the
2-way head are left out: a few percent of the total.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from llmclf.data.loaders import batches
from llmclf.data.padding import PaddingPolicy
from llmclf.options import SPLITS

Shape = tuple[int, int]  # (B, T)


def block_forward(batch: int, length: int, width: int) -> float:
    """FLOPs of one block's forward pass on a (batch, length) batch."""
    return batch * length * (24.0 * width * width + 4.0 * length * width)


def block_at_position(batch: int, length: int, width: int) -> float:
    """FLOPs of a block run for one position a row (llmclf's last block under single-position
    pooling): the qkv projection on every token, one query's attention, and the output
    projection and MLP on that position only."""
    return batch * (length * (6.0 * width * width + 4.0 * width) + 18.0 * width * width)


def forward(shapes: Iterable[Shape], width: int, blocks: int, pooled_top: bool = False) -> float:
    """Forward FLOPs of ``blocks`` blocks over batches of shape (B, T); with ``pooled_top``
    the last of them runs at the pooled position only."""
    shapes = list(shapes)
    if not pooled_top or blocks == 0:
        return blocks * sum(block_forward(b, t, width) for b, t in shapes)
    full = (blocks - 1) * sum(block_forward(b, t, width) for b, t in shapes)
    return full + sum(block_at_position(b, t, width) for b, t in shapes)


def tokens(shapes: Iterable[Shape]) -> int:
    return sum(b * t for b, t in shapes)


def padded(lengths: Sequence[int], groups: Iterable[Sequence[int]]) -> list[Shape]:
    """(B, T) of each batch padded to its longest text (predict's batches)."""
    return [(len(g), max(lengths[i] for i in g)) for g in groups]


def sorted_groups(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of texts sorted by length (`llmclf.Classifier.predict`)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def in_order_groups(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def loader_shapes(
    token_ids: Sequence[Sequence[int]],
    policy: PaddingPolicy,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    bucket: bool = False,
    max_batches: int | None = None,
) -> list[Shape]:
    """(B, T) of each batch `llmclf.data.loaders.batches` builds (the first ``max_batches``)."""
    shapes = []
    for i, (_, batch) in enumerate(
        batches(
            token_ids,
            None,
            policy,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            bucket=bucket,
        )
    ):
        if max_batches is not None and i >= max_batches:
            break
        b, t = batch.input_ids.shape
        shapes.append((b, t))
    return shapes


def cache_shapes(token_ids: Sequence[Sequence[int]], policy: PaddingPolicy) -> list[Shape]:
    """(B, T) of each batch the frozen-trunk cache build runs (fp32: widths not rounded)."""
    from llmclf.training.trunk_cache import cache_batches, cache_input

    shapes = []
    for chunk in cache_batches([len(ids) for ids in token_ids]):
        ids, _ = cache_input(policy, [token_ids[i] for i in chunk])
        b, t = ids.shape
        shapes.append((b, t))
    return shapes


@dataclass
class Recipe:
    """The batches of the book's recipe on one dataset: training steps per epoch, the periodic
    and end-of-epoch evaluations (llmclf's cadence), the final evaluation, the cache build."""

    train: list[list[Shape]]  # per epoch
    periodic: list[Shape]  # one periodic evaluation: 5 training + 5 validation batches
    periodic_counts: list[int]  # periodic evaluations in each epoch (on the global step)
    epoch_end: list[Shape]  # 5 training batches + the whole validation split
    final: list[Shape]  # every split, whole
    cache: list[Shape]  # llmclf's cache build: every split, sorted, batches of 32

    @classmethod
    def of(
        cls,
        splits: dict[str, Sequence[Sequence[int]]],  # token ids of train / validation / test
        policy: PaddingPolicy,  # fitted, as the run used it
        epochs: int,
        *,
        batch_size: int = 8,
        bucket: bool = False,
        eval_every: int = 50,
        eval_batches: int = 5,
        seed: int = 123,
    ) -> Recipe:
        def evaluation(name: str, batches: int | None) -> list[Shape]:
            return loader_shapes(
                splits[name], policy, batch_size, shuffle=False, max_batches=batches
            )

        n = len(splits["train"])
        steps = -(-n // batch_size)
        return cls(
            train=[
                loader_shapes(
                    splits["train"],
                    policy,
                    batch_size,
                    shuffle=True,
                    seed=seed,
                    epoch=e,
                    bucket=bucket,
                )
                for e in range(epochs)
            ],
            periodic=evaluation("train", eval_batches) + evaluation("validation", eval_batches),
            periodic_counts=[
                (e + 1) * steps // eval_every - e * steps // eval_every for e in range(epochs)
            ],
            epoch_end=evaluation("train", eval_batches) + evaluation("validation", None),
            final=[s for name in SPLITS for s in evaluation(name, None)],
            cache=[s for name in SPLITS for s in cache_shapes(splits[name], policy)],
        )

    def evaluations(self, epoch: int) -> list[Shape]:
        return self.periodic * self.periodic_counts[epoch] + self.epoch_end

    def epoch_flops(
        self, epoch: int, width: int, forward_blocks: int, train_blocks: int, pooled_top: bool
    ) -> float:
        """Steps (forward through ``forward_blocks``, backward through ``train_blocks``) and
        evaluations of one epoch; ``pooled_top``: see :func:`forward`."""
        steps = self.train[epoch]
        return (
            forward(steps, width, forward_blocks, pooled_top)
            + 2 * forward(steps, width, train_blocks, pooled_top)
            + forward(self.evaluations(epoch), width, forward_blocks, pooled_top)
        )
