"""Packing: the texts of a batch side by side in one row, so the model runs no padding
(``--pack``).

A right-padded batch of B texts (B, T) becomes one row of its real tokens (1, W), W the sum of
the texts' lengths, in the batch's order. Each token's position restarts at 0 with its text.
The projections and MLPs, most of the work, run on the real tokens only; the attention runs
within each text (`llmclf.models.attention`): causal over the text's own tokens, never across
texts. Every text's hidden states are therefore those it has alone, so the logits equal the
unpacked forward's (up to the order of floating-point sums), and a text's prediction never
depends on its neighbours, as `llmclf.data.padding` requires.

A packed batch is never more work than the padded one: it has no more positions (sum of
lengths against B x T) and less attention (sum of squared lengths against B x T^2).

Under bf16/fp16 autocast on a CPU the matmul kernels are compiled once per input shape, and
packed rows of every possible width would compile (and keep) one each: there `pack` is given a
``width`` from `ladder_width`, and the tokens past the last text are fill, a span of their own
that no text attends to.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Packed(NamedTuple):
    """A packed batch. Text ``i`` is ``input_ids[0, starts[i] : starts[i] + lengths[i]]``."""

    input_ids: torch.Tensor  # (1, W) token ids
    positions: torch.Tensor  # (1, W) each token's position within its own text
    segments: torch.Tensor  # (1, W) the text each token belongs to; -1 for fill
    starts: torch.Tensor  # (N,) the column of each text's first token
    lengths: torch.Tensor  # (N,) each text's tokens
    spans: torch.Tensor  # (N,) or (N + 1,) with fill, on the CPU: how attention splits the row

    def to(self, device: torch.device) -> Packed:
        return Packed(*(t.to(device) for t in self[:-1]), self.spans)

    def pooled_columns(self, pooling: str) -> torch.Tensor:
        """The column each text's single-position pooling reads: (N,)."""
        if pooling == "first":
            return self.starts
        if pooling == "last-token":
            return self.starts + self.lengths - 1
        raise ValueError(f"packing pools 'first', 'last-token' or 'mean', not {pooling!r}")

    def keys(self, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys the query of text ``i`` at ``columns[i]`` attends to: ``(keys, seen)``, each
        (N, L) with L the longest text; ``keys[i]`` are text ``i``'s columns (clamped to the
        row), ``seen[i]`` marks those of its own tokens up to the query."""
        longest = int(self.spans[: len(self.starts)].max())
        offsets = torch.arange(longest, device=columns.device)  # (L,)
        keys = (self.starts[:, None] + offsets).clamp(max=self.input_ids.shape[1] - 1)
        return keys, offsets <= (columns - self.starts)[:, None]

    def mean(self, hidden: torch.Tensor) -> torch.Tensor:
        """Each text's mean hidden state: (1, W, C) -> (N, C)."""
        N, real = len(self.lengths), self.segments[0] >= 0
        sums = torch.zeros(N, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
        sums.index_add_(0, self.segments[0][real], hidden[0][real])
        return sums / self.lengths[:, None].to(hidden.dtype)


def pack(
    input_ids: torch.Tensor, lengths: torch.Tensor, width: int | None = None, fill_id: int = 0
) -> Packed:
    """Pack a right-padded batch (B, T) with real ``lengths`` (B,) into one row of ``width``
    tokens (default: exactly the real ones; a wider row ends in fill); see the module
    docstring."""
    total = int(lengths.sum())
    fill = 0 if width is None else width - total
    if fill < 0:
        raise ValueError(f"a packed row of {width} tokens cannot hold {total}")
    spans = torch.cat([lengths.cpu(), torch.tensor([fill])]) if fill else lengths.cpu()
    real = torch.arange(input_ids.shape[1], device=lengths.device) < lengths[:, None]  # (B, T)
    starts = torch.cumsum(lengths, 0) - lengths
    segments = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    positions = torch.arange(total, device=lengths.device) - starts[segments]
    ids = input_ids[real]
    if fill:  # position 0 and a segment of their own: the fill is one more causal span
        ids = torch.cat([ids, ids.new_full((fill,), fill_id)])
        positions = torch.cat([positions, positions.new_zeros(fill)])
        segments = torch.cat([segments, segments.new_full((fill,), -1)])
    return Packed(ids[None], positions[None], segments[None], starts, lengths, spans)


def ladder_width(tokens: int) -> int:
    """``tokens`` rounded up to one of 8 widths per power of two (at most 1/8 more): the packed
    row widths under reduced-precision autocast, a few dozen shapes instead of thousands."""
    step = 1 << max(0, tokens.bit_length() - 4)
    return -(-tokens // step) * step
