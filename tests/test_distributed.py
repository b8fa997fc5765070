"""torchrun --nproc-per-node 2 on CPU (gloo): the same result as one process, and no hangs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny_fit_args, write_topic_csv

from llmclf.cli import main

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _torchrun(args: list[str], env: dict[str, str] | None = None, timeout: float = 240):
    return subprocess.run(
        [*TORCHRUN, "-m", "llmclf", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("trainable", ["last-block", "lora:r=4,alpha=8"])
def test_two_ranks_match_one_process(tmp_path: Path, trainable: str) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=30)
    common = ["--epochs", "2", "--batch-size", "8", "--trainable", trainable]
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


def test_batch_size_must_divide_by_the_ranks(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=5)
    result = _torchrun(
        [*tiny_fit_args(data, tmp_path / "r", "--batch-size", "7"), "--device", "cpu"]
    )
    assert result.returncode != 0
    assert "must divide by the 2 processes" in result.stderr


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
