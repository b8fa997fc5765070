"""Llama and Qwen3 backbones through everything GPT-2 has: the factory, every trainable policy,
the frozen-trunk cache, the one-position fast path, runs that reload, local HF directories."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from helpers import Collect, tiny_config, write_topic_csv
from safetensors.torch import save_file

import llmclf
from llmclf import Classifier, Trainer
from llmclf.evaluation import evaluate_run
from llmclf.models.classifier import pool
from llmclf.models.llama import Llama, LlamaConfig
from llmclf.models.spec import ModelSpec, backbone_entry, build_classifier
from llmclf.models.trainable import freeze, parse_trainable

FAMILIES = ["llama-tiny", "qwen3-tiny"]


def classifier(name: str, policy: str, seed: int = 3):
    entry = backbone_entry(name)
    backbone = entry.builder("random", seed=seed)
    parsed = parse_trainable(policy)
    spec = ModelSpec(
        architecture=entry.architecture.name,
        config=asdict(backbone.config),
        num_classes=3,
        adapters=parsed.adapters,
    )
    model = build_classifier(spec, backbone=backbone)
    return model, freeze(model, parsed)


# policy -> (parameter name prefixes that train, first trainable block of 2)
POLICIES = {
    "head": ({"head."}, 2),
    "last-block": ({"head.", "backbone.norm.", "backbone.layers.1."}, 1),
    "last-blocks:2": ({"head.", "backbone.norm.", "backbone.layers.1.", "backbone.layers.0."}, 0),
    "all": (
        {"head.", "backbone.norm.", "backbone.layers.1.", "backbone.layers.0.", "backbone.embed_"},
        0,
    ),
}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_policy_freezes_what_it_says(name: str, policy: str) -> None:
    model, report = classifier(name, policy)
    prefixes, first = POLICIES[policy]
    for param_name, param in model.named_parameters():
        assert param.requires_grad == param_name.startswith(tuple(prefixes)), param_name
    assert report.first_trainable_layer == first
    assert {n for n in report.trainable_names if not n.startswith(tuple(prefixes))} == set()


@pytest.mark.parametrize("name", FAMILIES)
def test_lora_wraps_the_seven_projections_and_trains_only_adapters_and_head(name: str) -> None:
    model, report = classifier(name, "lora:r=4,alpha=8")
    projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    adapters = {n for n in report.trainable_names if ".lora_" in n}
    assert len(adapters) == 2 * 2 * len(projections)  # A and B, per projection, per block
    assert {n.split(".")[-2] for n in adapters} == set(projections)
    assert set(report.trainable_names) - adapters == {"head.weight", "head.bias"}
    assert not any(p.requires_grad for n, p in model.named_parameters() if "norm" in n)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("pooling", ["last-token", "first", "last"])
@torch.no_grad()
def test_the_pooled_position_fast_path_is_exact(name: str, pooling: str) -> None:
    """The classifier runs the last block at the pooled position only; the logits equal running
    every block at every position, then pooling."""
    model, _ = classifier(name, "last-block")
    model = model.eval()
    model.pooling = pooling
    torch.manual_seed(0)
    lengths = torch.tensor([3, 17, 1, 9])
    ids = torch.randint(0, 50257, (4, 17))
    backbone = model.backbone
    full = backbone.ln_f(backbone.run_blocks(backbone.embed(ids)))  # (B, T, C)
    expected = model.head(pool(full, lengths, pooling))
    assert (model(ids, lengths) - expected).abs().max().item() <= 1e-5


def _fit(tmp_path: Path, name: str, backbone: str, **changes):
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=25)
    config = tiny_config(
        data, tmp_path / name, backbone=backbone, batch_size=8, eval_every=5, **changes
    )
    reporter = Collect()
    return Trainer(config, reporter=reporter).fit(), reporter


@pytest.mark.parametrize("backbone", ["llama-tiny"])
def test_cache_auto_equals_cache_off_for_the_last_block(tmp_path: Path, backbone: str) -> None:
    cached, events = _fit(tmp_path, "cached", backbone, trainable="last-block")
    plain, _ = _fit(tmp_path, "plain", backbone, trainable="last-block", cache="off")
    assert any(
        e == "model" and d["cache"].startswith("frozen-trunk cache on") for e, d in events.events
    )
    assert len(cached.history) == len(plain.history) > 2
    for a, b in zip(cached.history, plain.history, strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (key, a, b)
    for split in ("train", "validation", "test"):
        for key, value in plain.metrics[split].items():
            if isinstance(value, float):
                assert cached.metrics[split][key] == pytest.approx(value, abs=1e-5), (split, key)


def test_a_qwen3_lora_run_reloads_and_predicts_as_trained(tmp_path: Path) -> None:
    run, _ = _fit(tmp_path, "run", "qwen3-tiny", trainable="lora:r=4,alpha=8")
    manifest = json.loads((run.output_dir / "llmclf.json").read_text())
    assert manifest["model"]["architecture"] == "qwen3"
    assert manifest["model"]["adapters"] == {"r": 4, "alpha": 8.0}
    loaded = Classifier.load(run.output_dir, device="cpu")
    assert type(loaded.model.backbone).__name__ == "Qwen3"
    reloaded = evaluate_run(run.output_dir, device="cpu")  # the saved test rows, reloaded
    assert reloaded["accuracy"] == run.metrics["test"]["accuracy"]
    assert reloaded["loss"] == pytest.approx(run.metrics["test"]["loss"], abs=1e-5)


# ----- a local Hugging Face model directory ---------------------------------------------------
@pytest.fixture
def hf_directory(tmp_path: Path, shared_data: Path) -> Path:
    """A Llama checkpoint as Hugging Face lays it out: config.json, model.safetensors (keys under
    ``model.``) and a tokenizer.json (GPT-2's BPE, built with `tokenizers`)."""
    pytest.importorskip("tokenizers")
    from test_data_hf_tokenizer import build_gpt2_tokenizer

    directory = tmp_path / "my-llama"
    directory.mkdir()
    config = LlamaConfig(
        vocab_size=50257,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=None,
        max_position_embeddings=256,
        rope_theta=10000.0,
        rope_scaling=None,
    )
    torch.manual_seed(11)
    model = Llama(config)
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(config.to_hf_config()))
    build_gpt2_tokenizer(shared_data / "gpt2").save(str(directory / "tokenizer.json"))
    return directory


def test_a_local_hf_directory_is_a_backbone_with_its_own_tokenizer(
    tmp_path: Path, hf_directory: Path
) -> None:
    entry = backbone_entry(str(hf_directory))
    assert (entry.architecture.name, entry.tokenizer) == ("llama", "tokenizer.json")
    built = entry.builder("pretrained")
    from safetensors.torch import load_file

    saved = load_file(hf_directory / "model.safetensors")
    assert torch.equal(
        built.layers[1].mlp.up_proj.weight, saved["model.layers.1.mlp.up_proj.weight"]
    )

    run, _ = _fit(tmp_path, "run", str(hf_directory), weights="pretrained", trainable="last-block")
    out = run.output_dir
    assert (out / "tokenizer.json").read_bytes() == (hf_directory / "tokenizer.json").read_bytes()
    assert json.loads((out / "tokenizer_config.json").read_text())["pad_token"] == "<|endoftext|>"
    assert not (out / "encoder.json").exists()
    manifest = json.loads((out / "llmclf.json").read_text())
    assert manifest["tokenizer"] == {"name": "tokenizer.json", "pad_id": 50256}
    assert manifest["backbone"]["name"] == str(hf_directory)
    hf_directory.rename(tmp_path / "moved")  # the run needs nothing from where it came from
    loaded = Classifier.load(out, device="cpu")
    assert type(loaded.tokenizer).__name__ == "HFTokenizer"
    assert type(loaded.tokenizer).__name__ == "HFTokenizer"
    assert evaluate_run(out, device="cpu")["accuracy"] == run.metrics["test"]["accuracy"]


def test_a_directory_of_another_model_type_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(llmclf.errors.ConfigError, match="model_type 'bert'"):
        backbone_entry(str(tmp_path))
