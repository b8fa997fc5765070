"""The main job, end to end through the CLI on the real SMS Spam Collection (gpt2-tiny)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
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


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["llama-tiny", "qwen3-tiny"])
def test_modern_backbones_fit_predict_and_serve_real_sms(tmp_path: Path, backbone: str) -> None:
    """Llama and Qwen3 from random init learn SMS spam as gpt2-tiny does (two epochs suffice)."""
    from fastapi.testclient import TestClient

    from llmclf.serve import create_app

    run = tmp_path / backbone
    fit = CliRunner().invoke(
        main,
        [
            "fit",
            "--dataset",
            "sms",
            "--backbone",
            backbone,
            "--weights",
            "random",
            "--trainable",
            "all",
            "--lr",
            "5e-4",
            "--epochs",
            "2",
            "--output",
            str(run),
            "--quiet",
        ],
    )
    assert fit.exit_code == 0, fit.output
    manifest = json.loads((run / "llmclf.json").read_text())
    assert manifest["model"]["architecture"] == backbone.removesuffix("-tiny")
    assert manifest["tokenizer"]["name"] == "gpt2"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.92, metrics["test"]

    texts = ["WINNER!! Claim your free prize now, call 09061701461", "See you at 6?"]
    predict = CliRunner().invoke(main, ["predict", str(run), *texts, "--format", "json"])
    assert predict.exit_code == 0, predict.output
    assert [row["label"] for row in json.loads(predict.stdout)] == ["spam", "ham"]
    with TestClient(create_app(run, device="cpu")) as client:
        response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    assert [row["label"] for row in response.json()["predictions"]] == ["spam", "ham"]
