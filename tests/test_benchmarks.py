"""The benchmark harness runs end to end (gpt2-tiny, a few texts). No timing is asserted:
speed claims live in ``benchmarks/compare.py``'s output, never in the test suite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPARE = ROOT / "benchmarks" / "compare.py"
FINAL_LINE = re.compile(r"fit_speedup=\d+\.\d\d predict_speedup=\d+\.\d\d")


@pytest.mark.slow
def test_compare_smoke_runs_every_measurement(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--smoke", "--threads", "1", "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert FINAL_LINE.fullmatch(lines[-1]), lines[-1]
    for heading in ("Fine-tuning", "Prediction", "Fast path", "Targets (issue 6)", "matmul peak"):
        assert heading in proc.stdout

    results = json.loads(figures.read_text())
    assert results["mode"] == "smoke"
    assert results["machine"]["threads"] == 1
    # the fast path changes nothing: cached and plain training agree
    plain = results["fast-vs-plain"]
    assert plain["max_loss_difference_first_epoch"] <= 1e-5
    assert plain["auto"]["test_accuracy"] == plain["off"]["test_accuracy"]
    # same weights, same fp32 labels in llmclf and in transformers
    ours, theirs = results["predict-llmclf"]["fp32"], results["predict-hf"]
    for split in ("test", "all"):
        assert ours[split]["labels"] == theirs[split]["labels"]
    # each fit measured its phases and a 5-epoch figure
    for key in ("fit-llmclf fp32", "fit-llmclf auto", "fit-hf book", "fit-hf batch"):
        assert results[key]["fit5_s"] > 0
    assert results["fit-llmclf fp32"]["cache"].startswith("frozen-trunk cache on")


EXPORT_SPEED = ROOT / "benchmarks" / "export_speed.py"
RATIOS_LINE = re.compile(
    r"onnxruntime_vs_fp32=\d+\.\d\d onnxruntime_vs_bf16=\d+\.\d\d onnxruntime_vs_int8=\d+\.\d\d"
)


@pytest.mark.slow
def test_export_speed_smoke_measures_every_engine(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    figures = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(EXPORT_SPEED), "--smoke", "--threads", "1", "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert RATIOS_LINE.fullmatch(proc.stdout.strip().splitlines()[-1])
    results = json.loads(figures.read_text())["results"]
    assert set(results) == {"fp32", "bf16", "int8", "onnxruntime"}
    assert results["onnxruntime"]["max_prob_diff_vs_fp32"] <= 1e-4  # the same model


@pytest.mark.slow
def test_sweep_reuse_smoke_gets_identical_rows_both_ways(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    script = ROOT / "benchmarks" / "sweep_reuse.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--threads", "1", "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.fullmatch(r"sweep_reuse_speedup=\d+\.\d\d", proc.stdout.strip().splitlines()[-1])
    result = json.loads(figures.read_text())
    assert result["identical_metrics"] is True
    assert result["reused"] == {"data": 5, "trunk cache": 5}  # six rows, one build each
