"""Trainable policies freeze exactly what they say; LoRA adapters save, reload and merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmclf.errors import UsageError
from llmclf.models.classifier import SequenceClassifier
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.models.lora import LoRALinear, merge_lora
from llmclf.models.trainable import (
    TrainablePolicy,
    apply_trainable,
    parse_trainable,
)

C, V, L = 16, 40, 3  # width, vocabulary, blocks
CONFIG = GPT2Config(vocab_size=V, context_length=12, n_embd=C, n_layer=L, n_head=2)
BLOCK = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C)
HEAD = C * 2 + 2
LN_F = 2 * C
TOTAL = V * C + 12 * C + L * BLOCK + LN_F + HEAD


def make(seed: int = 0) -> SequenceClassifier:
    torch.manual_seed(seed)
    return SequenceClassifier(GPT2(CONFIG), num_classes=2).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return torch.randint(0, V, (3, 12), generator=g), torch.tensor([12, 5, 1])


def block_names(i: int) -> set[str]:
    return {name for name, _ in make().named_parameters() if name.startswith(f"backbone.h.{i}.")}


HEAD_NAMES = {"head.weight", "head.bias"}
LN_F_NAMES = {"backbone.ln_f.weight", "backbone.ln_f.bias"}


@pytest.mark.parametrize(
    ("policy", "names", "trainable", "first"),
    [
        ("head", HEAD_NAMES, HEAD, L),
        ("last-block", block_names(2) | LN_F_NAMES | HEAD_NAMES, BLOCK + LN_F + HEAD, 2),
        (
            "last-blocks:2",
            block_names(1) | block_names(2) | LN_F_NAMES | HEAD_NAMES,
            2 * BLOCK + LN_F + HEAD,
            1,
        ),
        ("last-blocks:3", None, 3 * BLOCK + LN_F + HEAD, 0),
        ("all", None, TOTAL, 0),
    ],
)
def test_policies_freeze_exactly_what_they_say(
    policy: str, names: set[str] | None, trainable: int, first: int
) -> None:
    model = make()
    report = apply_trainable(model, policy)
    grads = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(report.trainable_names) == grads
    if names is not None:
        assert grads == names
    assert report.trainable == trainable
    assert report.total == TOTAL
    assert report.first_trainable_layer == first
    assert report.policy == policy
    assert f"{trainable:,} of {TOTAL:,}" in str(report)


def test_policies_can_be_changed_after_another() -> None:
    model = make()
    apply_trainable(model, "all")
    assert apply_trainable(model, "head").trainable == HEAD


def test_lora_trains_adapters_and_head_only() -> None:
    model = make()
    report = apply_trainable(model, "lora:r=4,alpha=8")
    adapters = {
        f"backbone.h.{i}.{layer}.lora_{m}"
        for i in range(L)
        for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        for m in "AB"
    }
    assert set(report.trainable_names) == adapters | HEAD_NAMES
    per_block = 4 * (C + 3 * C) + 4 * (C + C) + 4 * (C + 4 * C) + 4 * (4 * C + C)  # r*(in+out)
    assert report.trainable == L * per_block + HEAD
    assert report.total == TOTAL + L * per_block
    assert report.first_trainable_layer == 0
    assert "backbone.h.0.attn.c_attn.weight" in model.state_dict()  # the base keeps its key
    layer = model.backbone.h[0].attn.c_attn
    assert isinstance(layer, LoRALinear) and (layer.r, layer.alpha) == (4, 8.0)


@torch.no_grad()
def test_lora_at_initialisation_leaves_outputs_unchanged() -> None:
    model = make()
    ids, lengths = batch()
    before = model(ids, lengths)
    apply_trainable(model, "lora")
    assert torch.equal(model(ids, lengths), before)


def train_adapters(model: SequenceClassifier) -> None:
    """Stand-in for training: move every adapter and the head away from their start."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)


@torch.no_grad()
def test_a_lora_checkpoint_reloads_to_identical_logits(tmp_path: Path) -> None:
    model = make(seed=0)
    apply_trainable(model, "lora:r=4,alpha=16")
    train_adapters(model)
    ids, lengths = batch()
    expected = model(ids, lengths)
    save_file(model.state_dict(), tmp_path / "model.safetensors")

    fresh = make(seed=1)  # other random weights: everything must come from the file
    apply_trainable(fresh, "lora:r=4,alpha=16")
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    assert torch.equal(fresh(ids, lengths), expected)


@torch.no_grad()
def test_merge_lora_keeps_the_logits_and_drops_the_adapters() -> None:
    model = make()
    apply_trainable(model, "lora")
    train_adapters(model)
    ids, lengths = batch()
    expected = model(ids, lengths)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert not any("lora_" in key for key in model.state_dict())
    assert (model(ids, lengths) - expected).abs().max().item() <= 1e-5
    assert set(model.state_dict()) == set(make().state_dict())


def test_applying_the_same_lora_twice_keeps_the_adapters() -> None:
    model = make()
    apply_trainable(model, "lora")
    adapter = model.backbone.h[0].mlp.c_fc.lora_A
    apply_trainable(model, "lora:r=8,alpha=16")
    assert model.backbone.h[0].mlp.c_fc.lora_A is adapter
    with pytest.raises(UsageError, match="already has LoRA adapters with r=8"):
        apply_trainable(model, "lora:r=4")


def test_lora_init_is_seeded_and_leaves_the_global_rng_alone() -> None:
    a, b = make(), make()
    state = torch.random.get_rng_state()
    apply_trainable(a, "lora", seed=7)
    apply_trainable(b, "lora", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.backbone.h[1].attn.c_proj.lora_A, b.backbone.h[1].attn.c_proj.lora_A)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("head", TrainablePolicy("head")),
        (" all ", TrainablePolicy("all")),
        ("last-block", TrainablePolicy("last-blocks", blocks=1)),
        ("last-blocks:4", TrainablePolicy("last-blocks", blocks=4)),
        ("lora", TrainablePolicy("lora", r=8, alpha=16.0)),
        ("lora:r=16,alpha=32", TrainablePolicy("lora", r=16, alpha=32.0)),
        ("lora:alpha=0.5", TrainablePolicy("lora", r=8, alpha=0.5)),
    ],
)
def test_parse_trainable(text: str, parsed: TrainablePolicy) -> None:
    assert parse_trainable(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["", "heads", "last-block:2", "last-blocks", "last-blocks:0", "last-blocks:x", "lora:r=0",
     "lora:r=2.5", "lora:rank=4", "lora:r=4,r=8", "lora:alpha=-1", "all:1"],
)  # fmt: skip
def test_bad_policies_name_the_valid_forms(text: str) -> None:
    with pytest.raises(UsageError, match=r"use one of: head, last-block, last-blocks:N, all, lora"):
        parse_trainable(text)


def test_more_blocks_than_the_backbone_has() -> None:
    with pytest.raises(UsageError, match="asks for 4 blocks but the backbone has 3"):
        apply_trainable(make(), "last-blocks:4")
