from __future__ import annotations

from pathlib import Path

import pytest

from llmclf.errors import ConfigError
from llmclf.training.config import TrainConfig


def test_defaults_reproduce_the_books_chapter_6_run() -> None:
    c = TrainConfig()
    assert (c.dataset, c.backbone, c.weights, c.balance) == (
        "sms",
        "gpt2-small",
        "pretrained",
        "undersample",
    )
    assert c.split == (0.7, 0.1, 0.2)
    assert (c.padding, c.pooling, c.trainable) == ("pad-batch", "last-token", "last-block")
    assert (c.epochs, c.batch_size, c.lr, c.weight_decay) == (5, 8, 5e-5, 0.1)
    assert (c.eval_every, c.seed, c.device) == (50, 123, "auto")


def test_json_round_trip() -> None:
    c = TrainConfig(
        dataset="x.csv", trainable="lora:r=4,alpha=8", split=(0.8, 0.1, 0.1), grad_clip=1.0
    )
    assert TrainConfig.from_json(c.to_json()) == c


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('dataset = "tickets"\nbatch-size = 4\nsplit = [0.6, 0.2, 0.2]\n')
    c = TrainConfig.from_file(path)
    assert (c.dataset, c.batch_size, c.split) == ("tickets", 4, (0.6, 0.2, 0.2))


def test_a_config_file_of_another_format_says_which_are_read(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("dataset: tickets\n")
    with pytest.raises(ConfigError, match=r"must be JSON \(.json\) or TOML \(.toml\), not .yaml"):
        TrainConfig.from_file(path)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"split": (0.5, 0.2, 0.2)}, "split"),
        ({"pooling": "max"}, "pooling"),
        ({"precision": "int4"}, "precision"),
        ({"trainable": "some-blocks"}, "trainable"),
        ({"dropout": 1.5}, "dropout"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_validation_names_the_bad_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        TrainConfig(**changes)


def test_unknown_field_is_listed() -> None:
    with pytest.raises(ConfigError, match=r"unknown config field.*bacth_size"):
        TrainConfig.from_dict({"bacth_size": 3})


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        TrainConfig().epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr": "1e-3"}, "lr"),
        ({"weight_decay": "0.1"}, "weight_decay"),
        ({"dropout": None}, "dropout"),
        ({"grad_clip": "1"}, "grad_clip"),
        ({"lr": float("inf")}, "lr"),
        ({"batch_size": True}, "batch_size"),
        ({"epochs": 2.0}, "epochs"),
        ({"max_length": False}, "max_length"),
        ({"eval_batches": "5"}, "eval_batches"),
        ({"seed": -1}, "seed"),
        ({"seed": "123"}, "seed"),
        ({"dedupe": "no"}, "dedupe"),
        ({"dedupe": 1}, "dedupe"),
        ({"bucket": "yes"}, "bucket"),
        ({"output": 5}, "output"),
        ({"dataset": 5}, "dataset"),
        ({"text_column": None}, "text_column"),
        ({"backbone": ["gpt2-small"]}, "backbone"),
        ({"split": ("0.7", 0.1, 0.2)}, "split"),
        ({"split": (True, 0, 0)}, "split"),
    ],
)
def test_every_field_has_its_type_checked(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: ") as info:
        TrainConfig(**changes)
    assert "\n" not in str(info.value)


def test_a_config_file_names_the_field_of_a_quoted_number(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"lr": "1e-3"}')
    with pytest.raises(ConfigError, match=r"^lr: must be a finite number \(unquoted\), got '1e-3'"):
        TrainConfig.from_file(path)


@pytest.mark.parametrize("text", ['"no"', '"false"', "0", '"off"'])
def test_a_config_file_boolean_must_be_a_boolean(tmp_path: Path, text: str) -> None:
    """``"dedupe": "no"`` used to turn deduplication on (a non-empty string is truthy)."""
    path = tmp_path / "run.json"
    path.write_text(f'{{"dedupe": {text}}}')
    with pytest.raises(ConfigError, match=r"^dedupe: must be true or false"):
        TrainConfig.from_file(path)


def test_config_file_booleans_and_paths_that_are_right_still_load(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("dedupe = false\nbucket = true\n")
    c = TrainConfig.from_file(path)
    assert (c.dedupe, c.bucket) == (False, True)
    c = TrainConfig(dataset=tmp_path / "x.csv", output=tmp_path / "out")
    assert (c.dataset, c.output) == (str(tmp_path / "x.csv"), str(tmp_path / "out"))
    assert TrainConfig.from_json(c.to_json()) == c


def test_a_config_that_is_not_an_object_is_one_line() -> None:
    with pytest.raises(ConfigError, match="must be an object of fields, got list"):
        TrainConfig.from_json("[1, 2]")
