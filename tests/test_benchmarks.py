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
FINAL_LINE = re.compile(r"fit_speedup=\d+\.\d\d predict_speedup=\d+\.\d\d lora_speedup=\d+\.\d\d")


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
    # LoRA through every block, llmclf packed and transformers + PEFT, timed the same way
    for key in ("whole-llmclf lora", "whole-hf lora"):
        assert results[key]["epoch_s"] > 0 and results[key]["steps_run"] == 4
    assert results["whole-llmclf lora"]["cache"] == "frozen-trunk cache off: every block trains"
    assert "Training through every block" in proc.stdout


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


LONG_TEXT_POLICIES = ROOT / "benchmarks" / "long_text_policies.py"


@pytest.mark.slow
def test_long_text_policies_smoke_times_every_policy_against_head(
    tmp_path: Path, imdb_archive: Path
) -> None:
    figures = tmp_path / "figures.json"
    policies = ["head", "tail", "windows:128", "windows:128,agg=max"]
    command = [sys.executable, str(LONG_TEXT_POLICIES), "--smoke", "--reviews", "24"]
    proc = subprocess.run(
        [*command, "--threads", "1", "--json", str(figures), "--policies", *policies],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"head=1\.00 tail=\d+\.\d\d windows:128=\d+\.\d\d \S+=\d+\.\d\d", last)
    results = json.loads(figures.read_text())["results"]
    assert list(results) == policies
    assert results["head"]["examples"] == results["tail"]["examples"] == 24
    assert results["windows:128"]["examples"] > 24  # some reviews are over 256 tokens
    assert results["windows:128"]["examples"] == results["windows:128,agg=max"]["examples"]


@pytest.mark.slow
def test_imdb_benchmark_runs_and_a_spilled_cache_trains_like_one_in_memory(
    tmp_path: Path, imdb_archive: Path
) -> None:
    """benchmarks/imdb.py end to end on 40 reviews: the rss measurement and its spilled twin."""
    figures = tmp_path / "imdb.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "imdb.py"), "--only", "rss"]
    command += ["--scale", "0.0001", "--max-length", "32", "--threads", "1"]
    proc = subprocess.run(
        [*command, "--json", str(figures), "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(figures.read_text())
    memory, spilled = results["imdb-fit rss-40"], results["imdb-fit rss-40-spilled"]
    assert "in memory" in memory["cache"]
    assert f"memory-mapped file in {tmp_path / 'work'}" in spilled["cache"]
    assert spilled["test_accuracy"] == memory["test_accuracy"]
    assert spilled["sizes"] == memory["sizes"] and 0 < sum(memory["sizes"].values()) <= 40
    assert "rss-40" in proc.stdout and "peak RSS" in proc.stdout


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


@pytest.mark.slow
def test_compare_llama_smoke_runs_the_llama_family_against_transformers(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    command = [sys.executable, str(COMPARE), "--llama", "--smoke", "--threads", "1"]
    proc = subprocess.run(
        [*command, "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"llama_fit_speedup=\d+\.\d\d llama_predict_speedup=\d+\.\d\d", last)
    results = json.loads(figures.read_text())
    # the same trained weights in llmclf and in transformers: the same labels
    ours, theirs = results["predict-llmclf-llama"], results["predict-hf-llama"]
    assert ours["labels"] == theirs["labels"] and ours["n"] == theirs["n"] > 0
    assert results["llama-dir"]["size"] == "llama-tiny"
