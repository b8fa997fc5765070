"""Packing: several texts of a batch in one row, so the model runs no padding (``--pack``).

A right-padded batch of B texts (B, T) becomes R <= B rows of one width W: the texts are
placed first-fit, longest first, one after another in a row (`layout`). W is at least the
longest text and at least `PACK_WIDTH` tokens (short texts share a row), and as small as fits
the texts in the fewest such rows, so almost nothing is left over. Each token's position
restarts at 0 with its text, and the attention mask is block-diagonal and causal: a token sees
the earlier tokens of its own text only. Every text's hidden states are therefore those it has
alone, so the logits equal the unpacked forward's (up to the order of floating-point sums), and
a text's prediction never depends on its neighbours, as `llmclf.data.padding` requires.

The projections and MLPs, most of the work, then run on the real tokens plus what is left at
the end of each row. The attention is computed over whole rows (a dense mask), which costs more
than the padded batch's when short texts share a long row. `pack_if_cheaper` weighs both
(`layout_cost`) and keeps the padded batch when packing would not save work: texts of nearly
one length (IMDb cut to 128 tokens) leave no padding to remove.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

PACK_WIDTH = 256  # rows are at least this wide: short texts share one
WIDTH_STEP = 8  # a row too narrow for the texts grows by this many tokens


class Packed(NamedTuple):
    """A packed batch. Text ``i`` is ``input_ids[rows[i], starts[i] : starts[i] + lengths[i]]``.

    Tokens after the last text of a row are fill: they form a segment of their own, which no
    text attends to.
    """

    input_ids: torch.Tensor  # (R, W) token ids
    positions: torch.Tensor  # (R, W) each token's position within its own text
    segments: torch.Tensor  # (R, W) the text each token belongs to; -1 for fill
    rows: torch.Tensor  # (N,) the row of each text
    starts: torch.Tensor  # (N,) the column of each text's first token
    lengths: torch.Tensor  # (N,) each text's tokens

    def to(self, device: torch.device) -> Packed:
        return Packed(*(t.to(device) for t in self))

    def attention_mask(self) -> torch.Tensor:
        """(R, 1, W, W) bool, True where a query (row of the mask) may attend to a key: the
        same segment and not later. Every query sees at least itself."""
        W = self.segments.shape[1]
        same = self.segments[:, :, None] == self.segments[:, None, :]  # (R, W, W)
        causal = torch.ones(W, W, dtype=torch.bool, device=same.device).tril()
        return (same & causal)[:, None]

    def pooled_columns(self, pooling: str) -> torch.Tensor:
        """The column each text's single-position pooling reads: (N,)."""
        if pooling == "first":
            return self.starts
        if pooling == "last-token":
            return self.starts + self.lengths - 1
        raise ValueError(f"packing pools 'first', 'last-token' or 'mean', not {pooling!r}")

    def mean(self, hidden: torch.Tensor) -> torch.Tensor:
        """Each text's mean hidden state: (R, W, C) -> (N, C)."""
        N = len(self.lengths)
        flat = hidden.reshape(-1, hidden.shape[-1])  # (R * W, C)
        segments = self.segments.reshape(-1)
        real = segments >= 0
        sums = torch.zeros(N, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
        sums.index_add_(0, segments[real], flat[real])
        return sums / self.lengths[:, None].to(hidden.dtype)


def place(lengths: list[int], width: int) -> list[tuple[int, int]]:
    """``(row, start)`` of each text: first fit, longest first, in rows of ``width`` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    free: list[int] = []  # tokens left in each row
    placed: list[tuple[int, int]] = [(0, 0)] * len(lengths)
    for i in order:
        n = lengths[i]
        row = next((r for r, left in enumerate(free) if left >= n), None)
        if row is None:
            free.append(width)
            row = len(free) - 1
        placed[i] = (row, width - free[row])
        free[row] -= n
    return placed


def layout(lengths: list[int], min_width: int = PACK_WIDTH) -> tuple[int, list[tuple[int, int]]]:
    """The row width and each text's ``(row, start)``: the fewest rows of at least
    ``max(longest, min_width)`` tokens, then the narrowest width that still fits the texts in
    that many rows."""
    longest, total = max(lengths), sum(lengths)
    rows = -(-total // max(longest, min_width))
    width = max(longest, -(-total // rows))
    while True:
        placed = place(lengths, width)
        if 1 + max(row for row, _ in placed) <= rows:
            return width, placed
        width += WIDTH_STEP


def layout_cost(rows: int, width: int, n_embd: int) -> float:
    """The work of a forward over ``rows`` x ``width`` positions, relative: per position the
    projections and MLP (~24 C^2 multiply-adds) plus attention over the row (~4 W C)."""
    return rows * width * (1 + width / (6 * n_embd))


def cheaper_layout(
    lengths: list[int], padded_width: int, n_embd: int
) -> tuple[int, list[tuple[int, int]]] | None:
    """`layout` of texts of ``lengths`` if it is less work than running them padded to
    ``padded_width`` (`layout_cost`), else None."""
    width, placed = layout(lengths)
    rows = 1 + max(row for row, _ in placed)
    if layout_cost(rows, width, n_embd) >= layout_cost(len(lengths), padded_width, n_embd):
        return None
    return width, placed


def pack_if_cheaper(
    input_ids: torch.Tensor, lengths: torch.Tensor, n_embd: int, fill_id: int = 0
) -> Packed | None:
    """`pack` the batch if that costs less work than running it padded (B, T), else None."""
    counts = [int(n) for n in lengths.tolist()]
    planned = cheaper_layout(counts, input_ids.shape[1], n_embd)
    return None if planned is None else _fill(input_ids, counts, *planned, fill_id)


def pack(
    input_ids: torch.Tensor, lengths: torch.Tensor, fill_id: int = 0, min_width: int = PACK_WIDTH
) -> Packed:
    """Pack a right-padded batch (B, T) with real ``lengths`` (B,); see the module docstring."""
    counts = [int(n) for n in lengths.tolist()]
    width, placed = layout(counts, min_width)
    return _fill(input_ids, counts, width, placed, fill_id)


def _fill(
    input_ids: torch.Tensor,
    counts: list[int],
    width: int,
    placed: list[tuple[int, int]],
    fill_id: int,
) -> Packed:
    """The packed tensors of texts placed at ``(row, start)`` in rows of ``width`` tokens."""
    R = 1 + max(row for row, _ in placed)
    ids = torch.full((R, width), fill_id, dtype=input_ids.dtype)
    positions = torch.zeros((R, width), dtype=torch.long)
    segments = torch.full((R, width), -1, dtype=torch.long)
    for i, ((row, start), n) in enumerate(zip(placed, counts, strict=True)):
        ids[row, start : start + n] = input_ids[i, :n]
        positions[row, start : start + n] = torch.arange(n)
        segments[row, start : start + n] = i
    rows = torch.tensor([row for row, _ in placed])
    starts = torch.tensor([start for _, start in placed])
    return Packed(ids, positions, segments, rows, starts, torch.tensor(counts))
