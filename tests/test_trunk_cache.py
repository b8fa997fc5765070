"""The frozen-trunk cache changes the cost of training, never its result."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Collect, write_topic_csv

from llmclf import TrainConfig, Trainer
from llmclf.training.features import cache_decision


def _fit(tmp_path: Path, name: str, **changes) -> tuple[list[dict], dict, Collect]:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=25)
    config = TrainConfig(
        dataset=str(data),
        backbone="gpt2-tiny",
        weights="random",
        balance="none",
        epochs=2,
        batch_size=8,
        lr=1e-3,
        eval_every=5,
        output=str(tmp_path / name),
        trainable="last-block",
        **changes,
    )
    reporter = Collect()
    run = Trainer(config, reporter=reporter).fit()
    return run.history, run.metrics, reporter


@pytest.mark.parametrize(
    ("pooling", "padding"),
    [("last-token", "pad-batch"), ("mean", "truncate-batch"), ("last", "pad-dataset")],
)
def test_cached_and_uncached_training_give_the_same_losses(
    tmp_path: Path, pooling: str, padding: str
) -> None:
    cached, cached_metrics, events = _fit(tmp_path, "cached", pooling=pooling, padding=padding)
    plain, plain_metrics, _ = _fit(tmp_path, "plain", pooling=pooling, padding=padding, cache="off")
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
    assert cache_decision(**common, pooling="last-token", padding="pad-batch")[0]
    assert not cache_decision(**common, pooling="last", padding="pad-batch")[0]
    assert not cache_decision(**{**common, "dropout": 0.1}, pooling="mean", padding="pad-batch")[0]
    assert not cache_decision(
        **{**common, "first_trainable_layer": 0}, pooling="mean", padding="pad-batch"
    )[0]
    assert not cache_decision(**{**common, "enabled": False}, pooling="mean", padding="pad-batch")[
        0
    ]
