"""Qwen3 (dense), written from scratch: the Llama recipe (`.llama`) plus one RMSNorm on every
query head and every key head (``self_attn.q_norm``, ``self_attn.k_norm``), applied before the
rotary embedding.

Qwen3 also fixes ``head_dim`` independently of the width (Qwen3-0.6B: 16 heads of 128 in a
1024-wide model), which `llmclf.models.llama.LlamaConfig` already allows. Everything else
(SwiGLU MLP, grouped-query attention, RoPE, module names) is Llama's, so the model is
`llmclf.models.llama.Llama` built with a `Qwen3Config`, whose ``qk_norm`` switches the norms
on. Sliding-window attention, off in every released dense Qwen3, is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ConfigError
from .llama import Llama, LlamaConfig


@dataclass
class Qwen3Config(LlamaConfig):
    """The size of a Qwen3 model, in Hugging Face's ``config.json`` field names.

    The defaults are Qwen3-0.6B as Alibaba released it; `from_hf_config` reads any
    ``config.json`` of ``model_type`` ``qwen3``.
    """

    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int | None = 128  # not hidden_size // num_attention_heads (that would be 64)
    max_position_embeddings: int = 40960
    rope_theta: float = 1000000.0
    rope_scaling: dict[str, Any] | None = None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True

    model_type: ClassVar[str] = "qwen3"
    qk_norm: ClassVar[bool] = True
    hf_defaults: ClassVar[dict[str, Any]] = {
        **LlamaConfig.hf_defaults,
        "max_position_embeddings": 32768,
        "head_dim": 128,
    }

    @classmethod
    def _check_hf(cls, hf: dict[str, Any], where: str) -> None:
        if hf.get("use_sliding_window"):
            raise ConfigError(
                f"the config{where} uses sliding-window attention, which llmclf's Qwen3 does "
                "not implement; set use_sliding_window to false"
            )


class Qwen3(Llama):
    """A Qwen3 decoder without its language-model head: (B, T) ids -> (B, T, C) states."""

    config_class: ClassVar[type[LlamaConfig]] = Qwen3Config
