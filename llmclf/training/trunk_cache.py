"""Where a batch's logits come from: the whole model, or a frozen-trunk cache.

When every block below ``k`` is frozen and deterministic (no dropout), a text's hidden state
after block ``k - 1`` never changes during training. `TrunkCache` computes it once per text and
the training loop (`TrainingLoop._logits`) runs the top of the model on it. Because attention is
causal, a token's state never depends on what follows it, so the cached states of real tokens
are the same whatever padding or truncation a batch later applies: the cache is exact for every
pooling that reads real tokens only (``last-token``, ``first``, ``mean``), and for ``last`` when
every text is padded to one fixed length (a policy with `PaddingPolicy.fixed_width`:
``pad-dataset``, ``truncate-dataset``).

Storage: one contiguous buffer per split (see `TrunkCache`), fp32, or bf16 under bf16
autocast (the trunk computes in bf16 there; the stored states round the fp32 residual stream
once, within bf16 tolerance); when only the head trains, one pooled vector per text instead
(exact in any precision). Splits that do not fit the memory budget (`DEFAULT_BUDGET_FRACTION`
of the free memory) spill to a memory-mapped file (`plan_storage`), deleted as soon as it is
mapped so that no run, finished or killed, leaves it behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.padding import Batch, PaddingPolicy
from ..models.classifier import SequenceClassifier, pool
from ..models.packing import Packed
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
    """What the frozen part of the model computes for every text of one split, in one buffer.

    Token states (the default): the hidden states after block ``end_layer - 1`` of every text,
    concatenated into one ``(rows + 1, C)`` buffer whose last row is zeros (read for padding);
    text ``i`` holds rows ``offsets[i] : offsets[i] + lengths[i]``. Pooled (``pooled=True``,
    when only the head trains): one ``(C,)`` vector per text, the final norm and the pooling
    already applied.
    The buffer is in memory or a memory-mapped file (``location`` says which).
    """

    end_layer: int
    data: torch.Tensor  # (rows + 1, C): token states, or one pooled vector per text; zero row last
    offsets: torch.Tensor  # (N,) int64: the first row of each text
    lengths: torch.Tensor  # (N,) int64: the rows of each text (1 for a pooled cache)
    width_multiple: int = 1  # assembled batches are this many positions wide, or a multiple
    pooled: bool = False
    location: str = "memory"
    spill_file: Path | None = None  # a spill file that could not be deleted when mapped

    @property
    def nbytes(self) -> int:
        """The buffer's size in bytes."""
        return self.data.numel() * self.data.element_size()

    def assemble(
        self, positions: Sequence[int], batch: Batch, device: torch.device
    ) -> torch.Tensor:
        """The fp32 input of the trainable part for a collated batch, gathered in one indexed
        read: (B, C) pooled vectors, or (B, T, C) cached states cut or zero-padded to T.

        Positions past a text's cached length are padding; with the exactness rule above they
        never reach the pooled vector. ``T`` is the batch's width rounded up to
        ``width_multiple`` (only ever set > 1 for poolings that read real tokens).
        """
        rows = torch.as_tensor(positions, dtype=torch.long)
        if self.pooled:
            return self.data.index_select(0, rows).to(device, torch.float32, non_blocking=True)
        t = round_width(batch.input_ids.shape[1], self.width_multiple)
        steps = torch.arange(t)
        real = steps < self.lengths[rows][:, None]  # (B, T)
        # padding reads the buffer's last row, which is all zeros: one pass, no mask
        index = torch.where(real, self.offsets[rows][:, None] + steps, self.data.shape[0] - 1)
        out = self.data.index_select(0, index.flatten()).view(len(rows), t, -1)
        return out.to(device, non_blocking=True).float()

    def assemble_packed(
        self, positions: Sequence[int], packed: Packed, device: torch.device
    ) -> torch.Tensor:
        """The fp32 cached states of a packed batch (`llmclf.models.packing`), in its row:
        (1, W, C). Text ``i`` of the pack is the split's text ``positions[i]``; fill reads the
        zero row. One indexed read, as `assemble`. Token-state caches only."""
        texts = torch.as_tensor(positions, dtype=torch.long)
        segments = packed.segments.cpu()  # (1, W): the text of each token, -1 for fill
        first = self.offsets[texts][segments.clamp(min=0)]  # (1, W): that text's first row
        index = torch.where(segments >= 0, first + packed.positions.cpu(), self.data.shape[0] - 1)
        out = self.data.index_select(0, index.flatten()).view(*segments.shape, -1)
        return out.to(device, non_blocking=True).float()

    def release(self) -> None:
        """Drop the buffer, and delete a spill file that is still on disk."""
        self.data = torch.empty(0)
        if self.spill_file is not None:
            self.spill_file.unlink(missing_ok=True)
            self.spill_file = None


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


def pooled_cache(trainable_names: Sequence[str]) -> bool:
    """Whether only the head trains, so the cache may hold one pooled vector per text."""
    return bool(trainable_names) and all(n.startswith("head.") for n in trainable_names)


def storage_dtype(amp_dtype: torch.dtype | None, pooled: bool) -> torch.dtype:
    """The cache's dtype: bf16 under bf16 autocast; a pooled cache in the autocast dtype (the
    head casts its input to it anyway, so this is exact); fp32 otherwise."""
    if amp_dtype == torch.bfloat16 or (pooled and amp_dtype is not None):
        return amp_dtype
    return torch.float32


def cache_rows(
    token_ids: Sequence[Sequence[int]], policy: PaddingPolicy, pooled: bool = False
) -> list[int]:
    """The rows each text takes in the cache: its width on its own as ``policy`` lays it out
    (padding included), or 1 for a pooled cache."""
    if pooled:
        return [1] * len(token_ids)
    return [policy.width([len(ids)]) for ids in token_ids]


def cache_bytes(
    token_ids: Sequence[Sequence[int]],
    policy: PaddingPolicy,
    width: int,
    *,
    itemsize: int = 4,
    pooled: bool = False,
) -> int:
    """The cache's size for these texts: `cache_rows` times the model width times
    ``itemsize`` (4: fp32, 2: bf16)."""
    return sum(cache_rows(token_ids, policy, pooled)) * width * itemsize


def split_needs(
    splits: Mapping[str, Sequence[Sequence[int]]],
    policy: PaddingPolicy,
    width: int,
    *,
    dtype: torch.dtype,
    pooled: bool,
) -> dict[str, int]:
    """`cache_bytes` of each split's token ids, by split name."""
    return {
        name: cache_bytes(ids, policy, width, itemsize=dtype.itemsize, pooled=pooled)
        for name, ids in splits.items()
    }


def available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def free_disk_bytes(directory: Path) -> int:
    """Free space on the disk that holds ``directory`` (or its nearest existing parent)."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0


def plan_storage(
    needs: Mapping[str, int], budget: int, spill_dir: Path
) -> tuple[dict[str, Path | None] | None, str]:
    """Where each split's cache goes: memory (None) while the splits, in order, fit ``budget``
    bytes, a memory-mapped file in ``spill_dir`` for the rest; None and a one-line reason when
    the disk cannot hold what spills either."""
    plan: dict[str, Path | None] = {}
    used = spilled = 0
    for name, need in needs.items():
        in_memory = used + need <= budget
        plan[name] = None if in_memory else spill_dir
        used += need if in_memory else 0
        spilled += 0 if in_memory else need
    free = free_disk_bytes(spill_dir) if spilled else 0
    if spilled and spilled > free:
        return None, (
            f"frozen-trunk cache off: it needs {gib(sum(needs.values()))}, more than the "
            f"{gib(budget)} memory budget, and {spill_dir} has {gib(free)} free for the "
            f"{gib(spilled)} that would spill (choose another disk with --cache-dir); "
            "training runs the whole model every epoch"
        )
    return plan, ""


def gib(n: int) -> str:
    """``n`` bytes in words: ``1.4 GiB``, ``12 MiB``, ``731 KiB``."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


@dataclass(frozen=True)
class CacheLayout:
    """How `build_trunk_cache` stores a split: dtype, pooled or token states, and the
    directory of its memory-mapped file (None: in memory)."""

    dtype: torch.dtype = torch.float32
    pooled: bool = False
    spill_dir: Path | None = None

    def allocate(self, rows: int, width: int) -> tuple[torch.Tensor, str, Path | None]:
        """A ``(rows, width)`` buffer, where it lives (words), and its file if it could not be
        deleted while mapped (it then goes with `TrunkCache.release`)."""
        if self.spill_dir is None:
            return torch.empty(rows, width, dtype=self.dtype), "memory", None
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".llmclf-trunk-cache-", dir=self.spill_dir)
        os.close(fd)
        size = max(rows * width, 1)
        data = torch.from_file(name, shared=True, size=size, dtype=self.dtype)
        try:  # the mapping keeps the space until the cache is dropped; nothing is left behind
            os.unlink(name)
            leftover = None
        except OSError:  # a system that cannot delete a mapped file
            leftover = Path(name)
        return (
            data[: rows * width].view(rows, width),
            f"a memory-mapped file in {self.spill_dir}",
            leftover,
        )


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
    layout: CacheLayout | None = None,
) -> TrunkCache:
    """Run blocks ``[0, end_layer)`` once per text, in length-sorted batches, into one buffer.

    Under DistributedDataParallel each rank computes every ``world_size``-th text and the
    shards are exchanged, so every rank ends with the whole cache. Each text keeps the states of
    its width on its own (`PaddingPolicy.width`), or with a pooled ``layout`` (``end_layer``
    must then be the number of blocks) its final-norm, pooled vector. ``width_multiple`` rounds
    the widths of these batches and of the batches the cache assembles later (see
    `REDUCED_PRECISION_WIDTH_MULTIPLE`). ``progress``, when given, is called after each batch
    with the number of texts it computed (this rank's: ``len(range(rank, n, world_size))`` in all).
    """
    ctx, layout = ctx or DistContext(), layout or CacheLayout()
    rows = torch.tensor(cache_rows(token_ids, policy, layout.pooled), dtype=torch.long)
    offsets = torch.cumsum(rows, 0) - rows
    data, location, leftover = layout.allocate(int(rows.sum()) + 1, model.backbone.config.n_embd)
    data[-1] = 0  # what `TrunkCache.assemble` reads for padding
    was_training = model.training
    model.eval()
    limit = model.backbone.config.context_length
    lengths = [len(ids) for ids in token_ids]
    for chunk in cache_batches(lengths, batch_size, rank=ctx.rank, world_size=ctx.world_size):
        ids, alone = cache_input(policy, [token_ids[i] for i in chunk], width_multiple, limit)
        with autocast_ctx():
            hidden = model.trunk(ids.to(device), end_layer)
            if layout.pooled:
                real = policy.collate([token_ids[i] for i in chunk]).lengths.to(device)
                x = model.backbone.ln_f(hidden[:, : max(alone)])
                hidden = pool(x, real, model.pooling)[:, None]  # (B, 1, C)
        hidden = hidden.to("cpu", layout.dtype)
        for row, index in enumerate(chunk):
            start, n = int(offsets[index]), int(rows[index])
            data[start : start + n] = hidden[row, :n]
        if progress is not None:
            progress(len(chunk))
    model.train(was_training)
    if ctx.enabled:
        _exchange(data, offsets, rows, ctx)
    return TrunkCache(
        end_layer,
        data,
        offsets,
        rows,
        width_multiple,
        pooled=layout.pooled,
        location=location,
        spill_file=leftover,
    )


def _exchange(
    data: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor, ctx: DistContext
) -> None:
    """Give every rank the rows the other ranks computed (rank ``r`` has texts ``r::world``)."""
    n = len(rows)

    def span(i: int) -> slice:
        return slice(int(offsets[i]), int(offsets[i] + rows[i]))

    mine = [data[span(i)].clone() for i in range(ctx.rank, n, ctx.world_size)]
    for rank, part in enumerate(ctx.all_gather_objects(mine)):
        if rank != ctx.rank:
            for index, state in zip(range(rank, n, ctx.world_size), part, strict=True):
                data[span(index)] = state


def describe_caches(caches: Mapping[str, TrunkCache | None]) -> str:
    """Where the caches live and their size, in words: ``12 MiB bf16 token states in memory``."""
    built = {name: c for name, c in caches.items() if c is not None}
    if not built:
        return ""
    first = next(iter(built.values()))
    kind = "pooled vectors" if first.pooled else "token states"
    dtype = str(first.data.dtype).removeprefix("torch.").replace("float32", "fp32")
    dtype = dtype.replace("bfloat16", "bf16").replace("float16", "fp16")
    places: dict[str, list[str]] = {}
    for name, cache in built.items():
        places.setdefault(cache.location, []).append(name)
    where = "; ".join(f"{'/'.join(names)} in {place}" for place, names in places.items())
    if len(places) == 1:
        where = f"in {next(iter(places))}"
    total = sum(c.nbytes for c in built.values())
    return f"{gib(total)} {dtype} {kind}, {where}"
