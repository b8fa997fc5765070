"""The Python API: plugins in Python, class weights, the cache's memory budget, save policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import Collect, tiny_config, topic_frame, write_topic_csv

import llmclf
from llmclf import Classifier, TrainConfig, Trainer
from llmclf.models.gpt2 import GPT2Config
from llmclf.training import trainer as trainer_module


def tiny(tmp_path: Path, **changes) -> TrainConfig:
    data = changes.pop("dataset", None) or write_topic_csv(tmp_path / "d.csv", rows_per_class=20)
    fields = {"trainable": "last-block", "epochs": 1, "batch_size": 8}
    return tiny_config(data, tmp_path / "run", **{**fields, **changes})


def test_python_registered_dataset_and_plain_function_backbone(tmp_path: Path) -> None:
    @llmclf.datasets.register("tickets-test")
    def tickets():
        """Tickets built in the test."""
        return topic_frame(15)

    @llmclf.backbones.register("micro-test")
    def micro(weights="random", *, dropout=0.0, seed=123):
        """A plugin backbone written as a plain function."""
        from llmclf.models.backbones import build_gpt2

        config = GPT2Config(n_layer=1, n_embd=32, n_head=2, context_length=64)
        return build_gpt2(config, weights, dropout=dropout, seed=seed, name="micro-test", url=None)

    try:
        run = Trainer(tiny(tmp_path), dataset="tickets-test", backbone="micro-test").fit()
        manifest = json.loads((run.output_dir / "llmclf.json").read_text())
        assert manifest["model"]["config"]["n_embd"] == 32
        assert len(Classifier.load(run.output_dir).predict(["refund my invoice"])) == 1
    finally:
        llmclf.datasets.unregister("tickets-test")
        llmclf.backbones.unregister("micro-test")


def test_class_weights_travel_with_the_run(tmp_path: Path) -> None:
    frame = topic_frame(30)
    frame = frame[(frame.label != "account") | (frame.index % 3 == 0)]  # make one class rare
    path = tmp_path / "skewed.csv"
    frame.to_csv(path, index=False)
    run = Trainer(tiny(tmp_path, dataset=str(path), balance="class-weight")).fit()
    weights = json.loads((run.output_dir / "llmclf.json").read_text())["data"]["class_weights"]
    assert len(weights) == 3
    assert weights[0] > weights[1]  # "account" (label id 0) is the rare class


def test_a_cache_over_the_memory_budget_spills_under_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer_module, "available_memory_bytes", lambda: 1024)
    reporter = Collect()
    run = Trainer(tiny(tmp_path, trainable="last-block"), reporter=reporter).fit()
    report = next(d["report"] for e, d in reporter.events if e == "data")
    assert report["cache"].startswith("frozen-trunk cache on")
    assert "in a memory-mapped file in" in report["cache"] and tmp_path.name in report["cache"]
    assert not list(run.output_dir.glob(".llmclf-trunk-cache-*"))  # nothing left behind


def test_save_last_keeps_the_last_epoch(tmp_path: Path) -> None:
    run = Trainer(tiny(tmp_path, epochs=2, save="last")).fit()
    manifest = json.loads((run.output_dir / "llmclf.json").read_text())
    assert manifest["epochs_completed"] == 2
    assert [row["epoch"] for row in run.history if row["kind"] == "epoch"] == [1, 2]


def test_the_fused_optimizer_steps_like_the_plain_one() -> None:
    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    fused_params = [torch.nn.Parameter(t.clone()) for t in start]
    plain_params = [torch.nn.Parameter(t.clone()) for t in start]
    fused = trainer_module.make_optimizer(fused_params, lr=1e-3, weight_decay=0.1)
    plain = torch.optim.AdamW(plain_params, lr=1e-3, weight_decay=0.1)
    assert fused.defaults["fused"] is True
    for step in range(5):
        for optimizer, params in ((fused, fused_params), (plain, plain_params)):
            optimizer.zero_grad()
            g = torch.Generator().manual_seed(step)
            sum((p * torch.randn(p.shape, generator=g)).sum() for p in params).backward()
            optimizer.step()
    for a, b in zip(fused_params, plain_params, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
    # parameters with no fused kernel (here: on the meta device) get the plain optimizer
    meta = torch.nn.Parameter(torch.zeros(2, device="meta"))
    assert not trainer_module.make_optimizer([meta], lr=1e-3, weight_decay=0).defaults["fused"]
