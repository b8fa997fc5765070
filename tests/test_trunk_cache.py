"""The frozen-trunk cache changes the cost of training, never its result."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from helpers import Collect, tiny_config, write_topic_csv

import llmclf
from llmclf import Trainer
from llmclf.data.padding import PaddingPolicy
from llmclf.models.classifier import SequenceClassifier
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.training.trunk_cache import (
    CacheLayout,
    build_trunk_cache,
    cache_bytes,
    cache_decision,
    round_width,
)


def _fit(tmp_path: Path, name: str, **changes) -> tuple[list[dict], dict, Collect]:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=25)
    config = tiny_config(
        data, tmp_path / name, batch_size=8, eval_every=5, trainable="last-block", **changes
    )
    reporter = Collect()
    run = Trainer(config, reporter=reporter).fit()
    return run.history, run.metrics, reporter


@pytest.mark.parametrize(
    ("pooling", "padding"),
    [("last-token", "pad-batch"), ("mean", "truncate-dataset"), ("last", "pad-dataset")],
)
def test_cached_and_uncached_training_give_the_same_losses(
    tmp_path: Path, pooling: str, padding: str
) -> None:
    given = {"pooling": pooling, "padding": padding}
    if padding == "truncate-dataset":
        given["max_length"] = 6  # cuts most texts and pads the rest
    cached, cached_metrics, events = _fit(tmp_path, "cached", **given)
    plain, plain_metrics, _ = _fit(tmp_path, "plain", **given, cache="off")
    assert any(
        e == "model" and d["cache"].startswith("frozen-trunk cache on") for e, d in events.events
    )
    assert len(cached) == len(plain) > 2
    for a, b in zip(cached, plain, strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (key, a, b)
    assert cached_metrics["test"]["accuracy"] == plain_metrics["test"]["accuracy"]


def test_cache_is_off_when_it_would_not_be_exact() -> None:
    common = {"enabled": True, "first_trainable_layer": 1, "dropout": 0.0}
    batch = llmclf.padding.get("pad-batch")(max_length=None, context_length=40, pad_id=0)
    fixed = llmclf.padding.get("truncate-dataset")(max_length=8, context_length=40, pad_id=0)
    assert cache_decision(**common, pooling="last-token", padding=batch)[0]
    assert not cache_decision(**common, pooling="last", padding=batch)[0]
    assert cache_decision(**common, pooling="last", padding=fixed)[0]
    assert not cache_decision(**{**common, "dropout": 0.1}, pooling="mean", padding=batch)[0]
    assert not cache_decision(
        **{**common, "first_trainable_layer": 0}, pooling="mean", padding=batch
    )[0]
    assert not cache_decision(**{**common, "enabled": False}, pooling="mean", padding=batch)[0]


def test_the_cache_asks_the_policy_not_its_name() -> None:
    """A plugin policy with a fixed width allows the cache under 'last' pooling."""

    class Fixed16(PaddingPolicy):
        name = "fixed-16"
        fixed_width = True

        def __init__(self, max_length, context_length, pad_id) -> None:
            super().__init__(max_length, context_length, pad_id)
            self.length = min(16, self.cap)

        def keep(self) -> int:
            return self.length

        def length_for(self, lengths: list[int]) -> int:
            return self.length

    policy = Fixed16(None, 40, 0)
    common = {"enabled": True, "first_trainable_layer": 1, "dropout": 0.0}
    assert cache_decision(**common, pooling="last", padding=policy)[0]
    # the memory estimate counts every text at the width the policy gives it alone
    assert cache_bytes([[1, 2], [3] * 30, []], policy, width=8) == 3 * 16 * 8 * 4


@pytest.mark.parametrize("pooling", ["last-token", "mean", "first"])
@torch.no_grad()
def test_rounded_batch_widths_leave_the_logits_unchanged(pooling: str) -> None:
    """Reduced precision rounds widths up to a multiple of 16; the extra positions are ignored."""
    torch.manual_seed(0)
    backbone = GPT2(GPT2Config(n_layer=3, n_embd=32, n_head=4, context_length=40, vocab_size=90))
    model = SequenceClassifier(backbone, 2, pooling=pooling).eval()
    policy = llmclf.padding.get("pad-batch")(max_length=None, context_length=40, pad_id=0)
    g = torch.Generator().manual_seed(1)
    texts = [torch.randint(0, 90, (n,), generator=g).tolist() for n in (5, 19, 1, 12, 33, 40)]
    cache = build_trunk_cache(
        model,
        texts,
        policy,
        2,
        torch.device("cpu"),
        nullcontext,
        batch_size=4,
        width_multiple=16,
    )
    for positions in ([0, 1, 2], [3, 4], [5, 2]):
        batch = policy.collate([texts[i] for i in positions])
        hidden = cache.assemble(positions, batch, torch.device("cpu"))
        assert hidden.shape[1] % 16 == 0 and hidden.shape[1] > batch.input_ids.shape[1]
        expected = model(batch.input_ids, batch.lengths)
        got = model.forward_from(hidden, batch.lengths, 2)
        assert torch.allclose(got, expected, rtol=0, atol=1e-5), positions


def test_round_width_stops_at_the_context_length() -> None:
    assert [round_width(w, 16) for w in (1, 16, 17, 33)] == [16, 16, 32, 48]
    assert round_width(1020, 16, limit=1024) == 1024
    assert round_width(1017, 16, limit=1020) == 1020
    assert round_width(7, 1) == 7


def _run(tmp_path: Path, name: str, **changes) -> tuple[list[dict], dict, Collect]:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=25)
    given = {"batch_size": 8, "eval_every": 5, "trainable": "last-block", **changes}
    reporter = Collect()
    run = Trainer(tiny_config(data, tmp_path / name, **given), reporter=reporter).fit()
    return run.history, run.metrics, reporter


def _cache_note(reporter: Collect) -> str:
    return next(d["report"]["cache"] for e, d in reporter.events if e == "data")


def test_a_cache_over_the_memory_budget_spills_to_a_file_and_trains_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_memory, memory_metrics, memory_events = _run(tmp_path, "memory")
    spill = tmp_path / "spill"
    monkeypatch.setattr("llmclf.training.trainer.available_memory_bytes", lambda: 0)
    spilled, spilled_metrics, events = _run(tmp_path, "spilled", cache_dir=str(spill))
    assert "in memory" in _cache_note(memory_events)
    assert f"in a memory-mapped file in {spill}" in _cache_note(events)
    assert not any(spill.iterdir())  # the file was deleted once mapped: nothing is left behind
    assert [(h["train_loss"], h["val_loss"]) for h in spilled] == [
        (h["train_loss"], h["val_loss"]) for h in in_memory
    ]
    assert spilled_metrics == memory_metrics


def test_without_room_on_disk_either_the_run_says_so_and_trains_uncached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llmclf.training.trainer.available_memory_bytes", lambda: 0)
    monkeypatch.setattr("llmclf.training.trunk_cache.free_disk_bytes", lambda _: 0)
    history, _, events = _run(tmp_path, "full", cache_dir=str(tmp_path / "spill"))
    plain, _, _ = _run(tmp_path, "plain", cache="off")
    messages = [d["text"] for e, d in events.events if e == "message"]
    (said,) = [m for m in messages if m.startswith("frozen-trunk cache off")]
    assert "memory budget" in said and "--cache-dir" in said and "\n" not in said
    for a, b in zip(history, plain, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)


def test_a_head_only_cache_holds_pooled_vectors_and_trains_like_token_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pooled, pooled_metrics, events = _run(tmp_path, "pooled", trainable="head", pooling="mean")
    monkeypatch.setattr("llmclf.training.trainer.pooled_cache", lambda _: False)
    states, states_metrics, state_events = _run(
        tmp_path, "states", trainable="head", pooling="mean"
    )
    assert "fp32 pooled vectors" in _cache_note(events)
    assert "fp32 token states" in _cache_note(state_events)
    assert len(pooled) == len(states) > 2
    for a, b in zip(pooled, states, strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (key, a, b)
    assert pooled_metrics["test"]["accuracy"] == states_metrics["test"]["accuracy"]


@pytest.mark.parametrize("pooling", ["last-token", "mean", "first"])
@torch.no_grad()
def test_pooled_vectors_give_the_logits_of_the_whole_model(pooling: str) -> None:
    torch.manual_seed(0)
    backbone = GPT2(GPT2Config(n_layer=2, n_embd=32, n_head=4, context_length=40, vocab_size=90))
    model = SequenceClassifier(backbone, 3, pooling=pooling).eval()
    policy = llmclf.padding.get("pad-batch")(max_length=None, context_length=40, pad_id=0)
    g = torch.Generator().manual_seed(1)
    texts = [torch.randint(0, 90, (n,), generator=g).tolist() for n in (5, 19, 1, 12, 40)]
    layout = CacheLayout(pooled=True)
    cache = build_trunk_cache(
        model, texts, policy, 2, torch.device("cpu"), nullcontext, batch_size=2, layout=layout
    )
    assert tuple(cache.data.shape) == (6, 32)  # a vector per text, and the zero row
    for positions in ([0, 1, 2], [4, 3], [2]):
        batch = policy.collate([texts[i] for i in positions])
        pooled = cache.assemble(positions, batch, torch.device("cpu"))
        expected = model(batch.input_ids, batch.lengths)
        assert torch.allclose(model.head(pooled), expected, rtol=0, atol=1e-5), positions


def test_bf16_runs_store_bf16_states_and_train_like_the_uncached_bf16_run(
    tmp_path: Path,
) -> None:
    cached, cached_metrics, events = _run(tmp_path, "cached", precision="bf16")
    plain, plain_metrics, _ = _run(tmp_path, "plain", precision="bf16", cache="off")
    assert "bf16 token states" in _cache_note(events)
    assert len(cached) == len(plain) > 2
    for a, b in zip(cached, plain, strict=True):  # bf16 rounding, as the bf16 model tests allow
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=0.02), (key, a, b)
    assert abs(cached_metrics["test"]["accuracy"] - plain_metrics["test"]["accuracy"]) <= 0.1


def test_the_cache_size_counts_the_storage_dtype_and_pooling() -> None:
    policy = llmclf.padding.get("pad-batch")(max_length=None, context_length=40, pad_id=0)
    texts = [[1, 2], [3] * 30, [4] * 50]  # 2 + 30 + 40 (cut at the context) positions
    assert cache_bytes(texts, policy, width=8) == 72 * 8 * 4
    assert cache_bytes(texts, policy, width=8, itemsize=2) == 72 * 8 * 2
    assert cache_bytes(texts, policy, width=8, pooled=True) == 3 * 8 * 4
