"""Every example runs, on tiny sizes, as a user would run it: a subprocess.

The conftest's autouse fixture sets LLMCLF_HOME (../shared/data) and LLMCLF_OFFLINE=1 in
os.environ, so the subprocesses inherit them and never touch the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TICKETS = EXAMPLES / "data" / "tickets.csv"
TINY = ["--backbone", "gpt2-tiny", "--weights", "random", "--epochs", "1"]
RUN_FILES = {"model.safetensors", "llmclf.json", "metrics.json", "history.csv"}

pytestmark = pytest.mark.slow


def run(args: list[str], *, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    """Run ``args`` in a subprocess from the repository root; fail with its output."""
    result = subprocess.run(
        args,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def test_every_example_has_a_test() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    packages = {p.name for p in EXAMPLES.iterdir() if (p / "pyproject.toml").is_file()}
    assert scripts == {"custom_dataset.py", "python_api.py"}, "add a test for the new example"
    assert packages == {"plugin_package"}, "add a test for the new example package"


def test_custom_dataset(tmp_path: Path) -> None:
    output = tmp_path / "tickets"
    out = run([sys.executable, str(EXAMPLES / "custom_dataset.py"), *TINY, "--output", str(output)])
    assert {p.name for p in output.iterdir()} >= RUN_FILES
    assert json.loads((output / "llmclf.json").read_text())["labels"] == [
        "account",
        "billing",
        "hardware",
    ]
    assert "re-evaluated test split of tickets" in out
    assert out.count("I was billed twice") == 1


def test_python_api(tmp_path: Path) -> None:
    output = tmp_path / "api"
    # the real default is the SMS run; a 60-row file keeps the test to seconds
    out = run(
        [
            sys.executable,
            str(EXAMPLES / "python_api.py"),
            *TINY,
            "--dataset",
            str(TICKETS),
            "--balance",
            "none",
            "--trainable",
            "all",
            "--lr",
            "1e-3",
            "--output",
            str(output),
        ]
    )
    assert {p.name for p in output.iterdir()} >= RUN_FILES
    assert "epoch 1:" in out
    assert f"saved {output}; test accuracy" in out
    assert out.count("See you at 6? I'll bring the tickets.") == 1
    assert out.count("(account ") == 3  # three predictions, each with every probability


@pytest.fixture(scope="module")
def plugin_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/plugin_package installed (no network, no build isolation) into a folder."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "plugin_package"
    # build from a copy, so setuptools leaves no build/ or *.egg-info in the repository
    shutil.copytree(
        EXAMPLES / "plugin_package",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    target = work / "site"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ]
    )
    assert (target / "llmclf_example_plugin").is_dir()
    return target


def test_plugin_package_entries_appear_in_list(plugin_target: Path) -> None:
    env = {"PYTHONPATH": str(plugin_target)}
    datasets = run([sys.executable, "-m", "llmclf", "list", "datasets"], env=env)
    balancers = run([sys.executable, "-m", "llmclf", "list", "balancers"], env=env)
    assert "reviews-mini" in datasets
    assert "undersample-2x" in balancers
    assert "llmclf-example-plugin" in datasets
    assert "llmclf-example-plugin" in balancers
    everything = run([sys.executable, "-m", "llmclf", "list"], env=env)
    assert "reviews-mini" in everything and "undersample-2x" in everything
    # without the package on the path, neither entry exists
    plain = run([sys.executable, "-m", "llmclf", "list"])
    assert "reviews-mini" not in plain and "undersample-2x" not in plain


def test_plugin_package_trains(plugin_target: Path, tmp_path: Path) -> None:
    output = tmp_path / "reviews"
    run(
        [
            sys.executable,
            "-m",
            "llmclf",
            "fit",
            "--dataset",
            "reviews-mini",
            "--balance",
            "undersample-2x",
            *TINY,
            "--output",
            str(output),
            "--quiet",
        ],
        env={"PYTHONPATH": str(plugin_target)},
    )
    manifest = json.loads((output / "llmclf.json").read_text())
    report = manifest["data"]["report"]
    assert report["class_counts"] == {"negative": 8, "positive": 20}
    assert report["balanced_counts"] == {"negative": 8, "positive": 16}
