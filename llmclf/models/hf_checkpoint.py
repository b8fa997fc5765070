"""Hugging Face checkpoints of the Llama and Qwen3 families: config and weights, safetensors only.

A checkpoint directory holds ``config.json`` and either ``model.safetensors`` or shards
(``model-00001-of-00002.safetensors``, ...) listed in ``model.safetensors.index.json``; the
files are found and read by `llmclf.models.weights` (which never unpickles).

Our modules carry Hugging Face's names, so the copy is key for key: a ``model.`` prefix (what
``*ForCausalLM`` and ``*ForSequenceClassification`` save) is stripped; heads (``lm_head``,
``score``: llmclf puts its own on top) and old rotary buffers (``rotary_emb.inv_freq``) are
skipped. bf16 checkpoints are converted to the model's dtype (float32 as built).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, WeightsError
from .llama import Llama, LlamaConfig
from .qwen3 import Qwen3, Qwen3Config
from .weights import mismatch_problems, read_weights

FAMILIES: dict[str, tuple[type[LlamaConfig], type[Llama]]] = {  # model_type -> config, model
    "llama": (LlamaConfig, Llama),
    "qwen3": (Qwen3Config, Qwen3),
}
SKIPPED_PREFIXES = ("lm_head.", "score.")  # heads: llmclf puts its own on top
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)


def config_from_hf(source: Mapping[str, Any] | str | Path) -> LlamaConfig:
    """The config of any supported family from a ``config.json`` (dict, file or directory),
    chosen by its ``model_type``."""
    from .llama import _read_hf_config

    hf = _read_hf_config(source)
    model_type = hf.get("model_type")
    if model_type not in FAMILIES:
        where = "" if isinstance(source, Mapping) else f" in {source}"
        raise ConfigError(
            f"the config{where} has model_type {model_type!r}; llmclf builds "
            f"{', '.join(FAMILIES)} (and GPT-2) models"
        )
    return FAMILIES[model_type][0].from_hf_config(hf)


def model_class(config: LlamaConfig) -> type[Llama]:
    """The architecture class that builds ``config``."""
    return FAMILIES[config.model_type][1]


def load_hf_checkpoint(model: Llama, source: Path | str | Mapping[str, torch.Tensor]) -> None:
    """Copy a Hugging Face checkpoint's weights into ``model`` (a Llama or Qwen3), in place.

    ``source`` is a state dict, a ``.safetensors`` file, a sharded checkpoint's index, or a
    directory holding either. Missing, unexpected and mis-shaped tensors are all reported in
    one `WeightsError`. A model built on the meta device takes the loaded tensors as its
    parameters.
    """
    where = "" if isinstance(source, Mapping) else f" in {source}"
    state = source if isinstance(source, Mapping) else read_weights(Path(source))
    expected = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    found: set[str] = set()
    for key, tensor in state.items():
        name = key.removeprefix("model.")
        if name.startswith(SKIPPED_PREFIXES) or name.endswith(SKIPPED_SUFFIXES):
            continue
        if name not in expected:
            unexpected.append(key)
            continue
        found.add(name)
        want = tuple(expected[name].shape)
        if tuple(tensor.shape) != want:
            wrong_shape.append(f"{key} {tuple(tensor.shape)} (expected {want})")
        else:
            tensors[name] = tensor
    missing = [name for name in expected if name not in found]
    if missing or unexpected or wrong_shape:
        raise _mismatch(model, where, missing, unexpected, wrong_shape)
    on_meta = any(p.is_meta for p in model.parameters())
    for name, tensor in tensors.items():
        tensors[name] = tensor.to(expected[name].dtype).contiguous()
    model.load_state_dict(tensors, strict=True, assign=on_meta)


def _mismatch(
    model: Llama, where: str, missing: list[str], unexpected: list[str], wrong_shape: list[str]
) -> WeightsError:
    c = model.config
    problems = mismatch_problems(missing, unexpected, wrong_shape)
    return WeightsError(
        f"the weights{where} do not fit this {c.model_type} model (num_hidden_layers="
        f"{c.num_hidden_layers}, hidden_size={c.hidden_size}, vocab_size={c.vocab_size}): "
        f"{problems}; use a checkpoint whose config.json matches the backbone"
    )
