"""One model spec, one factory, one writer of llmclf.json; old run directories keep loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import fit_tiny_run, tiny_config, write_topic_csv

import llmclf
from llmclf import Classifier, Trainer
from llmclf.errors import CheckpointError, ConfigError
from llmclf.models.backbones import GPT2Builder
from llmclf.models.spec import (
    Adapters,
    ModelSpec,
    backbone_entry,
    build_classifier,
    load_classifier,
)
from llmclf.models.trainable import freeze, parse_trainable
from llmclf.runs import checkpoint
from llmclf.runs.rundir import RunDirectory

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2, "context_length": 64, "vocab_size": 300}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny_run(
        tmp_path_factory.mktemp("spec"), 10, "--epochs", "1", "--trainable", "lora:r=4,alpha=8"
    )


@pytest.mark.parametrize("adapters", [None, Adapters(r=4, alpha=8.0), Adapters(4, 8.0, blocks=1)])
def test_the_spec_round_trips_through_json(adapters: Adapters | None) -> None:
    spec = ModelSpec("gpt2", dict(TINY), num_classes=3, pooling="mean", adapters=adapters)
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert isinstance(again.adapters, type(adapters))


def test_adapters_on_every_block_are_saved_as_before() -> None:
    """No ``blocks`` key unless it is set, so older llmclf versions still read the spec."""
    spec = ModelSpec("gpt2", dict(TINY), num_classes=3, adapters=Adapters(r=4, alpha=8.0))
    assert spec.to_dict()["adapters"] == {"r": 4, "alpha": 8.0}
    top = ModelSpec("gpt2", dict(TINY), num_classes=3, adapters=Adapters(4, 8.0, blocks=1))
    model = build_classifier(top)
    adapted = {n.split(".")[2] for n, _ in model.named_parameters() if ".lora_" in n}
    assert adapted == {"1"}  # the top block of two


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"architecture": "gpt2", "config": {}}, "model has no 'num_classes' field"),
        ({"architecture": "gpt2", "config": {}, "num_classes": 1}, "model.num_classes must be"),
        ({"architecture": "gpt2", "config": {}, "num_classes": 2, "head": 1}, "unknown field"),
        (
            {"architecture": "gpt2", "config": {}, "num_classes": 2, "adapters": {"r": 0}},
            "model.adapters.r must be an integer >= 1",
        ),
    ],
)
def test_a_bad_spec_names_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_dict(data)


def test_training_and_loading_build_the_same_model() -> None:
    spec = ModelSpec("gpt2", dict(TINY), num_classes=3, adapters=Adapters(r=4, alpha=8.0))
    builder = GPT2Builder("spec-test", **TINY)
    torch.manual_seed(0)
    trained = build_classifier(spec, backbone=builder(seed=3), seed=3)
    report = freeze(trained, parse_trainable("lora:r=4,alpha=8"))
    assert set(report.parameters) == {n for n, p in trained.named_parameters() if p.requires_grad}
    assert all(name.startswith("head.") or ".lora_" in name for name in report.parameters)

    loaded = load_classifier(spec, trained.state_dict())
    want, got = trained.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    lengths = torch.tensor([4, 2])
    with torch.no_grad():
        assert torch.equal(trained.eval()(ids, lengths), loaded.eval()(ids, lengths))


def test_a_saved_run_rebuilds_from_its_spec(lora_run: Path) -> None:
    manifest = RunDirectory(lora_run).read_manifest()
    spec = ModelSpec.from_dict(manifest["model"])
    assert spec.adapters == Adapters(r=4, alpha=8.0)
    assert manifest["schema_version"] == checkpoint.SCHEMA_VERSION == 2
    weights = checkpoint.load_tensors(lora_run / "model.safetensors")
    with torch.device("meta"):
        model = build_classifier(spec)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in weights.items()
    }


def test_a_registry_entry_naming_an_unknown_architecture_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class MambaBuilder(GPT2Builder):
        architecture = "mamba"

    monkeypatch.setattr(llmclf.backbones, "_entries", dict(llmclf.backbones._entries))
    llmclf.backbones.register("mamba-test", MambaBuilder("mamba-test", **TINY))
    expected = r"backbone 'mamba-test': unknown architecture 'mamba'; llmclf knows gpt2"
    with pytest.raises(ConfigError, match=expected):
        backbone_entry("mamba-test")
    config = tiny_config(tmp_path / "missing.csv", tmp_path / "run", backbone="mamba-test")
    with pytest.raises(ConfigError, match=expected):  # before any data work: no such file yet
        Trainer(config).fit()


def test_a_backbone_of_another_class_than_its_architecture_is_refused() -> None:
    spec = ModelSpec("gpt2", dict(TINY), num_classes=2)
    with pytest.raises(ConfigError, match="the backbone is a Linear, not a GPT2"):
        build_classifier(spec, backbone=torch.nn.Linear(2, 2))


def _as_schema_1(manifest: dict) -> dict:
    """The manifest as llmclf wrote it before the model spec (schema 1)."""
    model = manifest["model"]
    old = {k: v for k, v in manifest.items() if k != "model"}
    old["schema_version"] = 1
    old["backbone"] = {
        "name": manifest["backbone"]["name"],
        "class": "GPT2",
        "config": model["config"],
    }
    old["pooling"] = model["pooling"]
    old["head"] = {"type": "linear", "num_classes": model["num_classes"]}
    return old


def test_an_old_format_run_loads_and_predicts_the_same(lora_run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(lora_run, old)
    manifest = json.loads((lora_run / "llmclf.json").read_text())
    (old / "llmclf.json").write_text(json.dumps(_as_schema_1(manifest)))
    texts = ["refund my invoice", "the printer is on fire", "reset my password"]
    now = Classifier.load(lora_run, device="cpu")
    before = Classifier.load(old, device="cpu")
    assert torch.equal(before.predict_proba(texts), now.predict_proba(texts))
    assert before.info() == now.info()

    old_manifest = _as_schema_1(manifest)
    old_manifest["backbone"]["class"] = "GPTNeo"
    (old / "llmclf.json").write_text(json.dumps(old_manifest))
    with pytest.raises(CheckpointError, match="uses backbone class GPTNeo; only GPT2"):
        Classifier.load(old, device="cpu")


def test_a_newer_schema_is_refused_with_one_line(lora_run: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(lora_run, new)
    manifest = json.loads((lora_run / "llmclf.json").read_text())
    (new / "llmclf.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(CheckpointError, match="checkpoint schema 99; this llmclf reads schema 1"):
        Classifier.load(new, device="cpu")


def test_every_write_of_llmclf_json_goes_through_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = RunDirectory._write_manifest
    inside: list[bool] = []
    writes: list[bool] = []

    def owned(self: RunDirectory) -> None:
        inside.append(True)
        try:
            owner(self)
        finally:
            inside.pop()

    original = checkpoint.write_json

    def recording(path: Path, data: object) -> None:
        if Path(path).name == "llmclf.json":
            writes.append(bool(inside))
        original(path, data)

    monkeypatch.setattr(RunDirectory, "_write_manifest", owned)
    monkeypatch.setattr(checkpoint, "write_json", recording)
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    config = tiny_config(data, tmp_path / "run", epochs=2, save="last")
    Trainer(config).fit()
    Trainer(config).fit(overwrite=True)  # through the staging directory
    assert len(writes) >= 8 and all(writes)
    manifest = json.loads((tmp_path / "run" / "llmclf.json").read_text())
    assert manifest["complete"] is True and manifest["epochs_completed"] == 2
    assert manifest["model_epoch"] == 2
