"""torchrun --nproc-per-node 2 on CPU (gloo): the same result as one process, and no hangs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import tiny_fit_args, write_topic_csv
from safetensors.torch import load_file

from llmclf.cli import main
from llmclf.training.loop import rank_loss

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _torchrun(args: list[str], env: dict[str, str] | None = None, timeout: float = 240):
    return subprocess.run(
        [*TORCHRUN, "-m", "llmclf", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("trainable", "extra"),
    [
        ("last-block", []),
        ("lora:r=4,alpha=8", []),
        # windows: each rank scores its rows of every batch of windows; gathered per text
        ("last-block", ["--max-length", "4", "--long-texts", "windows:2"]),
        # packed: each rank packs its own rows of every batch
        ("lora:r=4,alpha=8", ["--pack"]),
    ],
    ids=["last-block", "lora", "windows", "lora-packed"],
)
def test_two_ranks_match_one_process(tmp_path: Path, trainable: str, extra: list[str]) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=30)
    common = ["--epochs", "2", "--batch-size", "8", "--trainable", trainable, *extra]
    log = tmp_path / "events.jsonl"
    ddp = _torchrun(
        [*tiny_fit_args(data, tmp_path / "ddp", *common), "--device", "cpu", "--log-json", str(log)]
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert [p.name for p in runs] == ["ddp"]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    agree = [e["text"] for e in events if e["event"] == "message" and "ranks agree" in e["text"]]
    assert agree and agree[0].endswith("(max abs difference 0)"), agree

    single = CliRunner().invoke(main, tiny_fit_args(data, tmp_path / "single", *common))
    assert single.exit_code == 0, single.output
    got = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    want = json.loads((tmp_path / "single" / "metrics.json").read_text())
    # Same batches, same seed: only the order of floating-point sums differs (each rank
    # averages its half of the batch, DDP averages the two), so losses agree to ~1e-6 and
    # the predictions, hence accuracies, are identical.
    for split in ("train", "validation", "test"):
        assert got[split]["accuracy"] == want[split]["accuracy"]
        assert got[split]["loss"] == pytest.approx(want[split]["loss"], abs=1e-4)
    if "--long-texts" in extra:  # the windows run: more windows than texts, metrics per text
        report = json.loads((tmp_path / "ddp" / "llmclf.json").read_text())["data"]["report"]
        assert report["examples"]["test"] > report["split_sizes"]["test"] == got["test"]["n"]


def test_an_uneven_last_batch_weighs_by_examples_as_on_one_process(tmp_path: Path) -> None:
    # 35 training rows, batch 8: each epoch ends with a batch of 3, split 2/1 over the ranks.
    # The head alone trains: a key bias's gradient is 0 in exact arithmetic, so AdamW turns
    # the rounding noise of the two sums into lr-sized steps there, which no fix can match.
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=17)
    common = ["--epochs", "2", "--batch-size", "8", "--trainable", "head", "--save", "last"]
    ddp = _torchrun([*tiny_fit_args(data, tmp_path / "ddp", *common), "--device", "cpu"])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = CliRunner().invoke(main, tiny_fit_args(data, tmp_path / "single", *common))
    assert single.exit_code == 0, single.output

    manifest = json.loads((tmp_path / "ddp" / "llmclf.json").read_text())
    assert len(manifest["data"]["split"]["train"]) % 8 == 3
    got = load_file(tmp_path / "ddp" / "model.safetensors")
    want = load_file(tmp_path / "single" / "model.safetensors")
    assert got.keys() == want.keys()
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    assert worst <= 1e-5, worst
    assert _column(tmp_path / "ddp", "examples_seen") == _column(
        tmp_path / "single", "examples_seen"
    )
    assert _column(tmp_path / "single", "examples_seen")[-1] == 2 * 35
    assert ddp.stdout.count("saved ") == 1, ddp.stdout  # once, not once per rank


def _column(run: Path, name: str) -> list[int]:
    with open(run / "history.csv", newline="") as f:
        return [int(row[name]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("class_weights", [None, [3.0, 0.5, 1.0]])
def test_rank_losses_average_to_the_global_batch_mean(class_weights: list[float] | None) -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 3, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 0])
    weight = None if class_weights is None else torch.tensor(class_weights)
    F.cross_entropy(logits, labels, weight=weight).backward()
    want = logits.grad.clone()

    logits.grad = None
    for rank in range(2):  # as DDP: each rank's gradient, then their average
        rows = slice(rank, None, 2)  # 3 rows and 2 rows
        loss, _ = rank_loss(logits[rows], labels[rows], labels, weight, world_size=2)
        (loss / 2).backward()
    assert torch.allclose(logits.grad, want, atol=1e-7)


def test_batch_size_must_divide_by_the_ranks(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=5)
    result = _torchrun(
        [*tiny_fit_args(data, tmp_path / "r", "--batch-size", "7"), "--device", "cpu"]
    )
    assert result.returncode != 0
    assert result.stderr.count("must divide by the 2 processes") == 1, result.stderr


def test_two_ranks_match_one_process_with_llama(tmp_path: Path) -> None:
    """DDP runs a Llama-family backbone as it runs GPT-2 (llama-tiny, the last block trains)."""
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=20)
    common = ["--epochs", "1", "--batch-size", "8", "--trainable", "last-block"]
    args = [*tiny_fit_args(data, tmp_path / "ddp", *common), "--backbone", "llama-tiny"]
    ddp = _torchrun([*args, "--device", "cpu"])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single_args = [*tiny_fit_args(data, tmp_path / "single", *common), "--backbone", "llama-tiny"]
    single = CliRunner().invoke(main, single_args)
    assert single.exit_code == 0, single.output
    got = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    want = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert json.loads((tmp_path / "ddp" / "llmclf.json").read_text())["model"]["architecture"] == (
        "llama"
    )
    for split in ("train", "validation", "test"):
        assert got[split]["accuracy"] == want[split]["accuracy"]
        assert got[split]["loss"] == pytest.approx(want[split]["loss"], abs=1e-4)


def test_one_failing_rank_fails_the_job_quickly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist_info = site / "failing_padding-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: failing-padding\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[llmclf.padding]\nfail-on-rank-1 = failing_padding:FailOnRank1\n"
    )
    (site / "failing_padding.py").write_text(
        textwrap.dedent(
            '''
            import os
            from llmclf.data.padding import PadBatch

            class FailOnRank1(PadBatch):
                """Pads per batch; rank 1 raises after a few training batches."""
                calls = 0

                def collate(self, token_ids, labels=None):
                    FailOnRank1.calls += 1
                    if os.environ.get("RANK") == "1" and FailOnRank1.calls > 40:
                        raise RuntimeError("rank 1 fails on purpose")
                    return super().collate(token_ids, labels)
            '''
        )
    )
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=40)
    started = time.monotonic()
    result = _torchrun(
        [
            *tiny_fit_args(
                data,
                tmp_path / "r",
                "--epochs",
                "3",
                "--batch-size",
                "4",
                "--padding",
                "fail-on-rank-1",
                "--cache",
                "off",
            ),
            "--device",
            "cpu",
        ],
        env={"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])},
        timeout=180,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stderr
    assert elapsed < 120
