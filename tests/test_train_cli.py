"""fit / evaluate / predict through the CLI on small file datasets (seconds each)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import fit_tiny_run, tiny_fit_args, write_topic_csv

from llmclf import Classifier
from llmclf.cli import main

RUN_FILES = {
    "model.safetensors",
    "llmclf.json",
    "metrics.json",
    "history.csv",
    "encoder.json",
    "vocab.bpe",
    "curves.png",
}


@pytest.fixture(scope="module")
def topic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained 3-class run, shared by the tests of this module."""
    return fit_tiny_run(tmp_path_factory.mktemp("topic"), 60, "--epochs", "6")


def test_run_directory_holds_exactly_the_documented_files(topic_run: Path) -> None:
    assert {p.name for p in topic_run.iterdir()} == RUN_FILES
    manifest = json.loads((topic_run / "llmclf.json").read_text())
    assert manifest["complete"] is True
    assert manifest["labels"] == ["account", "billing", "hardware"]
    assert set(manifest["data"]["split"]) == {"train", "validation", "test"}
    for key in ("backbone", "model", "tokenizer", "padding", "config", "torch_version"):
        assert key in manifest
    metrics = json.loads((topic_run / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    assert metrics["test"]["accuracy"] >= 0.9, metrics["test"]
    assert len(metrics["test"]["confusion_matrix"]) == 3


def test_multiclass_predicts_end_to_end(topic_run: Path) -> None:
    clf = Classifier.load(topic_run)
    got = clf.predict(["my printer screen cable is broken", "refund the invoice payment"])
    assert [p.label for p in got] == ["hardware", "billing"]


def test_load_is_offline_without_home_and_never_unpickles(
    topic_run: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLMCLF_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("LLMCLF_OFFLINE", "1")

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load called while loading a checkpoint")

    monkeypatch.setattr(torch, "load", forbidden)
    predictions = Classifier.load(topic_run).predict(["reset my password", ""])
    assert len(predictions) == 2
    for p in predictions:
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.score == max(p.probabilities.values())


def test_predict_texts_as_json(topic_run: Path) -> None:
    result = CliRunner().invoke(
        main, ["predict", str(topic_run), "login locked", "", "battery", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["text"] for r in rows] == ["login locked", "", "battery"]
    assert "read 3 texts, wrote 3 predictions" in result.stderr


def test_predict_csv_file_accounts_for_every_row(topic_run: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    texts = [
        'a, quoted "thing"',
        "",
        "multi\nline printer",
        "refund",
        *[f"row {i}" for i in range(30)],
    ]
    with open(source, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([i, t] for i, t in enumerate(texts))
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        main,
        [
            "predict",
            str(topic_run),
            "--file",
            str(source),
            "--output",
            str(out),
            "--chunk-size",
            "7",
        ],
    )
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == texts
    for r in rows:
        total = sum(float(v) for k, v in r.items() if k.startswith("p_"))
        assert total == pytest.approx(1.0, abs=1e-4)
    assert f"read {len(texts)} rows, wrote {len(texts)} predictions" in result.stderr


def test_predict_stdin_jsonl(topic_run: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["predict", str(topic_run), "--file", "-", "--format", "jsonl"],
        input="printer\nrefund please\n",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in io.StringIO(result.stdout)]
    assert [r["text"] for r in rows] == ["printer", "refund please"]


def test_evaluate_scores_the_saved_test_split(topic_run: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(topic_run), "--format", "json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    saved = json.loads((topic_run / "metrics.json").read_text())["test"]
    assert metrics["n"] == saved["n"]
    assert metrics["accuracy"] == pytest.approx(saved["accuracy"])
    table = CliRunner().invoke(main, ["evaluate", str(topic_run)])
    assert table.exit_code == 0 and "confusion" in table.output


def test_evaluate_another_dataset_whole(topic_run: Path, tmp_path: Path) -> None:
    other = write_topic_csv(tmp_path / "other.csv", rows_per_class=5, seed=9)
    result = CliRunner().invoke(
        main, ["evaluate", str(topic_run), "--dataset", str(other), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 15


def test_evaluate_a_file_in_another_encoding(topic_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "latin.csv"
    other.write_bytes(
        "body,team\ncafé printer jam,hardware\nnaïve login reset,account\n".encode("latin-1")
    )
    args = ["evaluate", str(topic_run), "--dataset", str(other), "--format", "json"]
    args += ["--text-column", "body", "--label-column", "team"]
    assert "--encoding" in CliRunner().invoke(main, args).stderr  # utf-8 fails and says how
    result = CliRunner().invoke(main, [*args, "--encoding", "latin-1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 2


def test_evaluate_refuses_a_split_with_another_dataset(topic_run: Path, tmp_path: Path) -> None:
    other = write_topic_csv(tmp_path / "other.csv", rows_per_class=5, seed=9)
    args = ["evaluate", str(topic_run), "--dataset", str(other), "--split", "train"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "pass one of them" in result.stderr


def test_evaluate_an_empty_split_is_an_error_not_a_score(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    run = tmp_path / "r"
    args = tiny_fit_args(data, run, "--epochs", "1", "--split", "0.7,0.3,0")
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 2
    assert "test split is empty" in result.stderr and "--split validation" in result.stderr


def test_same_seed_gives_identical_metrics(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=15)
    metrics = []
    for name in ("a", "b"):
        result = CliRunner().invoke(main, tiny_fit_args(data, tmp_path / name, "--epochs", "1"))
        assert result.exit_code == 0, result.output
        metrics.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert metrics[0] == metrics[1]


def test_fit_refuses_to_overwrite_a_finished_run(topic_run: Path, tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=5)
    result = CliRunner().invoke(main, tiny_fit_args(data, topic_run))
    assert result.exit_code == 2
    assert "already holds a finished run" in result.stderr and "--overwrite" in result.stderr
    assert "--resume" not in result.stderr  # a finished run has nothing to resume


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backbone", "gpt2-smal"], "did you mean 'gpt2-small'"),
        (["--epochs", "0"], "epochs: must be an integer >= 1"),
        (["--trainable", "everything"], "trainable:"),
    ],
)
def test_bad_fit_options_are_one_line_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=5)
    result = CliRunner().invoke(main, [*tiny_fit_args(data, tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_predict_on_a_missing_run_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "nope"), "hello"])
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_failed_predict_leaves_no_partial_output(topic_run: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "refund"}\n{"text": "printer"}\n{not json\n')
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        main, ["predict", str(topic_run), "--file", str(source), "--output", str(out)]
    )
    assert result.exit_code != 0
    assert "line 3" in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".out.jsonl*"))
