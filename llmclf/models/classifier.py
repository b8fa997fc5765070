"""A sequence classifier: a GPT-2 backbone, a pooling of its hidden states, a linear head.

As in the book (and torchtune's ``classifier_model``), the 50,257-way language-model output is
replaced by ``nn.Linear(C, num_classes)`` on one vector per text. Which vector is the pooling:

- ``last``: position T-1 of the padded batch (the book's; under right padding this may be a
  padding token, so a text's logits depend on how much it was padded: training allows it only
  with a fixed-width padding policy, ``pad-dataset`` or ``truncate-dataset``);
- ``last-token``: each text's last real token, from ``lengths`` (the default). With causal
  attention this is exact under any right padding, which is what per-batch padding relies on;
- ``first``: position 0 (under causal attention it has seen only the first token);
- ``mean``: the mean over each text's real tokens;
- ``mean-all``: the mean over every position of the batch, padding included (the book's
  ``--average_embeddings``). Like ``last`` it reads padding, so training allows it only with a
  fixed-width padding policy.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError
from ..options import POOLINGS
from .gpt2 import GPT2
from .packing import Packed


def pool(hidden: torch.Tensor, lengths: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """One vector per text: (B, T, C) hidden states -> (B, C).

    ``lengths`` (B,) counts each text's real tokens (the rest is right padding); ``None`` means
    every position is real.
    """
    B, T, _ = hidden.shape
    if pooling == "last" or (pooling == "last-token" and lengths is None):
        return hidden[:, -1]  # (B, C)
    if pooling == "first":
        return hidden[:, 0]  # (B, C)
    if pooling not in POOLINGS:
        raise UsageError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if lengths is None or pooling == "mean-all":
        return hidden.mean(dim=1)  # (B, C): every position, padding included
    if lengths.shape != (B,):
        raise UsageError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if pooling == "last-token":
        return hidden[torch.arange(B, device=hidden.device), lengths - 1]  # (B, C)
    real = torch.arange(T, device=hidden.device) < lengths[:, None]  # (B, T)
    summed = (hidden * real[..., None].to(hidden.dtype)).sum(dim=1)  # (B, C)
    return summed / lengths[:, None].clamp(min=1).to(hidden.dtype)  # (B, C)


def pooled_positions(
    hidden: torch.Tensor, lengths: torch.Tensor | None, pooling: str
) -> torch.Tensor:
    """The position each row's single-position pooling reads: (B,) for last, last-token, first."""
    B, T, _ = hidden.shape
    if pooling == "first":
        return torch.zeros(B, dtype=torch.long, device=hidden.device)
    if pooling == "last" or lengths is None:
        return torch.full((B,), T - 1, dtype=torch.long, device=hidden.device)
    if pooling != "last-token":
        raise UsageError(f"pooling {pooling!r} does not read a single position")
    return lengths.to(hidden.device) - 1


class SequenceClassifier(nn.Module):
    """GPT-2 backbone + pooling + ``nn.Linear(C, num_classes)``: token ids -> class logits.

    Args:
        backbone: the GPT-2 whose final hidden states are pooled.
        num_classes: the number of labels.
        pooling: one of :data:`POOLINGS`.
    """

    def __init__(self, backbone: GPT2, num_classes: int, pooling: str = "last-token") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise UsageError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.backbone = backbone
        self.pooling = pooling
        like = next(backbone.parameters())
        self.head = nn.Linear(
            backbone.config.n_embd, num_classes, device=like.device, dtype=like.dtype
        )

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes) for right-padded token ids (B, T) with real ``lengths`` (B,)."""
        return self.forward_from(self.backbone.embed(input_ids), lengths, start_layer=0)

    def forward_packed(
        self, packed: Packed, hidden: torch.Tensor | None = None, start_layer: int = 0
    ) -> torch.Tensor:
        """Logits (N, num_classes) for the N texts of a packed batch (`llmclf.models.packing`):
        the same as `forward` on the texts unpacked, in their order. ``hidden`` (1, W, C), the
        packed texts' states already through blocks ``[0, start_layer)`` (a frozen-trunk
        cache's), starts there instead of at the embeddings, as `forward_from` does."""
        backbone, n_layer = self.backbone, len(self.backbone.h)
        if not getattr(backbone, "packs", False):
            raise UsageError(f"{type(backbone).__name__} does not take packed batches; drop --pack")
        if self.pooling == "last":
            raise UsageError("'last' pooling reads the padded batch's last position; drop --pack")
        x = backbone.embed(packed.input_ids, packed.positions) if hidden is None else hidden
        if self.pooling == "mean":
            x = backbone.run_blocks(x, start_layer, None, packed.spans, packed.positions)
            return self.head(packed.mean(backbone.ln_f(x)))  # (1, W, C) -> (N, num_classes)
        pos = packed.pooled_columns(self.pooling)  # (N,)
        if start_layer >= n_layer:  # every block cached: the final norm and head train
            return self.head(backbone.ln_f(x[0, pos]))  # (N, num_classes)
        x = backbone.run_blocks(x, start_layer, n_layer - 1, packed.spans, packed.positions)
        keys, seen = packed.keys(pos)  # (N, L): each text's columns, those its query sees
        x = backbone.h[n_layer - 1].forward_at(x, pos, keys, seen, packed.positions)
        return self.head(backbone.ln_f(x))  # (N, num_classes)

    def trunk(self, input_ids: torch.Tensor, end_layer: int) -> torch.Tensor:
        """The hidden states after blocks ``[0, end_layer)``: (B, T) -> (B, T, C).

        When those blocks are frozen and dropout is off, this never changes for a text, so it
        can be computed once and fed to `forward_from` every epoch.
        """
        return self.backbone.run_blocks(self.backbone.embed(input_ids), 0, end_layer)

    def forward_from(
        self, hidden: torch.Tensor, lengths: torch.Tensor | None, start_layer: int
    ) -> torch.Tensor:
        """Logits (B, num_classes) from hidden states (B, T, C) already through blocks
        ``[0, start_layer)``: ``forward_from(trunk(ids, k), lengths, k)`` equals
        ``forward(ids, lengths)`` exactly."""
        n_layer = len(self.backbone.h)
        if self.pooling in ("mean", "mean-all") or start_layer >= n_layer:
            x = self.backbone.run_blocks(hidden, start_layer)  # (B, T, C)
            x = self.backbone.ln_f(x)  # (B, T, C)
            return self.head(pool(x, lengths, self.pooling))  # (B, C) -> (B, num_classes)
        # One position is pooled: the last block (and ln_f) need to run there only.
        x = self.backbone.run_blocks(hidden, start_layer, n_layer - 1)  # (B, T, C)
        x = self.backbone.h[n_layer - 1].forward_at(x, pooled_positions(x, lengths, self.pooling))
        return self.head(self.backbone.ln_f(x))  # (B, C) -> (B, num_classes)
