"""A run killed with SIGKILL mid-training keeps a valid checkpoint and resumes to the same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import sigterm_once, tiny_config, tiny_fit_args, write_topic_csv
from safetensors.torch import load_file

from llmclf import Trainer
from llmclf.cli import main
from llmclf.runs import checkpoint


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


def test_an_interrupted_resume_save_resumes_from_the_epoch_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dying after epoch 2's tensors are written but before its state.json commits them."""
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=20)
    config = tiny_config(data, epochs=3, batch_size=8, save="last")
    write_json = checkpoint.write_json

    def dies_on_epoch_2(path: Path, obj: dict) -> None:
        if path.name == "state.json" and obj["epochs_completed"] == 2:
            raise KeyboardInterrupt
        write_json(path, obj)

    monkeypatch.setattr(checkpoint, "write_json", dies_on_epoch_2)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(config.replace(output=str(run))).fit()
    monkeypatch.setattr(checkpoint, "write_json", write_json)
    state = json.loads((run / "resume" / "state.json").read_text())
    assert state["epochs_completed"] == 1
    assert json.loads((run / "llmclf.json").read_text())["epochs_completed"] == 2

    resumed = Trainer.resume(run).fit()
    straight = Trainer(config.replace(output=str(tmp_path / "straight"))).fit()
    assert resumed.metrics["test"]["accuracy"] == straight.metrics["test"]["accuracy"]
    assert abs(resumed.metrics["test"]["loss"] - straight.metrics["test"]["loss"]) < 1e-5


def test_resume_of_a_missing_directory_says_it_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["fit", "--resume", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {tmp_path / 'nope'} does not exist; --resume takes an interrupted run's "
        "directory\n"
    )


def test_a_run_interrupted_before_its_first_epoch_can_be_started_over(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    run = tmp_path / "r"
    run.mkdir()
    manifest = {
        "schema_version": checkpoint.SCHEMA_VERSION,
        "complete": False,
        "epochs_completed": 0,
        "config": tiny_config(data, run, epochs=1).to_dict(),
    }
    (run / "llmclf.json").write_text(json.dumps(manifest))
    resumed = CliRunner().invoke(main, ["fit", "--resume", str(run)])
    assert resumed.exit_code == 1
    assert "start it again with llmclf fit --dataset" in resumed.stderr
    assert "--epochs 1" in resumed.stderr
    assert resumed.stderr.endswith(f"--output {run} --overwrite\n")
    again = CliRunner().invoke(main, tiny_fit_args(data, run, "--epochs", "1"))
    assert again.exit_code == 2
    assert "interrupted before its first epoch ended; pass --overwrite" in again.stderr
    over = CliRunner().invoke(main, [*tiny_fit_args(data, run, "--epochs", "1"), "--overwrite"])
    assert over.exit_code == 0, over.output


def test_ctrl_c_during_fit_says_how_to_resume(tmp_path: Path, monkeypatch) -> None:
    from llmclf.training.loop import TrainingLoop

    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    save_resume = TrainingLoop._save_resume

    def then_interrupt(self, directory: Path) -> None:
        save_resume(self, directory)
        raise KeyboardInterrupt  # Ctrl-C right after the first epoch is saved

    monkeypatch.setattr(TrainingLoop, "_save_resume", then_interrupt)
    result = CliRunner().invoke(main, tiny_fit_args(data, tmp_path / "r", "--quiet"))
    assert result.exit_code == 130
    assert (
        result.stderr == f"Error: interrupted; continue with llmclf fit --resume {tmp_path / 'r'}\n"
    )


def test_sigterm_during_fit_says_how_to_resume(tmp_path: Path) -> None:
    """SIGTERM (docker stop, a scheduler, timeout) printed nothing; now it is handled as Ctrl-C."""
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=120)
    run = tmp_path / "termed"
    args = tiny_fit_args(data, run, "--epochs", "20", "--batch-size", "8")
    returncode, stderr = sigterm_once(args, run / "resume" / "state.json")
    assert returncode == 143, stderr
    assert stderr.endswith(
        f"Error: terminated (SIGTERM); continue with llmclf fit --resume {run}\n"
    )


def test_resume_names_the_options_to_drop(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["fit", "--resume", str(tmp_path), "--epochs", "9", "--no-dedupe"]
    )
    assert result.exit_code == 2
    assert "drop --epochs, --no-dedupe" in result.stderr, result.stderr
