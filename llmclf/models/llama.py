"""The Llama family written from scratch, nanoGPT style: norm, rotary, attention, MLP, block,
config, model in one file. SmolLM2 and Llama 3.x are this architecture; Qwen3 adds one norm
(`.qwen3`).

Module attributes carry the names of Hugging Face's checkpoint keys (``embed_tokens``,
``layers.{i}.self_attn.q_proj``, ``layers.{i}.mlp.gate_proj``, ``layers.{i}.input_layernorm``,
``norm``, ...), so loading a checkpoint is a key-for-key copy (`.hf_checkpoint`), with no
transposes at all: Hugging Face stores these projections as ``nn.Linear``.

What differs from GPT-2 (`.gpt2`): RMSNorm instead of LayerNorm, no position embeddings but
rotary ones applied to queries and keys inside attention (RoPE, with Llama 3's frequency
scaling), a gated SiLU MLP (SwiGLU), and grouped-query attention (fewer key/value heads than
query heads). There is no language-model head, so tied input/output embeddings change nothing
here; the config still records them.

The model offers what `llmclf.models.classifier.SequenceClassifier` uses of GPT-2: ``embed``,
``run_blocks``, ``h`` (the blocks, an alias of ``layers``), ``h[i].forward_at``, ``ln_f`` (an
alias of ``norm``), ``config.n_embd`` and ``config.context_length``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, UsageError
from .attention import attend

ROPE_TYPES = ("default", "llama3")  # rope_scaling types implemented here
LLAMA3_SCALING_KEYS = (
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
)
LLAMA3_2_SCALING = {  # Llama 3.2's rope_scaling, as its config.json has it
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (no mean, no bias), computed in float32 as
    Hugging Face does, so bf16 inputs give the reference's result."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


# ----- rotary position embeddings ---------------------------------------------------------------
def rope_inv_freq(config: LlamaConfig, device: torch.device | None = None) -> torch.Tensor:
    """The rotation frequency of each pair of head dimensions: (head_dim / 2,) float32.

    ``rope_theta ** (-2i / head_dim)``; with ``rope_scaling`` of type ``llama3``, low
    frequencies (wavelengths beyond the original context / low_freq_factor) are divided by
    ``factor``, high ones (below original context / high_freq_factor) kept, and the band
    between blended smoothly.
    """
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    inv_freq = 1.0 / (config.rope_theta**exponents)
    scaling = config.rope_scaling
    if not scaling or _rope_type(scaling) == "default":
        return inv_freq
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_context / high) & (wavelen <= old_context / low)
    return torch.where(medium, blended, scaled)


def rope_cos_sin(config: LlamaConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of each position's rotation angles: (..., head_dim) float32 each.

    ``positions`` holds token positions (any shape). The angles are repeated over the two
    halves of the head, the layout `rotate_half` expects.
    """
    inv_freq = rope_inv_freq(config, positions.device)  # (hd/2,)
    angles = positions.float()[..., None] * inv_freq  # (..., hd/2)
    angles = torch.cat((angles, angles), dim=-1)  # (..., hd)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x (..., T, hd) by their positions' angles (T, hd) or broadcastable."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


# ----- the transformer --------------------------------------------------------------------------
class Attention(nn.Module):
    """Causal grouped-query self-attention with rotary positions.

    ``num_attention_heads`` query heads share ``num_key_value_heads`` key/value heads (each
    key/value head serves ``n_rep`` query heads). With ``qk_norm`` (Qwen3) every query and key
    head is RMS-normalised before the rotation. Positions are 0..T-1 whatever follows a text,
    and attention is causal, so right padding never changes the states of real tokens. A packed
    batch (`llmclf.models.packing`) passes each token's own angles, (1, 1, W, hd), and its
    texts' lengths, ``spans``, which keep attention within each text.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = hd = config.head_dim
        self.dropout = config.dropout
        C, bias = config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(C, self.n_head * hd, bias=bias)
        self.k_proj = nn.Linear(C, self.n_kv_head * hd, bias=bias)
        self.v_proj = nn.Linear(C, self.n_kv_head * hd, bias=bias)
        self.o_proj = nn.Linear(self.n_head * hd, C, bias=bias)
        self.qk_norm = config.qk_norm
        if self.qk_norm:
            self.q_norm = RMSNorm(hd, config.rms_norm_eps)
            self.k_norm = RMSNorm(hd, config.rms_norm_eps)
        self.resid_dropout = nn.Dropout(config.dropout)

    def _keys_values(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated keys and values for every position, one copy per query head."""
        B, T, _ = x.shape
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, nkv, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, nkv, hd)
        if self.qk_norm:
            k = self.k_norm(k)
        k = apply_rope(k.transpose(1, 2), cos, sin)  # (B, nkv, T, hd)
        n_rep = self.n_head // self.n_kv_head
        return _repeat_kv(k, n_rep), _repeat_kv(v.transpose(1, 2), n_rep)  # 2 x (B, nh, T, hd)

    def _queries(self, q: torch.Tensor) -> torch.Tensor:
        """Split projected queries (..., nh * hd) into heads (..., nh, hd), normed if qk_norm."""
        q = q.view(*q.shape[:-1], self.n_head, self.head_dim)
        return self.q_norm(q) if self.qk_norm else q

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        spans: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, C) hidden states, (T, hd) or (B, 1, T, hd) rotary cos/sin -> (B, T, C).
        ``spans`` (N,), a packed row's text lengths (x is (1, W, C)), keeps attention within
        each text."""
        B, T, _ = x.shape
        q = apply_rope(self._queries(self.q_proj(x)).transpose(1, 2), cos, sin)  # (B, nh, T, hd)
        k, v = self._keys_values(x, cos, sin)  # 2 x (B, nh, T, hd)
        dropout = self.dropout if self.training else 0.0
        y = attend(q, k, v, spans=spans, dropout_p=dropout)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, nh * hd)
        return self.resid_dropout(self.o_proj(y))

    def forward_at(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys: torch.Tensor | None = None,
        seen: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The output at one position per query, ``pos`` (N,): (B, T, C) -> (N, C).

        Query ``i`` is row ``i`` at ``pos[i]`` and sees every position up to it (causal), so
        this equals ``forward(x, cos, sin)[arange(B), pos]``: keys and values come from every
        position, but only one query per text is formed, rotated and projected. A packed row
        (x (1, W, C)) passes ``keys`` (N, L), the columns query ``i`` at column ``pos[i]`` may
        attend to (its own text's), and ``seen`` (N, L), which of them it does see.
        """
        B, T, _ = x.shape
        at = torch.arange(B, device=x.device) if keys is None else torch.zeros_like(pos)  # (N,)
        N = at.shape[0]
        q = self._queries(self.q_proj(x[at, pos]))  # (N, nh, hd)
        # the query's angles: (T, hd) are every row's, (B, 1, T, hd) each row's own
        shared = cos.dim() == 2
        q_cos, q_sin = (cos[pos], sin[pos]) if shared else (cos[at, 0, pos], sin[at, 0, pos])
        q = apply_rope(q, q_cos[:, None], q_sin[:, None])[:, :, None]  # (N, nh, 1, hd)
        k, v = self._keys_values(x, cos, sin)  # 2 x (B, nh, T, hd)
        if keys is not None:  # each query's own text, gathered from the packed row
            k, v = k[0][:, keys].transpose(0, 1), v[0][:, keys].transpose(0, 1)  # (N, nh, L, hd)
        elif seen is None:
            seen = torch.arange(T, device=x.device) <= pos[:, None]  # (N, T): causal
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=seen[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )  # (N, nh, 1, hd)
        return self.resid_dropout(self.o_proj(y.reshape(N, self.n_head * self.head_dim)))


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, nkv, T, hd) -> (B, nkv * n_rep, T, hd): each key/value head serves n_rep queries."""
    if n_rep == 1:
        return x
    B, n_kv, T, hd = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, T, hd).reshape(B, n_kv * n_rep, T, hd)


class MLP(nn.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        C, F_, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(C, F_, bias=bias)
        self.up_proj = nn.Linear(C, F_, bias=bias)
        self.down_proj = nn.Linear(F_, C, bias=bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class Block(nn.Module):
    """One decoder layer, pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config  # for the rotary angles of forward_at
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        spans: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C). ``rope`` is `block_rope`'s angles if given (default:
        positions 0..T-1); ``spans`` as in `Attention.forward`."""
        cos, sin = rope if rope is not None else block_rope(self.config, x)
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, spans)  # (B, T, C)
        return x + self.mlp(self.post_attention_layernorm(x))  # (B, T, C)

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

        ``keys`` and ``seen`` as in `Attention.forward_at` (a packed row's); ``positions``
        (B, T), each token's own position (a packed row's), as in `Llama.run_blocks`.
        """
        cos, sin = block_rope(self.config, x, positions)
        at = torch.arange(x.shape[0], device=x.device) if keys is None else torch.zeros_like(pos)
        attn = self.self_attn.forward_at(self.input_layernorm(x), pos, cos, sin, keys, seen)
        y = x[at, pos] + attn  # (N, C)
        return y + self.mlp(self.post_attention_layernorm(y))  # (N, C)


def block_rope(
    config: LlamaConfig, x: torch.Tensor, positions: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotary angles of hidden states x (B, T, C): of positions 0..T-1, (T, hd), or of
    each token's own ``positions`` (B, T), shaped (B, 1, T, hd) to broadcast over heads."""
    if positions is None:
        return rope_cos_sin(config, torch.arange(x.shape[1], device=x.device))
    cos, sin = rope_cos_sin(config, positions)  # 2 x (B, T, hd)
    return cos[:, None], sin[:, None]


# ----- config -----------------------------------------------------------------------------------
@dataclass
class LlamaConfig:
    """The size of a Llama-family model, in the field names of Hugging Face's ``config.json``.

    The defaults are Llama 3.2 1B as Meta released it. `from_hf_config` reads any
    ``config.json`` of ``model_type`` ``llama`` (SmolLM2, Llama 3.x, TinyLlama, ...).
    """

    vocab_size: int = 128256
    hidden_size: int = 2048  # embedding width C
    intermediate_size: int = 8192  # width of the SwiGLU MLP
    num_hidden_layers: int = 16
    num_attention_heads: int = 32  # query heads
    num_key_value_heads: int = 8  # key/value heads, shared by groups of query heads (GQA)
    head_dim: int | None = 64  # None: hidden_size // num_attention_heads
    max_position_embeddings: int = 131072  # the context: the most tokens one input may hold
    rope_theta: float = 500000.0  # base of the rotary frequencies
    # None, or {"rope_type": "llama3", "factor": ...}: Llama 3's stretch of long wavelengths
    rope_scaling: dict[str, Any] | None = field(default_factory=lambda: dict(LLAMA3_2_SCALING))
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True  # no LM head here, so recorded only
    attention_bias: bool = False  # biases in q/k/v/o projections
    mlp_bias: bool = False  # biases in gate/up/down projections
    initializer_range: float = 0.02  # std of the normal init of a randomly initialised model
    dropout: float = 0.0  # attention and residual dropout (HF: attention_dropout); 0.0 to fine-tune

    model_type: ClassVar[str] = "llama"
    qk_norm: ClassVar[bool] = False  # RMSNorm on each query and key head (Qwen3)
    # What Hugging Face assumes when a config.json leaves a field out.
    hf_defaults: ClassVar[dict[str, Any]] = {
        "max_position_embeddings": 2048,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
    }
    required: ClassVar[tuple[str, ...]] = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    )

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in (*self.required, "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}.{key} must be a positive integer, got {value!r}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ConfigError(
                    f"{name}.hidden_size ({self.hidden_size}) must be a multiple of "
                    f"num_attention_heads ({self.num_attention_heads}), or set head_dim"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if not isinstance(self.head_dim, int) or self.head_dim < 2 or self.head_dim % 2:
            raise ConfigError(
                f"{name}.head_dim must be a positive even integer, got {self.head_dim!r}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"{name}.num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if not self.rope_theta > 0 or not self.rms_norm_eps > 0:
            raise ConfigError(f"{name}.rope_theta and rms_norm_eps must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{name}.dropout must be in [0, 1), got {self.dropout!r}")
        self._check_rope_scaling(name)

    def _check_rope_scaling(self, name: str) -> None:
        scaling = self.rope_scaling
        if scaling is None:
            return
        if not isinstance(scaling, Mapping):
            raise ConfigError(f"{name}.rope_scaling must be a dict or None, got {scaling!r}")
        kind = _rope_type(scaling)
        if kind not in ROPE_TYPES:
            raise ConfigError(
                f"{name}.rope_scaling has type {kind!r}, which llmclf does not implement; "
                f"supported: {', '.join(ROPE_TYPES)}"
            )
        missing = [key for key in LLAMA3_SCALING_KEYS if key not in scaling]
        if kind == "llama3" and missing:
            raise ConfigError(f"{name}.rope_scaling of type llama3 lacks {', '.join(missing)}")
        if kind == "llama3" and not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
            raise ConfigError(f"{name}.rope_scaling needs high_freq_factor > low_freq_factor")

    # The names `llmclf.models.classifier.SequenceClassifier` and the trainer use (GPT-2's).
    @property
    def n_embd(self) -> int:
        return self.hidden_size

    @property
    def context_length(self) -> int:
        return self.max_position_embeddings

    @property
    def n_layer(self) -> int:
        return self.num_hidden_layers

    @classmethod
    def from_hf_config(cls, source: Mapping[str, Any] | str | Path) -> LlamaConfig:
        """The config of a Hugging Face ``config.json``: a dict, the file, or its directory.

        Its ``model_type`` must be this family's. Fields it leaves out take Hugging Face's
        defaults; fields llmclf does not need (``torch_dtype``, ``bos_token_id``, ...) are
        ignored; features it does not implement are a `ConfigError`.
        """
        hf = dict(_read_hf_config(source))
        where = "" if isinstance(source, Mapping) else f" in {source}"
        if hf.get("model_type") != cls.model_type:
            raise ConfigError(
                f"the config{where} has model_type {hf.get('model_type')!r}, not "
                f"{cls.model_type!r}; use the family that matches it"
            )
        missing = [key for key in cls.required if key not in hf]
        if missing:
            raise ConfigError(f"the config{where} lacks {', '.join(missing)}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ConfigError(
                f"the config{where} uses hidden_act {hf['hidden_act']!r}; llmclf "
                "implements silu only"
            )
        cls._check_hf(hf, where)
        values = {"head_dim": None, **cls.hf_defaults}
        values["num_key_value_heads"] = hf["num_attention_heads"]
        names = {f.name for f in fields(cls)} - {"dropout"}
        values.update({k: v for k, v in hf.items() if k in names and v is not None})
        # transformers >= 5 writes rope_theta and the scaling in one dict, rope_parameters
        for key in ("rope_scaling", "rope_parameters"):
            if isinstance(hf.get(key), Mapping):
                values.update(_from_rope_parameters(hf[key]))
        values["dropout"] = float(hf.get("attention_dropout") or 0.0)
        return cls(**values)

    @classmethod
    def _check_hf(cls, hf: dict[str, Any], where: str) -> None:
        """Refuse a config.json that needs something this family's code does not do."""

    def to_hf_config(self) -> dict[str, Any]:
        """This config as a Hugging Face ``config.json`` dict (``model_type`` included)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dropout"}
        return {"model_type": self.model_type, **values, "attention_dropout": self.dropout}


def _rope_type(scaling: Mapping[str, Any]) -> str:
    return scaling.get("rope_type", scaling.get("type", "default"))


def _from_rope_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """rope_theta and rope_scaling (a copy, or None for the default type) from either layout."""
    params = dict(params)
    out: dict[str, Any] = {}
    if "rope_theta" in params:
        out["rope_theta"] = params.pop("rope_theta")
    out["rope_scaling"] = None if _rope_type(params) == "default" else params
    return out


def _read_hf_config(source: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the model config {path} ({exc}); pass its config.json"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; pass a Hugging Face config.json")
    return data


# ----- model ------------------------------------------------------------------------------------
class Llama(nn.Module):
    """A Llama-family decoder without its language-model head: (B, T) ids -> (B, T, C) states.

    As for GPT-2, ``forward(ids) == ln_f(run_blocks(embed(ids)))`` and
    ``run_blocks(x) == run_blocks(run_blocks(x, 0, k), k)`` for every ``k``, so the output of
    frozen lower blocks can be cached. ``Llama(config)`` initialises its weights from the global
    RNG; pass a generator to `init_weights` for a local, seeded one.
    """

    config_class: ClassVar[type[LlamaConfig]] = LlamaConfig
    # Parameter names the trainable policies read (`llmclf.models.trainable`), as GPT-2 declares.
    block_prefix: ClassVar[str] = "layers."  # block i's parameters start with "layers.{i}."
    final_norm: ClassVar[str] = "norm."  # the RMSNorm after the last block
    embeddings: ClassVar[tuple[str, ...]] = ("embed_tokens.",)
    packs: ClassVar[bool] = True  # takes packed batches (`llmclf.models.packing`)
    # The attention and MLP projections of every block: LoRA's targets for this family.
    lora_targets: ClassVar[tuple[str, ...]] = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.init_weights()

    @property
    def h(self) -> nn.ModuleList:
        """The blocks, under GPT-2's name (their parameters are named ``layers.{i}.``)."""
        return self.layers

    @property
    def ln_f(self) -> RMSNorm:
        """The final norm, under GPT-2's name (its parameter is named ``norm.weight``)."""
        return self.norm

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Hugging Face's initialisation: normal(0, initializer_range) weights, zero biases,
        unit norms."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def embed(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings: (B, T) token ids -> (B, T, C). Positions enter in attention
        (`run_blocks`); ``positions`` (a packed batch's) only lift the context check, since a
        packed row may be wider than the context while each of its texts is not."""
        if input_ids.dim() != 2:
            raise UsageError(
                f"{type(self).__name__} takes token ids shaped (batch, tokens), got shape "
                f"{tuple(input_ids.shape)}"
            )
        tokens, context = input_ids.shape[1], self.config.context_length
        if positions is None and tokens > context:
            raise UsageError(
                f"input has {tokens} tokens but the model's context holds {context}; "
                f"truncate the texts to at most {context} tokens"
            )
        return self.drop(self.embed_tokens(input_ids))  # (B, T, C)

    def run_blocks(
        self,
        x: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        spans: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the blocks ``layers[start:end]`` on hidden states x: (B, T, C) -> (B, T, C).

        A packed batch (1, W, C) passes its texts' lengths, ``spans`` (N,), which keep attention
        within each text, and each token's ``positions`` (1, W), which restart with each text.
        """
        blocks = self.layers[start:end]
        if len(blocks) == 0:
            return x
        rope = block_rope(self.config, x, positions)  # (T, hd) or (B, 1, T, hd)
        for block in blocks:
            x = block(x, rope, spans)
        return x

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states after the last norm: (B, T) token ids -> (B, T, C)."""
        return self.norm(self.run_blocks(self.embed(input_ids)))  # (B, T, C)
