"""GPT-2 written from scratch, nanoGPT style: attention, MLP, block, config, model in one file.

Module attributes carry the names of Hugging Face's checkpoint keys (``wte``, ``wpe``,
``h.{i}.ln_1``, ``h.{i}.attn.c_attn``, ``h.{i}.mlp.c_proj``, ``ln_f``, ...), so loading pretrained
weights is a key-for-key copy plus a transpose of the Conv1D weights (`.weights`).

There is no language-model head: `GPT2.forward` returns the final hidden states and a task
head goes on top (`llmclf.models.classifier.SequenceClassifier`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, UsageError
from ..options import ATTENTIONS
from .attention import attend


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees itself and earlier positions only.

    Because of that, padding placed after a text's last real token never changes the hidden
    states of its real tokens: right padding needs no attention mask. With
    ``config.attention == "bidirectional"`` (the book's "no causal mask" experiment) every
    position sees every other one, padding included, so a text's states depend on how far it is
    padded: training allows it only with a fixed-width padding policy.
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.causal = config.attention == "causal"
        self.dropout = config.dropout
        # query, key and value projections for all heads in one matrix
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.qkv_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)  # output projection
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, spans: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C). ``spans`` (N,), a packed row's text lengths (x is (1, W, C):
        `llmclf.models.packing`), keeps attention within each text (packing is causal only)."""
        B, T, C = x.shape  # batch, tokens, embedding
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        dropout = self.dropout if self.training else 0.0
        y = attend(q, k, v, spans=spans, dropout_p=dropout, causal=self.causal)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def forward_at(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        keys: torch.Tensor | None = None,
        seen: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The output at one position per query, ``pos`` (N,): (B, T, C) -> (N, C).

        Query ``i`` is row ``i`` at ``pos[i]`` and sees every position up to it (causal), so
        this equals ``forward(x)[arange(B), pos]``: keys and values still come from every
        position, but only one query per text is formed and projected. A packed row
        (x (1, W, C)) passes ``keys`` (N, L), the columns query ``i`` at column ``pos[i]`` may
        attend to (its own text's), and ``seen`` (N, L), which of them it does see.
        """
        B, T, C = x.shape
        at = torch.arange(B, device=x.device) if keys is None else torch.zeros_like(pos)  # (N,)
        if type(self.c_attn) is nn.Linear:
            # Project the query rows only; keys and values from the rest of the weight.
            w, b = self.c_attn.weight, self.c_attn.bias  # (3C, C), (3C,)
            q = F.linear(x[at, pos], w[:C], None if b is None else b[:C])  # (N, C)
            k, v = F.linear(x, w[C:], None if b is None else b[C:]).split(C, dim=2)
        else:  # a wrapped projection (LoRA, int8) is applied as a whole
            q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
            q = q[at, pos]  # (N, C)
        N, hs = pos.shape[0], C // self.n_head  # queries, head size
        if keys is not None:  # each query's own text, gathered from the packed row
            k, v = k[0, keys], v[0, keys]  # 2 x (N, L, C)
        elif seen is None:
            seen = torch.arange(T, device=x.device) <= pos[:, None]  # (N, T): causal
            if not self.causal:  # bidirectional: every position (shaped from pos for tracing)
                seen = torch.ones_like(seen)
        q = q.view(N, self.n_head, 1, hs)  # (N, nh, 1, hs)
        k = k.view(N, -1, self.n_head, hs).transpose(1, 2)  # (N, nh, L, hs)
        v = v.view(N, -1, self.n_head, hs).transpose(1, 2)  # (N, nh, L, hs)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=seen[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )  # (N, nh, 1, hs)
        return self.resid_dropout(self.c_proj(y.reshape(N, C)))  # (N, C)


class MLP(nn.Module):
    """Position-wise feed-forward network: expand 4x, GELU (tanh approximation), project back."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gelu(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(x))  # (B, T, C)


class Block(nn.Module):
    """One transformer block, pre-LayerNorm: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, spans: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), spans)  # (B, T, C)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)

    def forward_at(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        keys: torch.Tensor | None = None,
        seen: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``forward(x)`` at one position per text, ``pos`` (N,), without computing the other
        positions: -> (N, C).

        A classifier reads one position of the last block, so its MLP and output projection
        need to run on that position only. ``keys`` and ``seen`` as in
        `CausalSelfAttention.forward_at` (a packed row's); ``positions`` is unused, as in
        `GPT2.run_blocks`.
        """
        at = torch.arange(x.shape[0], device=x.device) if keys is None else torch.zeros_like(pos)
        y = x[at, pos] + self.attn.forward_at(self.ln_1(x), pos, keys, seen)  # (N, C)
        return y + self.mlp(self.ln_2(y))  # (N, C)


@dataclass
class GPT2Config:
    """The size of a GPT-2. The defaults are GPT-2 small (124M), as OpenAI released it."""

    vocab_size: int = 50257  # GPT-2's BPE: 50,000 merges + 256 bytes + <|endoftext|>
    context_length: int = 1024  # the most tokens one input may hold (HF: n_positions)
    n_embd: int = 768  # embedding width C
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; n_embd must divide evenly among them
    dropout: float = 0.0  # embeddings, attention, residuals; 0.0 for fine-tuning, as in the book
    layer_norm_eps: float = 1e-5
    qkv_bias: bool = True  # GPT-2 has biases in its query/key/value projection
    attention: str = "causal"  # or "bidirectional": no causal mask (not how GPT-2 was trained)

    def __post_init__(self) -> None:
        for field in ("vocab_size", "context_length", "n_embd", "n_layer", "n_head"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"GPT2Config.{field} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"GPT2Config.n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GPT2Config.dropout must be in [0, 1), got {self.dropout!r}")
        if self.attention not in ATTENTIONS:
            raise ConfigError(
                f"GPT2Config.attention must be one of {', '.join(ATTENTIONS)}, "
                f"got {self.attention!r}"
            )


class GPT2(nn.Module):
    """GPT-2 without its language-model head: token ids (B, T) -> hidden states (B, T, C).

    The forward pass is split in two public steps so callers can cache the output of frozen
    lower blocks: ``forward(ids) == ln_f(run_blocks(embed(ids)))`` and
    ``run_blocks(x) == run_blocks(run_blocks(x, 0, k), k)`` for every ``k``.

    ``GPT2(config)`` initialises its weights as GPT-2 does from the global RNG; the registered
    builders (`.backbones`) instead use a local, seeded generator.
    """

    # Parameter names the trainable policies and LoRA read (`llmclf.models.trainable`); every
    # backbone class declares its own.
    block_prefix: ClassVar[str] = "h."  # block i's parameters start with "h.{i}."
    final_norm: ClassVar[str] = "ln_f."  # the norm after the last block
    embeddings: ClassVar[tuple[str, ...]] = ("wte.", "wpe.")  # token and position embeddings
    packs: ClassVar[bool] = True  # takes packed batches (`llmclf.models.packing`)
    # LoRA's targets: the attention and MLP projections of every block
    lora_targets: ClassVar[tuple[str, ...]] = (
        "attn.c_attn",
        "attn.c_proj",
        "mlp.c_fc",
        "mlp.c_proj",
    )

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings
        self.wpe = nn.Embedding(config.context_length, config.n_embd)  # position embeddings
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """GPT-2's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorms, and
        the residual projections (``c_proj``) scaled down by 1/sqrt(2 * n_layer)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02, generator=generator)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std, generator=generator)

    def embed(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Token plus position embeddings: (B, T) token ids -> (B, T, C). ``positions`` (B, T)
        gives each token's position (a packed batch's restart with each text); by default
        ``0 .. T-1``."""
        if input_ids.dim() != 2:
            raise UsageError(
                f"GPT2 takes token ids shaped (batch, tokens), got shape {tuple(input_ids.shape)}"
            )
        T, context = input_ids.shape[1], self.config.context_length
        # a packed row may be wider than the context: its texts are not (positions restart)
        if positions is None and input_ids.shape[1] > context:
            raise UsageError(
                f"input has {T} tokens but the model's context holds {context}; "
                f"truncate the texts to at most {context} tokens"
            )
        pos = torch.arange(T, device=input_ids.device) if positions is None else positions
        return self.drop(self.wte(input_ids) + self.wpe(pos))  # (B, T, C) + (T, C) or (B, T, C)

    def run_blocks(
        self,
        x: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        spans: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the blocks ``h[start:end]`` on hidden states x: (B, T, C) -> (B, T, C).

        ``spans`` (N,) splits a packed row into its texts (see `CausalSelfAttention.forward`).
        ``positions`` is unused: GPT-2's enter at `embed` (a rotary backbone's enter in its
        blocks, so the packed forward passes them to every backbone).
        """
        for block in self.h[start:end]:
            x = block(x) if spans is None else block(x, spans)
        return x

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states after the last LayerNorm: (B, T) token ids -> (B, T, C)."""
        return self.ln_f(self.run_blocks(self.embed(input_ids)))  # (B, T, C)


def set_attention(backbone: nn.Module, attention: str) -> None:
    """Make every block of ``backbone`` attend ``causal``ly (the default) or ``bidirectional``ly.

    The mode is recorded in ``backbone.config.attention``, which the model spec saves, so a
    loaded run attends as it was trained. Only GPT-2 has the option: another architecture is
    refused with a one-line `ConfigError` unless ``attention`` is ``causal``.
    """
    if attention not in ATTENTIONS:
        raise ConfigError(f"attention: must be one of {', '.join(ATTENTIONS)}; got {attention!r}")
    if not isinstance(backbone, GPT2):
        if attention == "causal":
            return
        raise ConfigError(
            f"attention: {attention} needs a GPT-2 backbone; this one is a "
            f"{type(backbone).__name__}, whose attention is causal only; use --attention causal"
        )
    backbone.config.attention = attention
    for block in backbone.h:
        block.attn.causal = attention == "causal"
