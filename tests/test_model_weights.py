"""Reading weights: safetensors only, broken files and mismatches are clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llmclf.errors import WeightsError
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.models.weights import (
    hf_state_dict,
    load_hf_weights,
    load_state_dict_file,
    read_weights,
)

CONFIG = GPT2Config(vocab_size=50, context_length=16, n_embd=16, n_layer=2, n_head=2)


@pytest.fixture
def source() -> GPT2:
    torch.manual_seed(0)
    return GPT2(CONFIG)


@pytest.fixture
def weights_file(tmp_path: Path, source: GPT2) -> Path:
    path = tmp_path / "model.safetensors"
    save_file(hf_state_dict(source), path)
    return path


def test_truncated_file_is_a_clear_error(tmp_path: Path, weights_file: Path) -> None:
    data = weights_file.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"truncated\.safetensors .*corrupt or truncated"):
        load_state_dict_file(truncated)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", bytes(range(256)) * 8])
def test_corrupt_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        load_hf_weights(GPT2(CONFIG), tmp_path)
    message = str(info.value)
    assert str(bad) in message and "corrupt or truncated" in message
    assert "\n" not in message


def test_pickles_are_refused_without_being_opened(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle")
    with pytest.raises(WeightsError, match="never unpickles"):
        read_weights(tmp_path)
    with pytest.raises(WeightsError, match="never unpickles"):
        read_weights(tmp_path / "pytorch_model.bin")


def test_missing_files_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no weights file at"):
        read_weights(tmp_path / "nothing.safetensors")
    with pytest.raises(WeightsError, match=r"no model\.safetensors in"):
        read_weights(tmp_path)


def test_mismatches_are_listed_together_in_one_error(source: GPT2) -> None:
    state = hf_state_dict(source)
    del state["h.1.ln_2.bias"]  # missing
    state["h.2.ln_1.weight"] = torch.ones(16)  # unexpected: a third block
    state["wte.weight"] = torch.zeros(60, 16)  # wrong vocabulary size
    state["h.0.mlp.c_fc.weight"] = state["h.0.mlp.c_fc.weight"].t()  # nn.Linear, not Conv1D
    with pytest.raises(WeightsError) as info:
        load_hf_weights(GPT2(CONFIG), state)
    message = str(info.value)
    assert "1 missing: h.1.ln_2.bias" in message
    assert "1 unexpected: h.2.ln_1.weight" in message
    assert "2 with the wrong shape" in message
    assert "wte.weight (60, 16) (expected (50, 16))" in message
    assert "h.0.mlp.c_fc.weight (64, 16) (expected (16, 64))" in message
    assert "n_layer=2" in message and "same size" in message
    assert "\n" not in message


def test_long_lists_are_shortened(source: GPT2) -> None:
    state = {f"extra.{i}": torch.zeros(1) for i in range(30)} | hf_state_dict(source)
    with pytest.raises(WeightsError, match=r"30 unexpected: extra\.0, .*\(\+10 more\)"):
        load_hf_weights(GPT2(CONFIG), state)


def test_masks_and_the_language_model_head_are_ignored(source: GPT2) -> None:
    state = hf_state_dict(source, prefix="transformer.")
    state["lm_head.weight"] = state["transformer.wte.weight"]
    for i in range(CONFIG.n_layer):  # older files keep the causal-mask buffers
        state[f"transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 16, 16)
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    model = GPT2(CONFIG)
    load_hf_weights(model, state)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model(ids), source(ids))


def test_a_sharded_checkpoint_loads(tmp_path: Path, source: GPT2) -> None:
    state = hf_state_dict(source)
    names = sorted(state)
    shards = {
        "model-00001-of-00002.safetensors": names[:10],
        "model-00002-of-00002.safetensors": names[10:],
    }
    weight_map = {}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, tmp_path / file)
        weight_map |= dict.fromkeys(keys, file)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = GPT2(CONFIG)
    load_hf_weights(model, tmp_path)
    assert torch.equal(model.h[1].attn.c_attn.weight, source.h[1].attn.c_attn.weight)


def test_fp16_weights_load_into_an_fp32_model(source: GPT2) -> None:
    state = {k: v.half() for k, v in hf_state_dict(source).items()}
    model = GPT2(CONFIG)
    load_hf_weights(model, state)
    assert model.wte.weight.dtype == torch.float32
    assert torch.equal(model.wte.weight, source.wte.weight.half().float())
