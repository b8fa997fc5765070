"""``llmclf fit --dry-run``: prepares data and model, trains and writes nothing, prices it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny_config, tiny_fit_args, write_topic_csv

from llmclf.cli import main
from llmclf.training.dry_run import dry_run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_topic_csv(tmp_path / "tickets.csv", rows_per_class=20)


def test_dry_run_json_reports_without_writing_a_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [*tiny_fit_args(data, out), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert not out.exists()  # nothing trained, nothing written
    assert report["data"]["split_sizes"] == {"train": 42, "validation": 6, "test": 12}
    params = report["parameters"]
    assert params["trainable"] == params["total"] > 0  # --trainable all
    assert report["cache"]["applies"] is False  # every block trains
    assert set(report["estimate_seconds"]) == {"training", "evaluation"}
    assert all(seconds > 0 for seconds in report["estimate_seconds"].values())
    lengths = report["token_lengths"]["train"]
    assert lengths["min"] <= lengths["median"] <= lengths["p95"] <= lengths["max"]


def test_a_frozen_trunk_reports_the_cache_and_its_phase(data: Path) -> None:
    config = tiny_config(data, trainable="last-block")
    report = dry_run(config)
    assert report.cache["applies"] and report.cache["bytes"] > 0
    assert report.parameters["trainable"] < report.parameters["total"]
    assert "trunk cache" in report.estimate
    text = report.render()
    assert "frozen-trunk cache: yes" in text and "an estimate" in text


def test_fixed_width_padding_wastes_more_than_per_batch_padding(data: Path) -> None:
    per_batch = dry_run(tiny_config(data, padding="pad-batch")).padding
    fixed = dry_run(tiny_config(data, padding="pad-dataset")).padding
    assert 0 <= per_batch["waste"] < fixed["waste"] < 1
    assert fixed["policy"] == "pad-dataset"


def test_a_packed_run_is_priced_on_packed_batches(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmclf.models.classifier import SequenceClassifier

    packed_forwards = []
    forward_packed = SequenceClassifier.forward_packed
    monkeypatch.setattr(
        SequenceClassifier,
        "forward_packed",
        lambda *a: packed_forwards.append(1) or forward_packed(*a),
    )
    padded = dry_run(tiny_config(data)).padding
    assert not packed_forwards
    packed = dry_run(tiny_config(data, pack=True))
    assert packed_forwards  # its batches were timed as training runs them: packed
    assert packed.padding["packed"] and packed.padding["waste"] == padded["waste"] > 0
    assert "are padding, which --pack does not run" in packed.render()
    head_only = dry_run(tiny_config(data, pack=True, trainable="head"))  # pooled vectors
    assert not head_only.padding["packed"] and "batches are padding\n" in head_only.render()


def test_json_needs_dry_run(data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [*tiny_fit_args(data, tmp_path / "run"), "--json"])
    assert result.exit_code == 2
    assert "--json goes with --dry-run" in result.stderr
    assert not (tmp_path / "run").exists()


def test_flops_follow_the_work_each_phase_does(data: Path) -> None:
    frozen = dry_run(tiny_config(data, trainable="last-block", epochs=1))
    twice = dry_run(tiny_config(data, trainable="last-block", epochs=2))
    whole = dry_run(tiny_config(data, trainable="all", epochs=1))
    assert set(frozen.flops) == set(frozen.estimate) == {"trunk cache", "training", "evaluation"}
    # the same batches twice: twice the training work, the cache built once either way
    assert twice.flops["training"] == pytest.approx(2 * frozen.flops["training"])
    assert twice.flops["trunk cache"] == frozen.flops["trunk cache"]
    # gpt2-tiny has 2 blocks: training both runs and back-propagates through twice the blocks
    assert "trunk cache" not in whole.flops
    assert whole.flops["training"] == pytest.approx(2 * frozen.flops["training"])
    assert "TFLOP" in frozen.render()


def test_a_packed_run_is_estimated_on_fewer_positions_and_flops(data: Path) -> None:
    padded = dry_run(tiny_config(data))
    packed = dry_run(tiny_config(data, pack=True))
    # short texts of varied lengths: packing runs fewer positions, so fewer FLOPs
    assert packed.flops["training"] < padded.flops["training"]
    assert packed.flops["evaluation"] < padded.flops["evaluation"]
