"""Our GPT-2 equals transformers' on the same weights, saved the way Hugging Face saves them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import llmclf
from llmclf.errors import ConfigError, UsageError
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.models.weights import load_hf_weights


def build_backbone(name: str, weights="random", **kwargs):
    """The registered backbone ``name``, built by its registry entry."""
    return llmclf.backbones.get(name)(weights, **kwargs)


transformers = pytest.importorskip("transformers")

TINY = {"vocab_size": 300, "context_length": 64, "n_embd": 48, "n_layer": 3, "n_head": 4}
LENGTHS = [5, 17, 11, 1]  # a batch of texts of different lengths, right-padded


def hf_config(vocab_size: int, context_length: int, n_embd: int, n_layer: int, n_head: int):
    return transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=context_length,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=0,
        eos_token_id=0,
    )


def save_hf(model_class, config, directory: Path, noise: bool = True) -> torch.nn.Module:
    """A transformers model saved with ``save_pretrained``: the exact layout of the hub's files.
    With ``noise``, every weight is random (biases and LayerNorms too, which init leaves 0/1)."""
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():
        for param in model.parameters() if noise else []:
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(directory)
    assert (directory / "model.safetensors").is_file()
    return model


def padded_batch(lengths: list[int], vocab_size: int, pad_id: int = 0):
    g = torch.Generator().manual_seed(1)
    ids = torch.full((len(lengths), max(lengths)), pad_id)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(0, vocab_size, (n,), generator=g)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return ids, mask


def assert_same_real_positions(ours: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    diff = (ours - ref).abs()[mask].max().item()
    assert diff <= 1e-4, f"max abs difference {diff}"


@pytest.mark.parametrize("model_class", ["GPT2Model", "GPT2LMHeadModel"])
def test_matches_transformers_on_a_hugging_face_save(tmp_path: Path, model_class: str) -> None:
    ref = save_hf(getattr(transformers, model_class), hf_config(**TINY), tmp_path)
    ours = GPT2(GPT2Config(**TINY)).eval()
    load_hf_weights(ours, tmp_path)  # the directory, as save_pretrained wrote it
    ids, mask = padded_batch(LENGTHS, TINY["vocab_size"])
    with torch.no_grad():
        out = ref(ids, attention_mask=mask.long(), output_hidden_states=True)
        expected = out.hidden_states[-1]  # GPT2Model's last_hidden_state, after ln_f
        assert_same_real_positions(ours(ids), expected, mask)


def test_matches_transformers_at_the_real_gpt2_small_shape(tmp_path: Path) -> None:
    ref = save_hf(transformers.GPT2Model, transformers.GPT2Config(), tmp_path, noise=False)
    ours = build_backbone("gpt2-small", tmp_path).eval()
    assert sum(p.numel() for p in ours.parameters()) == 124_439_808
    ids, mask = padded_batch([9, 4], vocab_size=50257)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask.long()).last_hidden_state
        assert_same_real_positions(ours(ids), expected, mask)


def test_a_later_token_never_changes_an_earlier_hidden_state() -> None:
    model = GPT2(GPT2Config(**TINY)).eval()
    ids = torch.randint(0, TINY["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(2))
    changed = ids.clone()
    t = 7
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % TINY["vocab_size"]
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_run_blocks_splits_the_forward_pass_anywhere() -> None:
    model = GPT2(GPT2Config(**TINY)).eval()
    ids = torch.randint(0, TINY["vocab_size"], (2, 9))
    with torch.no_grad():
        full = model(ids)
        for k in range(TINY["n_layer"] + 1):
            x = model.run_blocks(model.run_blocks(model.embed(ids), 0, k), k)
            assert torch.equal(model.ln_f(x), full)


def test_input_longer_than_the_context_is_a_clear_error() -> None:
    model = GPT2(GPT2Config(**TINY))
    with pytest.raises(UsageError, match=r"65 tokens .* holds 64; truncate"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(UsageError, match=r"\(batch, tokens\)"):
        model(torch.zeros(65, dtype=torch.long))


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_layer", 0), ("n_head", 5), ("dropout", 1.0), ("vocab_size", 2.5)],
)
def test_config_names_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"GPT2Config\.\w+ .*{field}|GPT2Config\.{field}"):
        GPT2Config(**{**TINY, field: value})


def test_dropout_is_active_in_training_mode_only() -> None:
    model = build_backbone("gpt2-tiny", dropout=0.5)
    assert model.config.dropout == 0.5
    ids = torch.randint(0, 50257, (1, 8))
    with torch.no_grad():
        assert not torch.equal(model.train()(ids), model(ids))
        assert torch.equal(model.eval()(ids), model(ids))
