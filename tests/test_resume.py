"""A run killed with SIGKILL mid-training keeps a valid checkpoint and resumes to the same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from helpers import tiny_fit_args, write_topic_csv
from safetensors.torch import load_file

from llmclf.cli import main


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=120)
    args = tiny_fit_args(data, tmp_path / "killed", "--epochs", "4", "--batch-size", "8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmclf", *args],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = tmp_path / "killed" / "resume" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["epochs_completed"] >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    run = tmp_path / "killed"
    manifest = json.loads((run / "llmclf.json").read_text())
    assert manifest["complete"] is False and manifest["epochs_completed"] >= 1
    assert load_file(run / "model.safetensors")  # the previous checkpoint is whole

    resumed = CliRunner().invoke(main, ["fit", "--resume", str(run), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "llmclf.json").read_text())["complete"] is True
    assert not (run / "resume").exists()

    straight = CliRunner().invoke(
        main, tiny_fit_args(data, tmp_path / "straight", "--epochs", "4", "--batch-size", "8")
    )
    assert straight.exit_code == 0, straight.output
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert got["test"]["accuracy"] == want["test"]["accuracy"]
    assert abs(got["test"]["loss"] - want["test"]["loss"]) < 1e-5


def test_resume_of_a_finished_run_says_so(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    assert (
        CliRunner().invoke(main, tiny_fit_args(data, tmp_path / "r", "--epochs", "1")).exit_code
        == 0
    )
    result = CliRunner().invoke(main, ["fit", "--resume", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "finished run" in result.stderr
