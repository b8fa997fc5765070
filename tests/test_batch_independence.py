"""A text's prediction never depends on its batch, and every cut is visible (issue 12: 2, 3, 7).

Every padding policy and pooling that training allows gives a text the same probabilities
alone, in any batch and in any order, through the Python API, the CLI and HTTP; ``evaluate``
reproduces ``metrics.json``; the data report and every prediction say how many tokens were cut.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from helpers import Collect, tiny_config, tiny_fit_args, topic_frame

import llmclf
from llmclf import Classifier
from llmclf.cli import main
from llmclf.data.padding import get_policy, policy_from_state
from llmclf.data.tokenizer import get_tokenizer
from llmclf.errors import ConfigError
from llmclf.evaluation import evaluate_run
from llmclf.models.classifier import POOLINGS, SequenceClassifier
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.runs import checkpoint as ckpt

CONTEXT = 48
CUT = 4  # the trained run's --max-length: most of its training texts are longer
LONG = "printer " * 200  # far past every cap
NEIGHBOURS = ["ok", "hi", LONG]
TEXTS = [
    "U dun say so early hor... U c already then say...",
    "WINNER!! Claim your free prize now",
    "ok",
    "",
    "my printer is on fire again and the screen is not working today, please help " * 3,
]
ALLOWED = [
    (padding, pooling)
    for padding in ("pad-batch", "pad-dataset", "truncate-dataset")
    for pooling in POOLINGS
    if not (padding == "pad-batch" and pooling == "last")
]


def assert_independent(classifier: Classifier, texts: list[str] = TEXTS) -> None:
    """Each text's probabilities alone equal those in a mixed batch, in either order."""
    for text in texts:
        alone = classifier.predict_proba([text])[0]
        mixed = classifier.predict_proba([text, *NEIGHBOURS])[0]
        reversed_ = classifier.predict_proba([*NEIGHBOURS[::-1], text])[-1]
        pairs = classifier.predict_proba([text, "ok"], batch_size=2)[0]
        for other in (mixed, reversed_, pairs):
            assert torch.allclose(alone, other, rtol=0, atol=1e-5), (text, alone, other)


def untrained(padding: str, pooling: str, max_length: int | None = 12) -> Classifier:
    """A random 2-layer classifier behind the real `Classifier` (no run directory needed)."""
    torch.manual_seed(0)
    tokenizer = get_tokenizer()
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, context_length=CONTEXT)
    model = SequenceClassifier(GPT2(config), 3, pooling=pooling)
    policy = get_policy(padding, max_length, CONTEXT, tokenizer.pad_id)
    policy.fit([3, 9, 10])  # pad-dataset learns 10; the others learn nothing
    return Classifier(
        model, tokenizer, policy, ["a", "b", "c"], manifest={}, device=torch.device("cpu")
    )


@pytest.mark.parametrize(("padding", "pooling"), ALLOWED)
def test_every_allowed_combination_predicts_a_text_the_same_in_any_batch(
    padding: str, pooling: str
) -> None:
    assert_independent(untrained(padding, pooling))


@pytest.mark.parametrize(
    ("state", "pooling"),
    [
        ({"name": "truncate-batch", "max_length": 16, "length": None}, "last-token"),
        ({"name": "truncate-dataset", "max_length": None, "length": 2}, "mean"),
        ({"name": "pad-batch", "max_length": None, "length": None}, "last"),
    ],
)
def test_runs_saved_with_a_batch_dependent_policy_predict_one_text_at_a_time(
    state: dict, pooling: str
) -> None:
    classifier = untrained("pad-batch", "last-token")
    classifier.model.pooling = pooling
    classifier.policy = policy_from_state(state, CONTEXT, classifier.tokenizer.pad_id)
    classifier.one_at_a_time = classifier.batch_dependence() is not None
    assert classifier.one_at_a_time
    assert_independent(classifier)


# ----- trained runs ------------------------------------------------------------------------
def varied_frame() -> pd.DataFrame:
    """Topic texts of very different lengths: one word, a few, and three times as many."""
    frame = topic_frame(rows_per_class=30, seed=3)
    texts = frame["text"].tolist()
    for i in range(0, len(texts), 5):
        texts[i] = texts[i].split()[0]
    for i in range(2, len(texts), 4):
        texts[i] = " ".join([texts[i]] * 3)
    return frame.assign(text=texts)


def fit_run(root: Path, **changes) -> tuple[Path, Collect]:
    from conftest import SHARED_DATA

    data = root / "varied.csv"
    varied_frame().to_csv(data, index=False)
    reporter = Collect()
    config = tiny_config(data, root / "run", epochs=1, **changes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCLF_HOME", str(SHARED_DATA))
        mp.setenv("LLMCLF_OFFLINE", "1")
        llmclf.Trainer(config, reporter=reporter).fit()
    return root / "run", reporter


@pytest.fixture(scope="module")
def book_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Collect]:
    """The book's cut: every text cut and padded to CUT tokens, read at position T-1."""
    root = tmp_path_factory.mktemp("truncate-dataset")
    return fit_run(root, padding="truncate-dataset", max_length=CUT, pooling="last")


@pytest.fixture(scope="module")
def pad_dataset_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Collect]:
    return fit_run(tmp_path_factory.mktemp("pad-dataset"), padding="pad-dataset", pooling="mean")


@pytest.mark.parametrize("fixture", ["book_run", "pad_dataset_run"])
def test_evaluate_reproduces_metrics_json(fixture: str, request: pytest.FixtureRequest) -> None:
    run, _ = request.getfixturevalue(fixture)
    saved = json.loads((run / ckpt.METRICS_FILE).read_text())
    for split in ("validation", "test"):
        for batch_size in (1, 32):
            again = evaluate_run(run, split=split, batch_size=batch_size, device="cpu")
            assert again["accuracy"] == saved[split]["accuracy"], (split, batch_size)
            assert again["loss"] == pytest.approx(saved[split]["loss"], abs=1e-5)


def test_a_trained_run_predicts_the_same_through_python_cli_and_http(
    book_run: tuple[Path, Collect],
) -> None:
    from fastapi.testclient import TestClient

    from llmclf.serve import create_app

    run, _ = book_run
    classifier = Classifier.load(run, device="cpu")
    assert_independent(classifier)
    texts = [t for t in TEXTS if t]
    alone = [classifier.predict([t])[0].probabilities for t in texts]

    def cli(*args: str) -> list[dict]:
        result = CliRunner().invoke(main, ["predict", str(run), *args, "--format", "jsonl"])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines()]

    with TestClient(create_app(run, device="cpu")) as client:
        for text, expected in zip(texts, alone, strict=True):
            for got in (
                cli(text)[0],
                cli(*NEIGHBOURS, text)[-1],
                client.post("/predict", json={"texts": [text]}).json()["predictions"][0],
                client.post("/predict", json={"texts": [text, *NEIGHBOURS]}).json()["predictions"][
                    0
                ],
            ):
                for label, p in expected.items():
                    assert got["probabilities"][label] == pytest.approx(p, abs=1e-5), text


def test_fit_refuses_a_batch_dependent_combination_before_reading_data(tmp_path: Path) -> None:
    missing = tmp_path / "not-there.csv"
    for extra, expected in (
        (["--padding", "truncate-batch"], "padding truncate-batch cuts a text to a length set"),
        (["--pooling", "last"], "--padding pad-dataset"),
        (["--padding", "truncate-dataset"], "pass --max-length N"),
    ):
        result = CliRunner().invoke(main, tiny_fit_args(missing, tmp_path / "r", *extra))
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert expected in line and "\n" not in line, line
        assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="--pooling last-token"):
        llmclf.Trainer(tiny_config(missing, pooling="last", padding="pad-batch")).fit()


def test_an_old_run_with_a_batch_dependent_policy_loads_with_a_warning(
    book_run: tuple[Path, Collect], tmp_path: Path
) -> None:
    run = tmp_path / "old"
    shutil.copytree(book_run[0], run)
    manifest = json.loads((run / ckpt.MANIFEST_FILE).read_text())
    manifest["padding"] = {"name": "truncate-batch", "max_length": 6, "length": None}
    (run / ckpt.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="predicted one at a time") as caught:
        classifier = Classifier.load(run, device="cpu")
    assert "truncate-batch" in str(caught[0].message)
    assert classifier.one_at_a_time
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an allowed combination loads silently
        assert not Classifier.load(book_run[0], device="cpu").one_at_a_time
    result = CliRunner().invoke(main, ["predict", str(run), "hello", "--format", "json"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "one at a time" in line]
    assert len(warned) == 1 and warned[0].startswith("Warning: "), result.stderr


# ----- the report shows the length really used (item 3) -----------------------------------
def token_counts(run: Path) -> dict[str, list[int]]:
    from llmclf.data.labels import LabelMap
    from llmclf.data.pipeline import DataSpec, load_split

    manifest = json.loads((run / ckpt.MANIFEST_FILE).read_text())
    spec = DataSpec(dataset=manifest["config"]["dataset"], balance="none")
    labels = LabelMap(tuple(manifest["labels"]))
    return {
        name: load_split(spec, labels, ids, get_tokenizer(), 1024).token_counts
        for name, ids in manifest["data"]["split"].items()
    }


def test_the_report_shows_the_cut_truncate_dataset_really_makes(
    book_run: tuple[Path, Collect],
) -> None:
    run, reporter = book_run
    report = json.loads((run / ckpt.MANIFEST_FILE).read_text())["data"]["report"]
    counts = token_counts(run)
    assert report["max_tokens"] == CUT and report["batch_width"] == CUT
    assert report["padding"] == "truncate-dataset"
    assert report["truncated"] == {s: sum(n > CUT for n in c) for s, c in counts.items()}
    dropped = {s: sum(max(0, n - CUT) for n in c) for s, c in counts.items()}
    assert report["tokens_dropped"] == dropped
    # most training texts are longer than CUT tokens: a loud warning, in the events and the report
    assert report["truncated"]["train"] > len(counts["train"]) / 2
    warning = [m for m in reporter.messages() if m.startswith("warning: padding truncate-dataset")]
    assert len(warning) == 1 and f"to {CUT} tokens" in warning[0] and "--max-length" in warning[0]
    assert report["cut_warning"] == warning[0].removeprefix("warning: ")
    data_event = next(d["report"] for e, d in reporter.events if e == "data")
    assert data_event["max_tokens"] == CUT


def test_the_report_shows_pad_dataset_cuts_longer_texts_to_the_longest_training_text(
    pad_dataset_run: tuple[Path, Collect],
) -> None:
    run, reporter = pad_dataset_run
    report = json.loads((run / ckpt.MANIFEST_FILE).read_text())["data"]["report"]
    counts = token_counts(run)
    longest = max(counts["train"])
    assert report["max_tokens"] == longest and report["batch_width"] == longest
    assert report["truncated"]["train"] == 0
    assert report["truncated"] == {s: sum(n > longest for n in c) for s, c in counts.items()}
    assert report["cut_warning"] is None
    assert not [m for m in reporter.messages() if m.startswith("warning:")]
    assert Classifier.load(run, device="cpu").max_tokens == longest


def test_the_rendered_report_names_the_length_and_the_cuts(book_run: tuple[Path, Collect]) -> None:
    from rich.console import Console

    from llmclf.data.report import DataReport

    report = json.loads((book_run[0] / ckpt.MANIFEST_FILE).read_text())["data"]["report"]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(DataReport(**report).render())
    text = console.export_text()
    assert f"at most {CUT} (truncate-dataset), every batch {CUT} wide" in text
    assert f"{report['truncated']['test']} texts, {report['tokens_dropped']['test']} tokens" in text
    assert "warning" in text


# ----- every cut at predict time is visible (item 7) ----------------------------------------
def test_a_prediction_says_how_many_tokens_it_read(book_run: tuple[Path, Collect]) -> None:
    classifier = Classifier.load(book_run[0], device="cpu")
    n = len(classifier.tokenizer.encode(LONG.strip()))
    long, short, empty = classifier.predict([LONG, "ok", ""])
    assert (long.tokens_used, long.tokens_dropped, long.truncated) == (CUT, n - CUT, True)
    assert (short.tokens_used, short.tokens_dropped, short.truncated) == (1, 0, False)
    assert (empty.tokens_used, empty.tokens_dropped) == (0, 0)
    assert long.to_dict()["tokens_dropped"] == n - CUT
    assert list(long.to_dict()) == [
        "label",
        "score",
        "probabilities",
        "tokens_used",
        "tokens_dropped",
    ]


def test_predict_counts_cut_texts_on_the_closing_line_and_per_row(
    book_run: tuple[Path, Collect], tmp_path: Path
) -> None:
    run = book_run[0]
    result = CliRunner().invoke(main, ["predict", str(run), LONG, "ok", LONG, "--format", "json"])
    assert result.exit_code == 0, result.output
    closing = f"read 3 texts, wrote 3 predictions; 2 texts were cut to the first {CUT} tokens"
    assert closing in result.stderr
    rows = json.loads(result.stdout)
    assert [r["tokens_dropped"] > 0 for r in rows] == [True, False, True]
    assert [r["tokens_used"] for r in rows] == [CUT, 1, CUT]

    out = tmp_path / "p.csv"
    result = CliRunner().invoke(main, ["predict", str(run), "ok", "--output", str(out)])
    assert f"; no text was cut (the model reads up to {CUT} tokens)" in result.stderr
    (row,) = list(csv.DictReader(out.open(encoding="utf-8")))
    assert (row["tokens_used"], row["tokens_dropped"]) == ("1", "0")


def test_the_http_response_says_how_many_tokens_were_cut(book_run: tuple[Path, Collect]) -> None:
    from fastapi.testclient import TestClient

    from llmclf.serve import create_app

    with TestClient(create_app(book_run[0], device="cpu")) as client:
        predictions = client.post("/predict", json={"texts": ["ok", LONG]}).json()["predictions"]
        schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictionOut"]
    assert [p["tokens_used"] for p in predictions] == [1, CUT]
    assert predictions[0]["tokens_dropped"] == 0 and predictions[1]["tokens_dropped"] > 0
    assert {"tokens_used", "tokens_dropped"} <= set(schema["required"])
