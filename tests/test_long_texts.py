"""Long-text policies: which tokens of a long text are kept, at fit and after a save."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import tiny_config

import llmclf
from llmclf import Classifier, Trainer
from llmclf.cli import main
from llmclf.data.long_texts import get_long_text_policy
from llmclf.data.padding import get_policy, policy_from_state
from llmclf.errors import CheckpointError, ConfigError, ExportError, UnknownNameError
from llmclf.export.hf import check_hf

TEXT = list(range(20))


def test_head_tail_and_head_plus_tail_keep_exactly_the_right_tokens() -> None:
    assert get_long_text_policy("head").select(TEXT, 5) == [0, 1, 2, 3, 4]
    assert get_long_text_policy("tail").select(TEXT, 5) == [15, 16, 17, 18, 19]
    assert get_long_text_policy("head+tail:3").select(TEXT, 8) == [0, 1, 2, 15, 16, 17, 18, 19]
    assert get_long_text_policy("head+tail").select(TEXT, 8) == [0, 1, 14, 15, 16, 17, 18, 19]
    assert get_long_text_policy("head+tail:9").select(TEXT, 8) == list(range(8))
    for name in ("head", "tail", "head+tail:3"):
        assert get_long_text_policy(name).select(TEXT[:6], 8) == TEXT[:6]  # short: whole


@pytest.mark.parametrize("name", ["head", "tail", "head+tail", "head+tail:3", "windows:2"])
def test_cutting_to_the_cap_then_to_the_width_equals_one_cut(name: str) -> None:
    policy = get_long_text_policy(name)
    for n in range(1, 20):
        for m in range(1, n + 1):
            assert policy.select(policy.select(TEXT, n), m) == policy.select(TEXT, m)


def test_names_are_checked_and_listed() -> None:
    with pytest.raises(UnknownNameError, match="unknown long-text policy 'middle'"):
        get_long_text_policy("middle")
    with pytest.raises(ConfigError, match="head\\+tail:K needs a whole number"):
        get_long_text_policy("head+tail:x")
    with pytest.raises(ConfigError, match="tail takes no parameter"):
        get_long_text_policy("tail:3")
    assert {"head", "tail", "head+tail", "windows"} <= set(llmclf.registry.long_texts.names())
    listed = CliRunner().invoke(main, ["list", "long_texts"])
    assert listed.exit_code == 0 and "head+tail" in listed.output and "windows" in listed.output


def test_the_padding_policy_collates_with_it_and_saves_it() -> None:
    policy = get_policy("pad-batch", 4, 1024, 0)
    policy.set_long_texts("tail")
    assert policy.collate([TEXT]).input_ids.tolist() == [[16, 17, 18, 19]]
    state = policy.state()
    assert state["long_texts"] == "tail"
    assert policy_from_state(state, 1024, 0).collate([TEXT]).input_ids.tolist() == [
        [16, 17, 18, 19]
    ]
    old = {k: v for k, v in state.items() if k != "long_texts"}  # a run saved before: head
    assert policy_from_state(old, 1024, 0).long_text.spec() == "head"
    with pytest.raises(CheckpointError, match="long_texts 'middle'"):
        policy_from_state({**state, "long_texts": "middle"}, 1024, 0)


def signal_at_the_end(path: Path, rows_per_class: int = 60) -> Path:
    """Texts of random filler whose label word is the last word only."""
    rng = random.Random(0)
    filler = ["the", "a", "film", "was", "and", "then", "it", "of", "story", "plot", "they"]
    rows = []
    for label, word in (("neg", "awful"), ("pos", "superb")):
        for _ in range(rows_per_class):
            rows.append({"text": " ".join(rng.choices(filler, k=30)) + f" {word}", "label": label})
    rng.shuffle(rows)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def end_signal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return signal_at_the_end(tmp_path_factory.mktemp("long") / "end.csv")


def fit(data: Path, out: Path, long_texts: str):
    config = tiny_config(  # the head alone on a random trunk: the label word is in the state
        data, out, long_texts=long_texts, max_length=8, trainable="head", epochs=4, lr=1e-2
    )
    return Trainer(config).fit()


@pytest.mark.parametrize("long_texts", ["head", "tail", "head+tail:2"])
def test_the_policy_decides_what_is_learnt_and_survives_a_save(
    end_signal: Path, tmp_path: Path, long_texts: str
) -> None:
    run = fit(end_signal, tmp_path / "run", long_texts)
    accuracy = run.metrics["test"]["accuracy"]
    if long_texts == "head":
        assert accuracy <= 0.75, accuracy  # the first 8 tokens are filler only
    else:
        assert accuracy >= 0.9, accuracy
    manifest = json.loads((run.output_dir / "llmclf.json").read_text())
    assert manifest["padding"]["long_texts"] == long_texts
    frame = pd.read_csv(end_signal)
    rows = manifest["data"]["split"]["test"]
    clf = Classifier.load(run.output_dir)
    predictions = clf.predict(frame["text"][rows].tolist())
    hits = [p.label == label for p, label in zip(predictions, frame["label"][rows], strict=True)]
    assert sum(hits) / len(hits) == pytest.approx(accuracy)  # predict equals fit's evaluation
    assert all(p.tokens_used == 8 and p.tokens_dropped == 23 for p in predictions)
    if long_texts == "head+tail:2":  # a transformers tokenizer cuts one side only
        with pytest.raises(ExportError, match=r"--long-texts head\+tail:2.*--format onnx"):
            check_hf(clf)
    else:
        check_hf(clf)  # head cuts the right side, tail the left (truncation_side)


@pytest.mark.parametrize(
    ("padding", "fixes"),
    [
        ("pad-batch", "; raise --max-length or read every token with --long-texts windows"),
        (
            "truncate-dataset",
            "; raise --max-length, use --padding pad-batch or read every token with "
            "--long-texts windows",
        ),
    ],
)
def test_the_cut_warning_names_fixes_that_change_something(padding: str, fixes: str) -> None:
    from llmclf.data.report import DataReport

    empty = dict.fromkeys(("dataset", "balance", "balance_scope"), "") | dict.fromkeys(
        ("rows_read", "rows_kept", "max_tokens"), 0
    )
    fields = ("dropped", "class_counts", "balanced_counts", "split_sizes", "split_class_counts")
    empty |= {name: {} for name in fields} | {"truncated": {}, "labels": []}
    report = DataReport(**empty, predefined_splits=False)
    warning = report.record_cuts(8, {"train": [20, 30, 5]}, padding)
    assert warning is not None and warning.endswith(fixes)
    assert warning.startswith(f"padding {padding} cuts 2 of 3 training texts")


def test_the_cut_warning_prints_once_before_the_data_report() -> None:
    """The fit printed it as a message and again as a row of the data table."""
    import dataclasses
    import io

    from rich.console import Console

    from llmclf.cli.render import RichReporter
    from llmclf.data.report import DataReport

    empty = dict.fromkeys(("dataset", "balance", "balance_scope"), "") | dict.fromkeys(
        ("rows_read", "rows_kept", "max_tokens"), 0
    )
    fields = ("dropped", "class_counts", "balanced_counts", "split_sizes", "split_class_counts")
    empty |= {name: {} for name in fields} | {"truncated": {}, "labels": []}
    report = DataReport(**empty, predefined_splits=False)
    warning = report.record_cuts(8, {"train": [20, 30, 5]}, "pad-batch")
    console = Console(width=300, record=True, file=io.StringIO())
    reporter = RichReporter(console)
    reporter.event("message", text=f"warning: {warning}")
    reporter.event("data", report=dataclasses.asdict(report))
    assert console.export_text().count(warning) == 1

    alone = Console(width=300, record=True, file=io.StringIO())  # not said before: in the table
    RichReporter(alone).event("data", report=dataclasses.asdict(report))
    assert alone.export_text().count(warning) == 1
