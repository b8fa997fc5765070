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
