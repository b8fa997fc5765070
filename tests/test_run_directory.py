"""The run directory: llmclf writes only into its own runs, deletes only its own files, and a
directory is always one whole run, whatever interrupts a fit."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny_fit_args, topic_frame, write_topic_csv

from llmclf import Classifier, TrainConfig, Trainer
from llmclf.cli import main
from llmclf.runs import rundir
from llmclf.runs.rundir import repeat_command
from llmclf.training.loop import TrainingLoop

RUN_FILES = {
    "model.safetensors",
    "llmclf.json",
    "metrics.json",
    "history.csv",
    "encoder.json",
    "vocab.bpe",
    "curves.png",
}


def _fit(*args: str):
    return CliRunner().invoke(main, list(args))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


REPLACE = os.replace
SAVE_RESUME, OPTIMIZER_STEP = TrainingLoop._save_resume, TrainingLoop._optimizer_step


def _stop_interrupting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TrainingLoop, "_save_resume", SAVE_RESUME)
    monkeypatch.setattr(TrainingLoop, "_optimizer_step", OPTIMIZER_STEP)


def _interrupt_after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    save_resume = SAVE_RESUME

    def then_interrupt(self, directory: Path) -> None:
        save_resume(self, directory)
        raise KeyboardInterrupt  # Ctrl-C right after the first epoch is saved

    monkeypatch.setattr(TrainingLoop, "_save_resume", then_interrupt)


def _interrupt_in_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(self) -> None:
        raise KeyboardInterrupt  # Ctrl-C before the first optimizer step

    monkeypatch.setattr(TrainingLoop, "_optimizer_step", interrupt)


# ----- 1. never write into, or delete from, a directory that is not an llmclf run ------------
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_fit_refuses_a_non_empty_directory_that_is_not_a_run(
    tmp_path: Path, overwrite: list[str]
) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    docs = tmp_path / "mydocs"
    (docs / "resume").mkdir(parents=True)
    (docs / "resume" / "cv.txt").write_text("CV")
    (docs / "metrics.json").write_text("mine")
    before = _snapshot(docs)
    result = _fit(*tiny_fit_args(data, docs, "--epochs", "1"), *overwrite)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"--output {docs} is not empty and is not an llmclf run" in result.stderr
    assert _snapshot(docs) == before
    assert {p.name for p in docs.iterdir()} == {"resume", "metrics.json"}


def test_an_empty_directory_takes_a_new_run(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    (tmp_path / "empty").mkdir()
    result = _fit(*tiny_fit_args(data, tmp_path / "empty", "--epochs", "1"))
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "empty").iterdir()} == RUN_FILES


def test_overwrite_removes_only_what_llmclf_wrote(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    run = tmp_path / "run"
    assert _fit(*tiny_fit_args(data, run, "--epochs", "1")).exit_code == 0
    (run / "notes.txt").write_text("mine")
    (run / "resume").mkdir()
    (run / "resume" / "mine.txt").write_text("mine too")
    result = _fit(*tiny_fit_args(data, run, "--epochs", "1"), "--overwrite")
    assert result.exit_code == 0, result.output
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "resume" / "mine.txt").read_text() == "mine too"
    assert {p.name for p in run.iterdir()} == RUN_FILES | {"notes.txt", "resume"}
    assert {p.name for p in (run / "resume").iterdir()} == {"mine.txt"}


# ----- 4. the default output directory is chosen once -----------------------------------------
def test_the_default_output_directory_is_chosen_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(TrainConfig(dataset="tickets"))
    chosen = trainer.output_dir
    assert chosen == Path("runs/tickets")
    chosen.mkdir(parents=True)  # what fit does first
    assert trainer.output_dir == chosen


def test_ctrl_c_with_the_default_output_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    monkeypatch.chdir(tmp_path)
    args = tiny_fit_args(data, tmp_path / "unused")
    at = args.index("--output")
    del args[at : at + 2]
    _interrupt_after_first_epoch(monkeypatch)
    result = _fit(*args)
    assert result.exit_code == 130
    assert (
        result.stderr == f"Error: interrupted; continue with llmclf fit --resume {Path('runs/d')}\n"
    )
    assert not (tmp_path / "runs" / "d-2").exists()


# ----- 5. an interrupted --overwrite leaves the previous run whole ----------------------------
def test_an_interrupted_overwrite_leaves_the_previous_run_whole_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three = write_topic_csv(tmp_path / "three.csv", rows_per_class=10)
    two = tmp_path / "two.csv"
    topics = {"billing": ["invoice", "refund", "bill"], "account": ["password", "login", "reset"]}
    topic_frame(10, topics=topics).to_csv(two, index=False)
    run = tmp_path / "run"
    assert _fit(*tiny_fit_args(three, run, "--epochs", "1")).exit_code == 0
    before = _snapshot(run)

    _interrupt_after_first_epoch(monkeypatch)
    result = _fit(*tiny_fit_args(two, run), "--overwrite")
    assert result.exit_code == 130
    assert result.stderr == f"Error: interrupted; continue with llmclf fit --resume {run}\n"
    assert {k: v for k, v in _snapshot(run).items() if "/" not in k} == before
    assert Classifier.load(run).labels == ("account", "billing", "hardware")
    refused = _fit(*tiny_fit_args(two, run))
    assert refused.exit_code == 2 and f"llmclf fit --resume {run}" in refused.stderr

    _stop_interrupting(monkeypatch)
    resumed = _fit("fit", "--resume", str(run), "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert {p.name for p in run.iterdir()} == RUN_FILES
    manifest = json.loads((run / "llmclf.json").read_text())
    assert manifest["complete"] is True and manifest["labels"] == ["account", "billing"]
    assert Classifier.load(run).labels == ("account", "billing")


def test_an_overwrite_stopped_in_its_first_epoch_leaves_the_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    run = tmp_path / "run"
    assert _fit(*tiny_fit_args(data, run, "--epochs", "1")).exit_code == 0
    before = _snapshot(run)
    _interrupt_in_first_epoch(monkeypatch)
    result = _fit(*tiny_fit_args(data, run, "--seed", "7"), "--overwrite")
    assert result.exit_code == 130
    assert f"{run} still holds the previous run" in result.stderr
    assert {k: v for k, v in _snapshot(run).items() if "/" not in k} == before
    _stop_interrupting(monkeypatch)
    resumed = _fit("fit", "--resume", str(run))
    assert resumed.exit_code == 1
    assert "still holds the previous run; start it again with llmclf fit" in resumed.stderr
    assert "--seed 7" in resumed.stderr


def test_an_overwrite_killed_while_moving_in_is_finished_by_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three = write_topic_csv(tmp_path / "three.csv", rows_per_class=10)
    two = tmp_path / "two.csv"
    topics = {"billing": ["invoice", "refund", "bill"], "account": ["password", "login", "reset"]}
    topic_frame(10, topics=topics).to_csv(two, index=False)
    run = tmp_path / "run"
    assert _fit(*tiny_fit_args(three, run, "--epochs", "1")).exit_code == 0
    moves = []

    def dies_on_the_third_move(src, dst) -> None:
        if Path(src).parent.name == rundir.STAGING_DIR and Path(dst).parent == run:
            moves.append(src)
            if len(moves) == 3:
                raise KeyboardInterrupt
        REPLACE(src, dst)

    monkeypatch.setattr(rundir.os, "replace", dies_on_the_third_move)
    assert _fit(*tiny_fit_args(two, run, "--epochs", "1"), "--overwrite").exit_code != 0
    monkeypatch.setattr(rundir.os, "replace", REPLACE)
    assert not (run / "llmclf.json").exists()  # neither the old run nor a mix of two
    refused = _fit(*tiny_fit_args(two, run, "--epochs", "1"))
    assert refused.exit_code == 2 and f"llmclf fit --resume {run}" in refused.stderr

    finished = _fit("fit", "--resume", str(run))
    assert finished.exit_code == 2 and "finished run" in finished.stderr
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert Classifier.load(run).labels == ("account", "billing")


# ----- 6. a run stopped in its first epoch is started again with its own config ---------------
def test_a_run_stopped_in_its_first_epoch_prints_the_command_that_repeats_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    run = tmp_path / "my run"
    args = tiny_fit_args(data, run, "--seed", "7", "--dedupe", "--split", "0.6,0.2,0.2")
    _interrupt_in_first_epoch(monkeypatch)
    result = _fit(*args)
    assert result.exit_code == 130
    prefix = "Error: interrupted; stopped before the first epoch ended; start it again with "
    assert result.stderr.startswith(prefix) and result.stderr.count("\n") == 1
    command = result.stderr.removeprefix(prefix).strip()
    _stop_interrupting(monkeypatch)

    resumed = _fit("fit", "--resume", str(run))
    assert resumed.exit_code == 1
    assert resumed.stderr.strip().endswith(f"start it again with {command}")

    words = shlex.split(command)
    assert words[:2] == ["llmclf", "fit"] and words[-3:] == ["--output", str(run), "--overwrite"]
    again = _fit(*words[1:], "--quiet")
    assert again.exit_code == 0, again.output
    saved = json.loads((run / "llmclf.json").read_text())["config"]
    straight = tmp_path / "straight"
    assert (
        _fit(
            *tiny_fit_args(data, straight, "--seed", "7", "--dedupe", "--split", "0.6,0.2,0.2")
        ).exit_code
        == 0
    )
    want = json.loads((straight / "llmclf.json").read_text())["config"]
    assert {**saved, "output": None} == {**want, "output": None}


def test_repeat_command_renders_every_non_default_field() -> None:
    config = TrainConfig(
        dataset="/data/my file.csv",
        split=(0.6, 0.2, 0.2),
        dedupe=True,
        bucket=False,
        lr=1e-3,
        eval_batches=None,
        output="ignored",
    )
    assert repeat_command(config, Path("runs/x")) == (
        "llmclf fit --dataset '/data/my file.csv' --split 0.6,0.2,0.2 --dedupe --lr 0.001 "
        "--output runs/x --overwrite (with eval_batches = null in a --config file)"
    )
