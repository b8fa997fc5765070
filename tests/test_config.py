from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from llmclf.data.spec import DataSpec
from llmclf.errors import ConfigError
from llmclf.options import DEVICES, SPLITS, option, show_default
from llmclf.training.config import (
    SECTIONS,
    ModelChoice,
    OptimSpec,
    RuntimeSpec,
    TrainConfig,
    config_fields,
)


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


# ----- one description of the config: specs, flat access, the CLI derived from the fields ----
# The config of a run saved by llmclf 0.x, before the config was split into specs: every saved
# llmclf.json (and resume/state.json) holds this flat object, and must keep loading.
OLD_RUN_CONFIG = {
    "dataset": "/data/tickets.csv",
    "text_column": "body",
    "label_column": "queue",
    "encoding": "utf-8",
    "balance": "none",
    "balance_scope": "train",
    "split": [0.8, 0.1, 0.1],
    "dedupe": True,
    "padding": "pad-batch",
    "max_length": 128,
    "bucket": False,
    "backbone": "gpt2-tiny",
    "weights": "random",
    "pooling": "last-token",
    "trainable": "lora:r=4,alpha=8",
    "dropout": 0.0,
    "epochs": 2,
    "batch_size": 4,
    "grad_accum": 1,
    "lr": 0.001,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "early_stopping": None,
    "eval_every": 50,
    "eval_batches": None,
    "seed": 7,
    "device": "cpu",
    "precision": "fp32",
    "cache": "auto",
    "save": "best",
    "output": "runs/tickets",
}


def test_an_old_runs_saved_config_loads_and_saves_the_same() -> None:
    config = TrainConfig.from_dict(OLD_RUN_CONFIG)
    assert (config.dataset, config.lr, config.split, config.eval_batches) == (
        "/data/tickets.csv",
        0.001,
        (0.8, 0.1, 0.1),
        None,
    )
    assert config.to_dict() == OLD_RUN_CONFIG  # same flat schema: older llmclf reads new runs


def test_a_config_from_before_later_fields_loads_with_their_defaults() -> None:
    early = {k: v for k, v in OLD_RUN_CONFIG.items() if k not in ("bucket", "cache", "save")}
    config = TrainConfig.from_dict(early)
    assert (config.bucket, config.cache, config.save) == (False, "auto", "best")


def test_the_config_is_composed_of_specs_and_read_flat() -> None:
    flat = TrainConfig(dataset="x.csv", seed=7, backbone="gpt2-tiny", lr=1e-3, device="cpu")
    assert isinstance(flat.data, DataSpec) and flat.data.dataset == "x.csv"
    assert (flat.data.seed, flat.model.backbone, flat.optim.lr) == (7, "gpt2-tiny", 1e-3)
    assert flat.runtime.device == "cpu" and flat.lr is flat.optim.lr
    by_spec = TrainConfig(
        data=DataSpec(dataset="x.csv", seed=7),
        model=ModelChoice(backbone="gpt2-tiny"),
        optim=OptimSpec(lr=1e-3),
        runtime=RuntimeSpec(device="cpu"),
    )
    assert by_spec == flat
    assert TrainConfig(data=DataSpec(dataset="x.csv"), seed=7).data == DataSpec(
        dataset="x.csv", seed=7
    )
    changed = flat.replace(lr=0.1, dataset="y.csv")
    assert (changed.lr, changed.dataset, changed.backbone) == (0.1, "y.csv", "gpt2-tiny")
    with pytest.raises(TypeError, match=r"unexpected field.*bacth_size"):
        TrainConfig(bacth_size=3)


def test_the_data_spec_is_the_data_part_of_the_config() -> None:
    assert {f.name for f in fields(DataSpec)} <= {f.name for f in config_fields()}
    config = TrainConfig(dataset="x.csv", split=[0.6, 0.2, 0.2])
    assert config.data is config.data and config.data.split == (0.6, 0.2, 0.2)
    assert SECTIONS["data"] is DataSpec


def test_a_toml_file_may_group_fields_by_spec(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        'epochs = 2\n[data]\ndataset = "tickets"\ntext-column = "body"\n[optim]\nlr = 0.001\n'
    )
    c = TrainConfig.from_file(path)
    assert (c.dataset, c.text_column, c.lr, c.epochs) == ("tickets", "body", 0.001, 2)
    path.write_text("[data]\nlr = 0.001\n")
    with pytest.raises(ConfigError, match=r"^data.lr: lr belongs to optim"):
        TrainConfig.from_file(path)
    path.write_text("lr = 0.1\n[optim]\nlr = 0.001\n")
    with pytest.raises(ConfigError, match=r"^lr: given twice"):
        TrainConfig.from_file(path)


def test_each_check_lives_once_and_names_its_field() -> None:
    """The config, the data spec and serve share one check per concept (one message)."""
    from llmclf.serve import ServeConfig

    for make in (TrainConfig, DataSpec):
        with pytest.raises(ConfigError, match=r"^split: fractions must be >= 0, train > 0"):
            make(split=(0.5, 0.2, 0.2))
        with pytest.raises(ConfigError, match=r"^balance_scope: must be one of all, train"):
            make(balance_scope="test")
        with pytest.raises(ConfigError, match=r"^encoding: unknown encoding 'utf-99'"):
            make(encoding="utf-99")
    for make in (TrainConfig, lambda **kw: ServeConfig(run="r", **kw)):
        with pytest.raises(ConfigError, match=r"^device: must be one of auto, cpu, cuda, mps"):
            make(device="tpu")
        assert make(device="cuda:1").device == "cuda:1"  # as Classifier.load takes it


def test_one_list_of_devices_and_of_split_names() -> None:
    from llmclf.cli import main

    for name in ("evaluate", "predict", "serve"):
        (device,) = [p for p in main.commands[name].params if p.name == "device"]
        assert tuple(device.type.choices) == DEVICES
    from llmclf.data import split
    from llmclf.data.pipeline import PreparedData  # noqa: F401 - imports the pipeline

    assert split.SPLITS is SPLITS


def _fit_option(name: str) -> click.Option:
    from llmclf.cli.fit import fit_command

    (option,) = [p for p in fit_command.params if p.name == name]
    return option  # type: ignore[return-value]


@pytest.mark.parametrize("f", config_fields(), ids=lambda f: f.name)
def test_every_config_field_is_a_fit_option_described_by_the_field(f) -> None:
    option = _fit_option(f.name)
    assert option.opts == ["--" + f.name.replace("_", "-")]
    assert option.help.startswith(f.metadata["help"])
    assert option.help.endswith(f"[default: {show_default(f)}]")
    choices = f.metadata.get("choices")
    assert (tuple(option.type.choices) if choices else None) == choices
    assert option.default is None  # unset: a --config file's value is kept


def test_fit_help_shows_every_field_and_its_default() -> None:
    result = CliRunner().invoke(_main(), ["fit", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for f in config_fields():
        assert "--" + f.name.replace("_", "-") in text
        assert f"{f.metadata['help']} [default: {show_default(f)}]" in text, f.name
    assert "[default: pad-batch]" in text  # --padding showed no default before


def test_a_new_config_field_becomes_an_option_without_a_second_edit() -> None:
    from llmclf.cli.fit import config_options

    @dataclass(frozen=True, kw_only=True)
    class Extra:
        colour: str = option("red", "Colour of the curves.", choices=("red", "blue"))
        warmup_steps: int = option(0, "Steps of linear learning-rate warmup.")
        shuffle: bool = option(True, "Shuffle the training split.")

    seen: dict = {}

    @click.command()
    @config_options(fields(Extra))
    def command(**options) -> None:
        seen.update(options)

    result = CliRunner().invoke(
        command, ["--colour", "blue", "--warmup-steps", "3", "--no-shuffle"]
    )
    assert result.exit_code == 0, result.output
    assert seen == {"colour": "blue", "warmup_steps": 3, "shuffle": False}
    help_text = " ".join(CliRunner().invoke(command, ["--help"]).output.split())
    assert "--colour [red|blue] Colour of the curves. [default: red]" in help_text
    assert "Steps of linear learning-rate warmup. [default: 0]" in help_text
    assert "--shuffle / --no-shuffle Shuffle the training split. [default: yes]" in help_text
    bad = CliRunner().invoke(command, ["--colour", "green"])
    assert bad.exit_code == 2


def test_the_repeat_command_uses_the_field_flags() -> None:
    from llmclf.runs.rundir import repeat_command

    config = TrainConfig(dataset="x.csv", dedupe=True, split=(0.8, 0.1, 0.1), eval_batches=None)
    command = repeat_command(config, Path("runs/x"))
    assert command.startswith(
        "llmclf fit --dataset x.csv --split 0.8,0.1,0.1 --dedupe --output runs/x --overwrite"
    )
    assert "eval_batches = null" in command


def _main():
    from llmclf.cli import main

    return main
