"""``llmclf reproduce RUN``: the same config, data and machine give the same run, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import fit_tiny_run, sha256

import llmclf
from llmclf.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny_run(tmp_path_factory.mktemp("reproduce"), 20)


def test_a_cpu_run_reproduces_exactly(run: Path) -> None:
    report = llmclf.reproduce(run)
    assert report.reproduced == run.with_name("run-reproduced")
    assert report.identical
    assert report.max_weight_difference == 0.0
    assert set(report.config_changes) == {"output"}
    assert set(report.metrics) == {"train", "validation", "test"}
    assert all(old == new for m in report.metrics.values() for old, new in m.values())
    assert sha256(run / "metrics.json") == sha256(report.reproduced / "metrics.json")
    assert (run / "llmclf.json").is_file() and json.loads((run / "llmclf.json").read_text())


def test_the_cli_prints_the_comparison_into_the_next_free_directory(run: Path) -> None:
    (run.with_name("run-reproduced")).mkdir(exist_ok=True)  # taken: the next free name
    (run.with_name("run-reproduced") / "keep.txt").write_text("not a run")
    result = CliRunner().invoke(main, ["reproduce", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "run-reproduced-2" in out and "identical but for output" in out
    assert "test accuracy" in out and "largest weight difference: 0" in out
    assert out.strip().endswith("reproduced exactly")
    assert run.with_name("run-reproduced-2").joinpath("model.safetensors").is_file()


def test_reproducing_into_the_run_itself_is_refused(run: Path) -> None:
    before = sha256(run / "model.safetensors")
    result = CliRunner().invoke(main, ["reproduce", str(run), "--output", str(run)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --output") and "the run itself" in result.stderr
    assert sha256(run / "model.safetensors") == before


def test_changed_data_is_one_line_saying_what_changed(tmp_path: Path) -> None:
    original = fit_tiny_run(tmp_path, 10)
    data = tmp_path / "tickets.csv"
    frame = pd.read_csv(data)
    frame.iloc[1:].to_csv(data, index=False)  # one row fewer
    dropped = frame.iloc[0]["label"]
    result = CliRunner().invoke(main, ["reproduce", str(original), "--quiet"])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "changed since it was trained (rows 30 -> 29; label counts " in line
    assert f"{dropped} 10 -> 9" in line
    assert not (tmp_path / "run-reproduced").exists()


def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["reproduce", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not an llmclf run" in result.stderr
