"""The published sizes of the Llama and Qwen3 families, as plain data (no torch, no model code).

Each entry holds the fields of the model's ``config.json`` on the Hugging Face hub that the
architecture reads (copied from the repository's published file), where its files live, and
what a user should know before downloading it (licence, gated access). The tiny sizes are for
tests and quick runs: random weights only, GPT-2's vocabulary so that they run offline with the
GPT-2 tokenizer.

The backbone registry entries are made from this table (integration step of issue 16);
``config_from_hf(SIZES[name].config)`` (`llmclf.models.hf_checkpoint`) gives the dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HF_FILE_URL = "https://huggingface.co/{repo}/resolve/main/{file}"
SINGLE_FILE = ("model.safetensors",)


@dataclass(frozen=True)
class PublishedSize:
    """One size of a supported family, as published (or, with ``repo=None``, random-only)."""

    name: str  # the backbone's registry name
    description: str  # one line for `llmclf list backbones`
    config: dict[str, Any]  # the config.json fields the architecture reads, model_type included
    repo: str | None = None  # the Hugging Face repository; None: random weights only
    weights: tuple[str, ...] = SINGLE_FILE  # weight files in the repository (shards + index)
    tokenizer: str = "tokenizer.json"  # "tokenizer.json" from the repo, or "gpt2" (tiktoken)
    licence: str = ""
    gated: bool = False  # the hub asks for access approval (and HF_TOKEN) before downloading

    def urls(self) -> dict[str, str]:
        """The files to download (weights, config.json, tokenizer.json) -> their URLs."""
        if self.repo is None:
            return {}
        files = [*self.weights, "config.json"]
        if self.tokenizer == "tokenizer.json":
            files.append("tokenizer.json")
        return {name: HF_FILE_URL.format(repo=self.repo, file=name) for name in files}


def _llama(**fields: Any) -> dict[str, Any]:
    return {"model_type": "llama", "hidden_act": "silu", **fields}


def _qwen3(**fields: Any) -> dict[str, Any]:
    return {
        "model_type": "qwen3",
        "hidden_act": "silu",
        "rope_scaling": None,
        "use_sliding_window": False,
        **fields,
    }


_SMOLLM2 = {  # shared by both SmolLM2 sizes
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rope_scaling": None,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
}
_QWEN3 = {  # shared by both Qwen3 sizes
    "vocab_size": 151936,
    "head_dim": 128,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "num_hidden_layers": 28,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "attention_bias": False,
}
_TINY = {  # like gpt2-tiny: 2 layers, 128 wide, GPT-2's vocabulary and context
    "vocab_size": 50257,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # grouped-query attention, as in the real sizes
    "max_position_embeddings": 1024,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}

SIZES: dict[str, PublishedSize] = {
    size.name: size
    for size in (
        PublishedSize(
            "smollm2-135m",
            "SmolLM2 135M: Llama architecture, 30 layers, 576 wide (Hugging Face, 2024)",
            _llama(
                **_SMOLLM2,
                hidden_size=576,
                intermediate_size=1536,
                num_hidden_layers=30,
                num_attention_heads=9,
                num_key_value_heads=3,
                initializer_range=0.041666666666666664,
            ),
            repo="HuggingFaceTB/SmolLM2-135M",
            licence="Apache-2.0",
        ),
        PublishedSize(
            "smollm2-360m",
            "SmolLM2 360M: Llama architecture, 32 layers, 960 wide (Hugging Face, 2024)",
            _llama(
                **_SMOLLM2,
                hidden_size=960,
                intermediate_size=2560,
                num_hidden_layers=32,
                num_attention_heads=15,
                num_key_value_heads=5,
                initializer_range=0.02,
            ),
            repo="HuggingFaceTB/SmolLM2-360M",
            licence="Apache-2.0",
        ),
        PublishedSize(
            "llama-3.2-1b",
            "Llama 3.2 1B: 16 layers, 2048 wide, 128k context (Meta, 2024; gated)",
            _llama(
                vocab_size=128256,
                hidden_size=2048,
                intermediate_size=8192,
                num_hidden_layers=16,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=64,
                max_position_embeddings=131072,
                rope_theta=500000.0,
                rope_scaling={
                    "factor": 32.0,
                    "high_freq_factor": 4.0,
                    "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 8192,
                    "rope_type": "llama3",
                },
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                attention_bias=False,
                mlp_bias=False,
                initializer_range=0.02,
            ),
            repo="meta-llama/Llama-3.2-1B",
            licence="Llama 3.2 Community License",
            gated=True,
        ),
        PublishedSize(
            "llama-tiny",
            "Llama architecture, 2 layers, 128 wide, GPT-2 vocabulary, random weights: tests",
            _llama(**_TINY),
            tokenizer="gpt2",
            licence="MIT (llmclf)",
        ),
        PublishedSize(
            "qwen3-0.6b",
            "Qwen3 0.6B: 28 layers, 1024 wide, qk-norm (Alibaba, 2025)",
            _qwen3(**_QWEN3, hidden_size=1024, intermediate_size=3072),
            repo="Qwen/Qwen3-0.6B",
            licence="Apache-2.0",
        ),
        PublishedSize(
            "qwen3-1.7b",
            "Qwen3 1.7B: 28 layers, 2048 wide, qk-norm (Alibaba, 2025)",
            _qwen3(**_QWEN3, hidden_size=2048, intermediate_size=6144),
            repo="Qwen/Qwen3-1.7B",
            weights=(
                "model.safetensors.index.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
            ),
            licence="Apache-2.0",
        ),
        PublishedSize(
            "qwen3-tiny",
            "Qwen3 architecture, 2 layers, 128 wide, GPT-2 vocabulary, random weights: tests",
            _qwen3(**_TINY, head_dim=64),  # head_dim * heads != width, as in Qwen3-0.6B
            tokenizer="gpt2",
            licence="MIT (llmclf)",
        ),
    )
}
