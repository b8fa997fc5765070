"""The ``windows`` long-text policy: every token read in overlapping windows of the cap, one
prediction per text (issue 14, "Long texts").

Windows are cut exactly (a hand-made list), their probabilities aggregated exactly (a hand
computation, mean and max), a text's prediction does not depend on its neighbours, every input
text gives one output row through Python, the CLI and HTTP, a trained run reproduces its metrics
through ``Classifier.load`` and ``llmclf evaluate``, and bad specs fail before any data work.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from helpers import tiny_config, tiny_fit_args, write_topic_csv
from rich.console import Console
from test_batch_independence import LONG, assert_independent, untrained
from test_long_texts import signal_at_the_end

from llmclf import Classifier, Trainer
from llmclf.cli import main
from llmclf.data.long_texts import aggregate_examples, get_long_text_policy, to_examples
from llmclf.data.padding import get_policy, policy_from_state
from llmclf.data.report import DataReport
from llmclf.errors import ConfigError, ExportError
from llmclf.evaluation import evaluate_run
from llmclf.export.hf import check_hf
from llmclf.runs import checkpoint as ckpt
from llmclf.scoring import score
from llmclf.training.dry_run import dry_run
from llmclf.training.trainer import check_names

TEXT = list(range(20))
CAP = 16  # the trained run's --max-length; its texts are 31 tokens with the label word last


# ----- the policy --------------------------------------------------------------------------
def test_windows_are_overlapping_slices_of_the_cap_ending_at_the_last_token() -> None:
    policy = get_long_text_policy("windows:4")
    assert policy.pieces(TEXT, 8) == [TEXT[0:8], TEXT[4:12], TEXT[8:16], TEXT[12:20]]
    assert policy.pieces(TEXT[:19], 8) == [TEXT[0:8], TEXT[4:12], TEXT[8:16], TEXT[11:19]]
    assert policy.pieces(TEXT[:8], 8) == [TEXT[:8]]  # a text within the cap is one window
    assert policy.pieces([], 8) == [[]]
    halves = get_long_text_policy("windows")  # default stride: half the cap
    assert halves.pieces(TEXT, 10) == [TEXT[0:10], TEXT[5:15], TEXT[10:20]]
    for length in range(1, 40):  # ceil((L - n) / S) + 1 windows, every token read
        expected = 1 if length <= 8 else -(-(length - 8) // 4) + 1
        assert policy.count(length, 8) == expected == len(policy.pieces(list(range(length)), 8))
        covered = {t for w in policy.pieces(list(range(length)), 8) for t in w}
        assert covered == set(range(length)) and policy.tokens_read(length, 8) == length


def test_max_windows_reads_the_first_windows_and_says_what_it_dropped() -> None:
    policy = get_long_text_policy("windows:4,max_windows=2")
    assert policy.pieces(TEXT, 8) == [TEXT[0:8], TEXT[4:12]]
    assert policy.tokens_read(20, 8) == 12 and policy.reach(TEXT, 8) == TEXT[:12]
    examples, owners = to_examples([TEXT, TEXT[:5]], policy, 8)
    assert examples == [TEXT[0:8], TEXT[4:12], TEXT[:5]] and owners == [0, 0, 1]


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("windows", "windows"),
        ("windows:4", "windows:4"),
        ("windows:stride=4", "windows:4"),
        ("windows:agg=max", "windows:agg=max"),
        ("windows:4,agg=max,max_windows=3", "windows:4,agg=max,max_windows=3"),
        ("windows:max-windows=3,stride=4", "windows:4,max_windows=3"),
    ],
)
def test_specs_parse_and_round_trip_through_the_padding_state(spec: str, canonical: str) -> None:
    assert get_long_text_policy(spec).spec() == canonical
    policy = get_policy("pad-batch", 8, 1024, 0)
    policy.set_long_texts(spec)
    again = policy_from_state(policy.state(), 1024, 0).long_text
    assert again.spec() == canonical and again.pieces(TEXT, 8) == policy.long_text.pieces(TEXT, 8)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("windows:0", "the stride must be a whole number >= 1, got '0'"),
        ("windows:-4", "the stride must be a whole number >= 1, got '-4'"),
        ("windows:x", "the stride must be a whole number >= 1"),
        ("windows:4,agg=median", "agg must be one of mean, max"),
        ("windows:4,max_windows=0", "max_windows must be a whole number >= 1"),
        ("windows:4,overlap=2", "unknown setting 'overlap'"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
        get_long_text_policy(spec)
    assert "\n" not in str(error.value)


def test_a_stride_past_the_cap_fails_at_fit_before_any_data_work(tmp_path: Path) -> None:
    missing = tmp_path / "not-there.csv"  # reading it would fail with another error
    for extra, expected in (
        (["--long-texts", "windows:0"], "the stride must be a whole number >= 1"),
        (["--long-texts", "windows:17", "--max-length", "16"], "the stride 17 is longer than"),
    ):
        result = CliRunner().invoke(main, tiny_fit_args(missing, tmp_path / "r", *extra))
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert expected in line and "\n" not in line, line
        assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="use a stride of at most 16"):
        Trainer(tiny_config(missing, long_texts="windows:17", max_length=16)).fit()


# ----- aggregation ---------------------------------------------------------------------------
def test_aggregation_equals_a_hand_computation() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    owners = [0, 1, 0, 0, 2]  # text 0 has three windows, in any order among the others
    texts, mean = aggregate_examples(probs, owners, get_long_text_policy("windows"))
    assert texts == [0, 1, 2]
    expected = [[(0.9 + 0.6 + 0.3) / 3, (0.1 + 0.4 + 0.7) / 3], [0.2, 0.8], [0.5, 0.5]]
    assert torch.allclose(mean, torch.tensor(expected))
    _, top = aggregate_examples(probs, owners, get_long_text_policy("windows:agg=max"))
    expected = [[0.9 / 1.6, 0.7 / 1.6], [0.2, 0.8], [0.5, 0.5]]  # max per class, renormalised
    assert torch.allclose(top, torch.tensor(expected))


def test_scores_are_per_text_and_count_only_the_texts_scored() -> None:
    policy = get_policy("pad-batch", 8, 1024, 0)
    policy.set_long_texts("windows")
    table = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.5, 0.0]])
    owners, labels = [0, 0, 1, 2, 2], [0, 0, 1, 1, 1]  # windows of texts labelled 0, 1, 1
    probs = torch.softmax(table, -1)
    texts = torch.stack([probs[:2].mean(0), probs[2], probs[3:].mean(0)])
    y = torch.tensor([0, 1, 1])
    expected = -torch.log(texts[torch.arange(3), y]).mean().item()

    def logits(positions: list[int], batch) -> torch.Tensor:
        return table[positions]

    token_ids = [[1], [2], [3], [4], [5]]
    metrics = score(
        logits, token_ids, labels, policy, label_names=["a", "b"], batch_size=2, owners=owners
    )
    assert metrics["n"] == 3 and metrics["loss"] == pytest.approx(expected, abs=1e-6)
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # text 2's windows lean to a
    first = score(
        logits, token_ids, labels, policy, label_names=["a", "b"], batch_size=2, owners=owners,
        max_batches=1,
    )  # fmt: skip
    assert first["n"] == 1 and first["accuracy"] == 1.0  # only text 0's windows were scored


@pytest.mark.parametrize("spec", ["windows:5", "windows:5,agg=max"])
def test_a_classifier_aggregates_the_windows_it_reads(spec: str) -> None:
    classifier = untrained("pad-batch", "last-token")  # a 12-token cap
    classifier.policy.set_long_texts(spec)
    text = " ".join(["my printer is on fire again and the screen is not working, help"] * 2)
    ids = classifier.tokenizer.encode(text)
    assert len(ids) > 20
    windows = [ids[s : s + 12] for s in [*range(0, len(ids) - 12, 5), len(ids) - 12]]
    with torch.no_grad():
        each = torch.cat(
            [
                torch.softmax(classifier.model(torch.tensor([w]), torch.tensor([len(w)])), -1)
                for w in windows
            ]
        )
    if spec.endswith("max"):
        top = each.max(dim=0).values
        expected = top / top.sum()
    else:
        expected = each.mean(dim=0)
    got = classifier.predict_proba([text])[0]
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)
    (prediction,) = classifier.predict([text])
    assert (prediction.tokens_used, prediction.tokens_dropped) == (len(ids), 0)


@pytest.mark.parametrize("spec", ["windows", "windows:3,agg=max", "windows:4,max_windows=2"])
def test_a_text_is_predicted_the_same_alone_and_beside_any_neighbours(spec: str) -> None:
    for padding, pooling in (("pad-batch", "last-token"), ("truncate-dataset", "last")):
        classifier = untrained(padding, pooling)
        classifier.policy.set_long_texts(spec)
        assert_independent(classifier)
        for batch_size in (1, 2, 32):  # windows of one text split across batches, or not
            alone = classifier.predict_proba([LONG], batch_size=batch_size)
            beside = classifier.predict_proba(["ok", LONG, "hi"], batch_size=batch_size)
            assert torch.allclose(alone[0], beside[1], atol=1e-5)


def test_max_windows_reports_the_tokens_it_left_out() -> None:
    classifier = untrained("pad-batch", "last-token")
    classifier.policy.set_long_texts("windows:4,max_windows=2")
    n = len(classifier.tokenizer.encode(LONG.strip()))  # predict strips a text
    long, short = classifier.predict([LONG, "ok"])
    assert (long.tokens_used, long.tokens_dropped, long.truncated) == (16, n - 16, True)
    assert (short.tokens_used, short.tokens_dropped) == (1, 0)


# ----- a trained run -------------------------------------------------------------------------
def fit_windows(root: Path, long_texts: str, **changes):
    from conftest import SHARED_DATA

    data = signal_at_the_end(root / "end.csv")
    # by default the head alone on a random trunk: the frozen-trunk cache applies
    fields = {"max_length": CAP, "trainable": "head", "epochs": 4, "lr": 1e-2, **changes}
    config = tiny_config(data, root / "run", long_texts=long_texts, **fields)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCLF_HOME", str(SHARED_DATA))
        mp.setenv("LLMCLF_OFFLINE", "1")
        return Trainer(config).fit(), data


@pytest.fixture(scope="module")
def windows_run(tmp_path_factory: pytest.TempPathFactory):
    return fit_windows(tmp_path_factory.mktemp("windows"), "windows")


def test_windows_learn_a_label_at_the_end_that_head_never_reads(
    windows_run, tmp_path: Path
) -> None:
    run, _ = windows_run
    assert run.metrics["test"]["accuracy"] >= 0.9, run.metrics["test"]
    assert run.metrics["test"]["n"] == 24  # texts, not windows
    head, _ = fit_windows(tmp_path, "head")
    assert head.metrics["test"]["accuracy"] <= 0.75, head.metrics["test"]


def test_the_report_counts_texts_and_windows(windows_run) -> None:
    run, _ = windows_run
    report = json.loads((run.output_dir / "llmclf.json").read_text())["data"]["report"]
    sizes = report["split_sizes"]  # every text: 31 tokens -> windows at 0, 8 and 15
    assert report["examples"] == {name: 3 * n for name, n in sizes.items()}
    assert report["windowed"] == sizes
    assert report["truncated"] == report["tokens_dropped"] == dict.fromkeys(sizes, 0)
    assert report["long_texts"] == "windows"
    console = Console(width=200, record=True)
    console.print(DataReport(**report).render())
    shown = console.export_text()
    assert f"windows: train       │ {sizes['train']} texts -> {3 * sizes['train']} windows" in shown
    assert f"all, in windows of {CAP} (pad-batch); long texts: windows" in shown


def test_a_saved_run_reproduces_its_metrics_through_load_and_evaluate(windows_run) -> None:
    run, data = windows_run
    saved = json.loads((run.output_dir / ckpt.METRICS_FILE).read_text())
    manifest = json.loads((run.output_dir / "llmclf.json").read_text())
    assert manifest["padding"]["long_texts"] == "windows"
    frame = pd.read_csv(data)
    rows = manifest["data"]["split"]["test"]
    classifier = Classifier.load(run.output_dir, device="cpu")
    probs = classifier.predict_proba(frame["text"][rows].tolist())
    labels = torch.tensor([classifier.labels.index(x) for x in frame["label"][rows]])
    loss = -torch.log(probs.gather(1, labels[:, None])).mean().item()
    accuracy = (probs.argmax(1) == labels).float().mean().item()
    assert loss == pytest.approx(saved["test"]["loss"], abs=1e-6)
    assert accuracy == pytest.approx(saved["test"]["accuracy"])
    for split in ("validation", "test"):
        for batch_size in (1, 32):
            again = evaluate_run(run.output_dir, split=split, batch_size=batch_size, device="cpu")
            assert again["n"] == saved[split]["n"] == len(manifest["data"]["split"][split])
            assert again["accuracy"] == saved[split]["accuracy"]
            assert again["loss"] == pytest.approx(saved[split]["loss"], abs=1e-6)
    with pytest.raises(ExportError, match="--long-texts windows"):
        check_hf(classifier)  # a transformers tokenizer cannot cut windows


def test_one_row_per_text_through_python_cli_and_http(windows_run, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from llmclf.serve import create_app

    run, data = windows_run
    texts = [*pd.read_csv(data)["text"].tolist()[:5], LONG, "", "ok"]
    classifier = Classifier.load(run.output_dir, device="cpu")
    expected = classifier.predict(texts)
    assert len(expected) == len(texts)
    n = len(classifier.tokenizer.encode(LONG.strip()))  # predict strips a text
    assert (expected[5].tokens_used, expected[5].tokens_dropped) == (n, 0)

    inputs = tmp_path / "in.csv"
    pd.DataFrame({"text": texts}).to_csv(inputs, index=False)
    for suffix in ("csv", "jsonl"):
        out = tmp_path / f"out.{suffix}"
        args = ["predict", str(run.output_dir), "--file", str(inputs), "--output", str(out)]
        result = CliRunner().invoke(main, [*args, "--text-column", "text"])
        assert result.exit_code == 0, result.output
        assert f"read {len(texts)} rows, wrote {len(texts)} predictions" in result.stderr
        assert "no text was cut (the model reads every token, in windows of 16)" in result.stderr
        if suffix == "csv":
            got = list(csv.DictReader(out.open(encoding="utf-8")))
            scores = [float(row[f"p_{expected[0].label}"]) for row in got]
        else:
            got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            scores = [row["probabilities"][expected[0].label] for row in got]
        assert len(got) == len(texts)
        for got_p, want in zip(scores, expected, strict=True):
            assert got_p == pytest.approx(want.probabilities[expected[0].label], abs=1e-5)

    with TestClient(create_app(run.output_dir, device="cpu")) as client:
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
    assert len(answer) == len(texts)
    for got, want in zip(answer, expected, strict=True):
        assert got["label"] == want.label and got["tokens_used"] == want.tokens_used
        assert got["score"] == pytest.approx(want.score, abs=1e-5)


def test_the_dry_run_counts_windows(tmp_path: Path) -> None:
    data = signal_at_the_end(tmp_path / "end.csv")
    config = tiny_config(data, tmp_path / "run", long_texts="windows", max_length=CAP)
    report = dry_run(config)
    sizes = report.data["split_sizes"]
    assert report.data["examples"] == {name: 3 * n for name, n in sizes.items()}
    assert f"long texts windows: train {sizes['train']:,} texts -> " in report.render()
    # every window is CAP tokens wide, so training reads examples x CAP padded positions
    positions = report.data["examples"]["train"] * CAP
    per_position = report.calibration["train_seconds_per_position"]
    expected = config.epochs * positions * per_position
    assert report.estimate["training"] == pytest.approx(expected, rel=0.02)
    assert not (tmp_path / "run").exists()


def test_an_onnx_export_predicts_with_the_same_windows(windows_run, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from llmclf.export import export_run

    run, data = windows_run
    texts = [*pd.read_csv(data)["text"].tolist()[:4], LONG, "ok"]
    export = export_run(run.output_dir, tmp_path / "onnx", format="onnx")
    onnx = Classifier.load(export, engine="onnxruntime")
    assert onnx.policy.long_text.spec() == "windows"
    torch_probs = Classifier.load(run.output_dir, device="cpu").predict_proba(texts)
    assert torch.allclose(onnx.predict_proba(texts), torch_probs, atol=1e-5)


def test_without_the_cache_evaluate_also_reproduces_metrics_json(tmp_path: Path) -> None:
    run, _ = fit_windows(tmp_path, "windows:4,agg=max", trainable="all", epochs=1, lr=1e-3)
    saved = json.loads((run.output_dir / ckpt.METRICS_FILE).read_text())
    again = evaluate_run(run.output_dir, batch_size=5, device="cpu")  # windows split over batches
    assert again["n"] == saved["test"]["n"] == 24
    assert again["accuracy"] == saved["test"]["accuracy"]
    assert again["loss"] == pytest.approx(saved["test"]["loss"], abs=1e-6)


@pytest.mark.parametrize(
    "spec", ["windows:stride=64,stride=32", "windows:64,64", "windows:64,agg=max,agg=mean"]
)
def test_a_setting_given_twice_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="given twice"):
        get_long_text_policy(spec)


def test_a_head_as_long_as_the_cap_is_refused_at_fit(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=5)
    config = tiny_config(data, tmp_path / "run", long_texts="head+tail:32", max_length=32)
    with pytest.raises(ConfigError, match=r"use K < 32 \(e\.g\. head\+tail:8\)"):
        check_names(config)
    check_names(tiny_config(data, tmp_path / "run", long_texts="head+tail:31", max_length=32))
