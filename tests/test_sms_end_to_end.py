"""The main job, end to end through the CLI on the real SMS Spam Collection (gpt2-tiny)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from llmclf.cli import main


def test_fit_evaluate_predict_on_real_sms(tmp_path: Path) -> None:
    run = tmp_path / "sms"
    started = time.monotonic()
    fit = CliRunner().invoke(
        main,
        [
            "fit",
            "--dataset",
            "sms",
            "--backbone",
            "gpt2-tiny",
            "--weights",
            "random",
            "--trainable",
            "all",
            "--lr",
            "5e-4",
            "--output",
            str(run),
            "--quiet",
        ],
    )
    seconds = time.monotonic() - started
    assert fit.exit_code == 0, fit.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n"] == 300 and metrics["validation"]["n"] == 149
    assert metrics["test"]["accuracy"] >= 0.92, (metrics["test"]["accuracy"], seconds)

    evaluate = CliRunner().invoke(main, ["evaluate", str(run), "--format", "json"])
    assert evaluate.exit_code == 0, evaluate.output
    assert json.loads(evaluate.stdout)["accuracy"] == metrics["test"]["accuracy"]

    predict = CliRunner().invoke(
        main,
        [
            "predict",
            str(run),
            "WINNER!! Claim your free prize now, call 09061701461",
            "See you at 6?",
            "--format",
            "json",
        ],
    )
    assert predict.exit_code == 0, predict.output
    assert [row["label"] for row in json.loads(predict.stdout)] == ["spam", "ham"]
