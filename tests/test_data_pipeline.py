"""The pipeline on small made-up datasets: cleaning, labels, balancing, splitting, reloading."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import llmclf
from llmclf.data.balance import Balanced
from llmclf.data.clean import clean
from llmclf.data.labels import LabelMap
from llmclf.data.long_texts import get_long_text_policy
from llmclf.data.pipeline import DataSpec, load_all, load_split, prepare_data
from llmclf.data.split import split_sizes, stratified_split
from llmclf.data.tokenizer import get_tokenizer
from llmclf.errors import (
    ConfigError,
    DataError,
    LlmclfWarning,
    UnknownNameError,
    UsageError,
)

CONTEXT = 1024


@pytest.fixture
def tokenizer():
    return get_tokenizer()


@pytest.fixture
def register():
    """Register datasets / balancers for one test, and remove them afterwards."""
    added = []

    def add(registry, name, obj):
        registry.register(name, obj)
        added.append((registry, name))
        return obj

    yield add
    for registry, name in added:
        registry.unregister(name)


def three_classes(n: tuple[int, int, int] = (60, 30, 15)) -> pd.DataFrame:
    labels = ["neutral"] * n[0] + ["angry"] * n[1] + ["happy"] * n[2]
    return pd.DataFrame(
        {"text": [f"message {i} {lab}" for i, lab in enumerate(labels)], "label": labels}
    )


def write_csv(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


# ----- cleaning ----------------------------------------------------------------------------
def test_clean_strips_and_counts_every_dropped_row() -> None:
    frame = pd.DataFrame(
        {
            "text": ["  a  ", None, "b", "   ", "c", "a", float("nan"), "d"],
            "label": ["x", "x", None, "y", "  ", " y ", "y", 1.0],
        }
    )
    cleaned = clean(frame, dedupe=True)
    assert cleaned.frame["text"].tolist() == ["a", "d"]
    assert cleaned.frame["label"].tolist() == ["x", "1"]
    assert cleaned.rows_read == 8
    assert cleaned.dropped == {
        "missing text": 2,
        "missing label": 1,
        "empty text": 1,
        "empty label": 1,
        "duplicate text": 1,
    }
    assert clean(frame).dropped["duplicate text"] == 0


def test_dropped_rows_are_reported(tmp_path: Path, tokenizer) -> None:
    frame = three_classes()
    frame.loc[0, "text"] = "   "
    frame.loc[1, "label"] = ""
    frame.loc[2, "text"] = frame.loc[3, "text"]
    path = write_csv(tmp_path / "d.csv", frame)
    data = prepare_data(DataSpec(dataset=path, balance="none", dedupe=True), tokenizer, CONTEXT)
    report = data.report
    assert report.rows_read == 105 and report.rows_kept == 102
    assert {k: v for k, v in report.dropped.items() if v} == {
        "empty text": 1,
        "empty label": 1,
        "duplicate text": 1,
    }
    assert sum(report.split_sizes.values()) == 102
    assert json.loads(json.dumps(report.to_dict())) == report.to_dict()


# ----- labels ------------------------------------------------------------------------------
def test_label_map_sorted_by_default_and_declared_order_when_ordered() -> None:
    assert LabelMap.from_labels(pd.Series(["b", "a", "c", "a"])).names == ("a", "b", "c")
    assert LabelMap.from_labels(pd.Series([1, 0, 1])).names == ("0", "1")
    declared = pd.Series(
        pd.Categorical(["spam", "ham"], categories=["spam", "ham", "x"], ordered=True)
    )
    assert LabelMap.from_labels(declared).names == ("spam", "ham")  # unused "x" left out
    labels = LabelMap(["neg", "pos"])
    assert labels.names == ("neg", "pos") and len(labels) == 2
    assert labels.id("pos") == 1 and labels.name(0) == "neg"
    with pytest.raises(DataError, match="unknown label 'maybe'; the known labels are neg, pos"):
        labels.id("maybe")
    with pytest.raises(DataError, match="unique"):
        LabelMap(("a", "a"))


def test_multi_class_end_to_end(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes())
    data = prepare_data(DataSpec(dataset=path), tokenizer, CONTEXT)
    assert data.labels.names == ("angry", "happy", "neutral")
    assert data.report.balanced_counts == {"angry": 15, "happy": 15, "neutral": 15}
    assert data.report.split_sizes == {"train": 31, "validation": 4, "test": 10}
    for split in (data.train, data.validation, data.test):
        assert set(split.labels) == {0, 1, 2}


def test_numeric_labels_become_names(tmp_path: Path, tokenizer) -> None:
    frame = three_classes().assign(label=[0] * 60 + [1] * 30 + [2] * 15)
    path = tmp_path / "d.jsonl"
    frame.to_json(path, orient="records", lines=True)
    data = prepare_data(DataSpec(dataset=str(path), balance="none"), tokenizer, CONTEXT)
    assert data.labels.names == ("0", "1", "2")


# ----- balancers ---------------------------------------------------------------------------
def frame_of_ids(counts: list[int]) -> pd.DataFrame:
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels})
    return frame.set_axis(range(100, 100 + len(frame)))  # row ids that are not positions


def test_undersample_is_seeded_and_keeps_row_ids() -> None:
    frame = frame_of_ids([50, 20, 10])
    balancer = llmclf.balancers.get("undersample")
    out = balancer(frame, seed=1)
    assert out.frame["label"].value_counts().to_dict() == {0: 10, 1: 10, 2: 10}
    assert out.frame.index.isin(frame.index).all() and not out.frame.index.has_duplicates
    assert out.frame.index.tolist() == balancer(frame, seed=1).frame.index.tolist()
    assert out.frame.index.tolist() != balancer(frame, seed=2).frame.index.tolist()
    assert out.class_weights is None


def test_oversample_repeats_up_to_the_largest() -> None:
    frame = frame_of_ids([50, 20, 10])
    out = llmclf.balancers.get("oversample")(frame, seed=1).frame
    assert out["label"].value_counts().to_dict() == {0: 50, 1: 50, 2: 50}
    assert set(out.index) == set(frame.index)  # every original row kept


def test_class_weight_keeps_rows_and_weights_average_one() -> None:
    frame = frame_of_ids([60, 30, 10])
    out = llmclf.balancers.get("class-weight")(frame, seed=1)
    assert out.frame.equals(frame)
    weights = out.class_weights
    assert weights is not None and len(weights) == 3
    assert weights[2] / weights[0] == pytest.approx(6)
    assert sum(w * n for w, n in zip(weights, [60, 30, 10], strict=True)) / 100 == pytest.approx(1)


def test_class_weights_reach_prepared_data(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes())
    data = prepare_data(DataSpec(dataset=path, balance="class-weight"), tokenizer, CONTEXT)
    assert data.class_weights is not None and len(data.class_weights) == 3
    assert data.report.class_weights == dict(
        zip(data.labels.names, data.class_weights, strict=True)
    )
    assert data.report.split_sizes == {"train": 73, "validation": 10, "test": 22}


def test_oversampling_before_splitting_is_refused(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes())
    with pytest.raises(UsageError, match="balance_scope='train'"):
        prepare_data(DataSpec(dataset=path, balance="oversample"), tokenizer, CONTEXT)
    data = prepare_data(
        DataSpec(dataset=path, balance="oversample", balance_scope="train"), tokenizer, CONTEXT
    )
    train = data.report.split_class_counts["train"]
    assert train["angry"] == train["happy"] == train["neutral"] == 42
    # test keeps the real ratio 60:30:15 of its 22 rows (12.6 / 6.3 / 3.1)
    assert data.report.split_class_counts["test"] == {"angry": 6, "happy": 3, "neutral": 13}
    assert not set(data.train.row_ids) & set(data.test.row_ids)


def test_a_plugin_balancer_is_used_and_checked(tmp_path: Path, tokenizer, register) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes())

    def first_five(frame: pd.DataFrame, *, seed: int) -> Balanced:
        return Balanced(frame.groupby("label").head(10))

    register(llmclf.balancers, "first-five", first_five)
    data = prepare_data(DataSpec(dataset=path, balance="first-five"), tokenizer, CONTEXT)
    assert data.report.balanced_counts == {"angry": 10, "happy": 10, "neutral": 10}
    register(llmclf.balancers, "broken", lambda frame, *, seed: frame)
    with pytest.raises(DataError, match=r"must return llmclf\.data\.balance\.Balanced"):
        prepare_data(DataSpec(dataset=path, balance="broken"), tokenizer, CONTEXT)


# ----- splitting ---------------------------------------------------------------------------
def test_split_sizes_follow_the_book() -> None:
    assert split_sizes(1494, (0.7, 0.1, 0.2)) == (1045, 149, 300)
    assert split_sizes(10, (0.8, 0.2, 0.0)) == (8, 2, 0)
    assert split_sizes(15, (0.9, 0.1, 0.0)) == (14, 1, 0)


def test_stratified_split_partitions_and_stratifies() -> None:
    labels = [0] * 700 + [1] * 200 + [2] * 100
    rows = list(range(1000, 2000))
    train, validation, test = stratified_split(rows, labels, (0.7, 0.1, 0.2), seed=3)
    assert (len(train), len(validation), len(test)) == (700, 100, 200)
    assert sorted(train + validation + test) == rows
    label_of = dict(zip(rows, labels, strict=True))
    assert [sum(label_of[r] == c for r in test) for c in range(3)] == [140, 40, 20]
    assert stratified_split(rows, labels, (0.7, 0.1, 0.2), seed=3) == (train, validation, test)


@pytest.mark.parametrize(
    ("counts", "test_counts"),
    [((15, 15), [3, 3]), ((31, 15), [7, 3]), ((747, 747), [150, 150]), ((4827, 747), [966, 150])],
)
def test_rounding_does_not_tilt_the_last_split(
    counts: tuple[int, int], test_counts: list[int]
) -> None:
    labels = [0] * counts[0] + [1] * counts[1]
    rows = list(range(len(labels)))
    test = stratified_split(rows, labels, (0.7, 0.1, 0.2), seed=123)[2]
    assert [sum(labels[r] == c for r in test) for c in (0, 1)] == test_counts


def test_a_split_without_training_rows_is_an_error() -> None:
    with pytest.raises(DataError, match="the train split gets 0 of 30 rows"):
        stratified_split(list(range(30)), [0, 1] * 15, (0.02, 0.49, 0.49), seed=1)


def test_a_tiny_class_still_reaches_every_split() -> None:
    labels = [0] * 97 + [1] * 3
    train, validation, test = stratified_split(list(range(100)), labels, (0.7, 0.1, 0.2), seed=0)
    for part in (train, validation, test):
        assert 99 in part or 98 in part or 97 in part
    with pytest.raises(DataError, match="class 'rare' has 2 row"):
        stratified_split(
            list(range(99)), [0] * 97 + [1] * 2, (0.7, 0.1, 0.2), 0, ["common", "rare"]
        )


def test_a_zero_test_fraction_gives_an_empty_test_split(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes())
    data = prepare_data(DataSpec(dataset=path, split=(0.8, 0.2, 0.0)), tokenizer, CONTEXT)
    assert data.report.split_sizes == {"train": 36, "validation": 9, "test": 0}
    assert len(data.test) == 0 and data.report.token_lengths["test"] == {}


@pytest.mark.parametrize(
    ("balance", "rows"),
    [("undersample", "validation split gets 0 of 8 rows"), ("none", "gets 1 of 16 rows")],
)
def test_tiny_data_is_refused_alike_with_or_without_balancing(
    tmp_path: Path, tokenizer, balance: str, rows: str
) -> None:
    """Undersampled to 8 rows, the validation split was silently empty (so "best" meant
    nothing), while --balance none on the same file was an error."""
    frame = pd.DataFrame(
        {"text": [f"text {i}" for i in range(16)], "label": ["spam"] * 4 + ["ham"] * 12}
    )
    path = write_csv(tmp_path / "tiny.csv", frame)
    with pytest.raises(DataError, match=rf"{rows}, fewer than the 2 classes") as info:
        prepare_data(DataSpec(dataset=path, balance=balance), tokenizer, CONTEXT)
    assert "or 0: no validation split" in str(info.value)
    if balance == "undersample":
        assert "balance 'undersample' left 8 of 16 rows" in str(info.value)
    no_validation = DataSpec(dataset=path, balance=balance, split=(0.8, 0.0, 0.2))
    data = prepare_data(no_validation, tokenizer, CONTEXT)  # asked for no validation: fine
    assert len(data.validation) == 0


# ----- Python-registered datasets ----------------------------------------------------------
def test_a_registered_function_is_a_dataset(tokenizer, register) -> None:
    @llmclf.datasets.register("moods")
    def moods() -> pd.DataFrame:
        """Made-up moods."""
        return three_classes().rename(columns={"text": "body", "label": "mood"})

    try:
        spec = DataSpec(dataset="moods", text_column="body", label_column="mood")
        data = prepare_data(spec, tokenizer, CONTEXT)
        assert data.labels.names == ("angry", "happy", "neutral")
        with pytest.raises(DataError, match=r"dataset 'moods' has no column 'text' \(set --text"):
            prepare_data(DataSpec(dataset="moods"), tokenizer, CONTEXT)
    finally:
        llmclf.datasets.unregister("moods")


def test_predefined_splits_are_used_as_given(tokenizer, register) -> None:
    frame = three_classes((30, 30, 30)).sample(frac=1, random_state=0).reset_index(drop=True)
    parts = {"train": frame.iloc[:60], "validation": frame.iloc[60:75], "test": frame.iloc[75:]}
    register(llmclf.datasets, "given", lambda: parts)
    data = prepare_data(DataSpec(dataset="given", balance="none"), tokenizer, CONTEXT)
    assert data.split_ids() == {
        "train": list(range(60)),
        "validation": list(range(60, 75)),
        "test": list(range(75, 90)),
    }
    assert data.report.predefined_splits and data.report.balance_scope == "train"
    balanced = prepare_data(DataSpec(dataset="given"), tokenizer, CONTEXT)
    smallest = frame.iloc[:60]["label"].value_counts().min()
    assert set(balanced.report.split_class_counts["train"].values()) == {smallest}
    assert balanced.split_ids()["test"] == list(range(75, 90))  # only train is balanced
    assert set(balanced.split_ids()["train"]) < set(range(60))
    rows = load_split(DataSpec(dataset="given"), balanced.labels, [80, 0], tokenizer, CONTEXT)
    assert rows.texts == [frame["text"][80], frame["text"][0]]


def test_a_dataset_function_returning_junk(tokenizer, register) -> None:
    register(llmclf.datasets, "junk", lambda: [1, 2, 3])
    with pytest.raises(DataError, match="returned a list"):
        prepare_data(DataSpec(dataset="junk"), tokenizer, CONTEXT)
    register(llmclf.datasets, "badkeys", lambda: {"train": three_classes(), "dev": None})
    with pytest.raises(DataError, match="exactly the keys train, validation, test"):
        prepare_data(DataSpec(dataset="badkeys"), tokenizer, CONTEXT)


# ----- truncation ----------------------------------------------------------------------------
def test_long_texts_are_truncated_and_counted(tmp_path: Path, tokenizer) -> None:
    frame = three_classes((20, 20, 20))
    frame.loc[::2, "text"] = "word " * 50
    frame = frame.assign(text=[f"{t} {i}" for i, t in enumerate(frame["text"])])
    path = write_csv(tmp_path / "d.csv", frame)
    data = prepare_data(DataSpec(dataset=path, max_length=16), tokenizer, CONTEXT)
    assert data.report.max_tokens == 16
    assert sum(data.report.truncated.values()) == 30
    assert max(len(ids) for ids in data.train.token_ids) == 16
    above = "max_length 600 is above the backbone's context of 8 tokens; texts are cut at 8"
    with pytest.warns(LlmclfWarning, match=above):
        smaller_context = prepare_data(DataSpec(dataset=path, max_length=600), tokenizer, 8)
    assert smaller_context.report.max_tokens == 8
    assert smaller_context.report.max_length == 600  # what was asked stays in the report
    assert sum(smaller_context.report.truncated.values()) == 30  # the short texts fit in 8


# ----- reloading a run's rows ----------------------------------------------------------------
def test_load_split_rebuilds_exactly_the_same_rows(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes())
    spec = DataSpec(dataset=path)
    data = prepare_data(spec, tokenizer, CONTEXT)
    ids = data.split_ids()["test"]
    again = load_split(spec, data.labels, ids, tokenizer, CONTEXT, data.fingerprint)
    assert again == data.test
    frame = three_classes()
    frame.loc[5, "text"] = "edited after training"
    write_csv(tmp_path / "d.csv", frame)
    with pytest.raises(DataError, match="changed since training"):
        load_split(spec, data.labels, ids, tokenizer, CONTEXT, data.fingerprint)
    with pytest.raises(DataError, match="out of range"):
        load_split(spec, data.labels, [10_000], tokenizer, CONTEXT)


def test_load_all_reads_every_row_and_rejects_unknown_labels(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes())
    labels = LabelMap(("angry", "happy", "neutral"))
    everything = load_all(DataSpec(dataset=path), labels, tokenizer, CONTEXT)
    assert len(everything) == 105 and everything.row_ids == list(range(105))
    other = three_classes().assign(label=["calm"] * 100 + ["angry"] * 5)
    other_path = write_csv(tmp_path / "other.csv", other)
    with pytest.raises(DataError, match=r"labels the model does not know: 'calm' \(it knows"):
        load_all(DataSpec(dataset=other_path), labels, tokenizer, CONTEXT)


# ----- bad input -----------------------------------------------------------------------------
def test_a_single_class_is_an_error(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes().assign(label="same"))
    with pytest.raises(DataError, match=r"single class \('same'\).*--label-column"):
        prepare_data(DataSpec(dataset=path), tokenizer, CONTEXT)


def test_every_row_dropped_is_an_error(tmp_path: Path, tokenizer) -> None:
    path = write_csv(tmp_path / "d.csv", three_classes().assign(label=""))
    with pytest.raises(DataError, match="no usable rows: all 105 were dropped"):
        prepare_data(DataSpec(dataset=path), tokenizer, CONTEXT)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (DataSpec(dataset="smss"), "unknown dataset 'smss'; did you mean 'sms'?"),
        (
            DataSpec(balance="undersampel"),
            "unknown balancer 'undersampel'; did you mean 'undersample'?",
        ),
    ],
)
def test_unknown_names_suggest_the_closest(spec: DataSpec, message: str, tokenizer) -> None:
    with pytest.raises(UnknownNameError) as info:
        prepare_data(spec, tokenizer, CONTEXT)
    assert message in str(info.value)


def test_unknown_padding_suggests_the_closest() -> None:
    from llmclf.data.padding import get_policy

    with pytest.raises(UnknownNameError, match="did you mean 'pad-batch'"):
        get_policy("pad-bach", None, 1024, 50256)


def test_a_missing_file_dataset(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(DataError, match="does not exist"):
        prepare_data(DataSpec(dataset=str(tmp_path / "missing.csv")), tokenizer, CONTEXT)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"split": (0.5, 0.5)}, "split"),
        ({"split": (0.7, 0.2, 0.2)}, "sum to 1"),
        ({"split": (0.0, 0.5, 0.5)}, "train > 0"),
        ({"balance_scope": "test"}, "balance_scope"),
        ({"max_length": 0}, "max_length"),
        ({"encoding": "utf-99"}, "encoding"),
        ({"text_column": "x", "label_column": "x"}, "text_column and label_column"),
        ({"dataset": ""}, "dataset"),
        ({"seed": "1"}, "seed"),
    ],
)
def test_data_spec_names_the_bad_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        DataSpec(**kwargs)


def test_data_spec_round_trips_through_json() -> None:
    spec = DataSpec(dataset="x.csv", split=[0.8, 0.1, 0.1], max_length=64)  # a list, as from JSON
    assert spec.split == (0.8, 0.1, 0.1)
    from dataclasses import asdict

    assert DataSpec(**json.loads(json.dumps(asdict(spec)))) == spec


def test_prepared_token_ids_take_four_bytes_a_token(tmp_path: Path, tokenizer) -> None:
    """50,000 reviews of 300 tokens as Python lists of ints would take half a gigabyte; the
    splits keep them as 4-byte integers, windows included, and read like lists."""
    words = " ".join(f"w{i}" for i in range(200))
    frame = pd.DataFrame({"text": [f"{words} {i}" for i in range(40)], "label": ["a", "b"] * 20})
    path = write_csv(tmp_path / "long.csv", frame)
    for long_texts in ("head", "windows:64"):
        spec = DataSpec(dataset=path, balance="none", long_texts=long_texts)
        data = prepare_data(spec, tokenizer, 128)
        for split in (data.train, data.train.examples(get_long_text_policy(long_texts), 128)):
            tokens = sum(len(ids) for ids in split.token_ids)
            size = sum(sys.getsizeof(ids) for ids in split.token_ids)
            assert tokens > 100 * len(split.token_ids)
            assert size < 5 * tokens
            assert list(split.token_ids[0][:3]) == tokenizer.encode(split.texts[0])[:3]
