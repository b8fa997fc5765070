"""``fit --log-to tensorboard,mlflow``: read back with each library's own reader, no mocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import fit_tiny_run, tiny_fit_args, write_topic_csv

from llmclf.cli import main
from llmclf.tracking import parse_log_to

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

EPOCHS, STEPS = 2, 6  # tiny_fit_args: 2 epochs; 3 x 40 rows, 70 % train, batch 16 -> 6 steps


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """One tiny fit logged to both trackers and --log-json: (run, mlflow store, json events)."""
    root = tmp_path_factory.mktemp("tracked")
    store = root / "mlruns"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"file:{store}")
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: the file store is opt-in
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "llmclf-tests")
        log = root / "events.jsonl"
        run = fit_tiny_run(root, 40, "--log-to", "tensorboard,mlflow", "--log-json", str(log))
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return run, store, events


def test_tensorboard_event_files_hold_the_losses_and_metrics(tracked) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _, events = tracked
    log_dir = run.parent / "tensorboard" / run.name
    assert log_dir.is_dir() and not (run / "tensorboard").exists()  # outside the run
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    losses = accumulator.Scalars("train/batch_loss")
    assert [s.step for s in losses] == list(range(1, EPOCHS * STEPS + 1))
    logged = [e["loss"] for e in events if e["event"] == "step"]
    assert [s.value for s in losses] == pytest.approx(logged, rel=1e-6)
    rows = [e["row"] for e in events if e["event"] == "evaluation"]
    val = accumulator.Scalars("eval/val_accuracy")
    assert [s.step for s in val] == [r["step"] for r in rows]
    assert [s.value for s in val] == pytest.approx([r["val_accuracy"] for r in rows])
    metrics = json.loads((run / "metrics.json").read_text())
    (final,) = accumulator.Scalars("final/test_accuracy")
    assert final.value == pytest.approx(metrics["test"]["accuracy"])
    assert {"config/text_summary", "run_directory/text_summary"} <= set(tags["tensors"])
    (text,) = accumulator.Tensors("run_directory/text_summary")
    assert text.tensor_proto.string_val[0].decode() == str(run.resolve())


def test_mlflow_run_holds_params_metric_history_and_the_run_directory(tracked) -> None:
    from mlflow.tracking import MlflowClient

    run, store, events = tracked
    client = MlflowClient(f"file:{store}")
    experiment = client.get_experiment_by_name("llmclf-tests")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == run.name and logged.info.status == "FINISHED"
    config = json.loads((run / "llmclf.json").read_text())["config"]
    assert logged.data.params["backbone"] == "gpt2-tiny"
    assert set(logged.data.params) == set(config)
    history = client.get_metric_history(logged.info.run_id, "train/batch_loss")
    assert [m.step for m in history] == list(range(1, EPOCHS * STEPS + 1))
    assert [m.value for m in history] == pytest.approx(
        [e["loss"] for e in events if e["event"] == "step"], rel=1e-6
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert logged.data.metrics["final/test_loss"] == pytest.approx(metrics["test"]["loss"])
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "run")}
    assert {"run/model.safetensors", "run/llmclf.json", "run/metrics.json"} <= artifacts


def test_the_config_event_opens_the_json_log(tracked) -> None:
    _, _, events = tracked
    assert events[0]["event"] == "config"
    assert events[0]["config"]["backbone"] == "gpt2-tiny"


def test_log_to_takes_a_comma_list_or_repeats_and_refuses_unknown_names(tmp_path: Path) -> None:
    assert parse_log_to(["tensorboard,mlflow", "tensorboard"]) == ["tensorboard", "mlflow"]
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=5)
    result = CliRunner().invoke(main, ["fit", "--dataset", str(data), "--log-to", "wandb"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: --log-to: unknown tracker 'wandb'")
    assert not (tmp_path / "runs").exists()
    dry = CliRunner().invoke(
        main, ["fit", "--dataset", str(data), "--log-to", "wandb", "--dry-run"]
    )
    assert dry.exit_code == 2 and "unknown tracker 'wandb'" in dry.stderr


def test_an_mlflow_store_it_cannot_use_is_one_line_and_leaves_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:" + str(tmp_path / "mlruns"))
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # MLflow 3 refuses file stores
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=5)
    out = tmp_path / "run"
    args = [*tiny_fit_args(data, out), "--log-to", "mlflow", "--quiet"]
    result = CliRunner().invoke(main, args)
    if result.exit_code == 0:
        pytest.skip("this MLflow still writes file stores without MLFLOW_ALLOW_FILE_STORE")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: --log-to mlflow: MLflow cannot start a run")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    """With mlflow unimportable, fit stops before any work and names the extra to install."""
    code = (
        "import sys; sys.modules['mlflow'] = None\n"
        "from llmclf.cli import main\n"
        "main(['fit', '--dataset', 'sms', '--log-to', 'mlflow'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: --log-to mlflow needs the mlflow package, not installed here; run: "
        "pip install 'llmclf[mlflow]'"
    ]
    assert not (tmp_path / "runs").exists()


def test_under_torchrun_only_rank_0_logs(tmp_path: Path) -> None:
    """Two CPU ranks: one event file, each batch's loss once."""
    import os

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    args = tiny_fit_args(data, tmp_path / "ddp", "--epochs", "1", "--batch-size", "8")
    args += ["--device", "cpu", "--log-to", "tensorboard"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    result = subprocess.run(
        [*torchrun, "--nproc-per-node", "2", "-m", "llmclf", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log_dir = tmp_path / "tensorboard" / "ddp"
    assert len(list(log_dir.iterdir())) == 1  # one writer: rank 0's
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    steps = [s.step for s in accumulator.Scalars("train/batch_loss")]
    assert steps == list(range(1, len(steps) + 1)) and steps
