"""The Python API's arguments and a run directory's llmclf.json are checked, with one line each."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import fit_tiny_run

from llmclf import Classifier
from llmclf.cli import main
from llmclf.device import resolve_device, resolve_precision
from llmclf.errors import CheckpointError, ConfigError, LlmclfError, UnfinishedRunWarning
from llmclf.evaluation import evaluate_run
from llmclf.serve import ServeConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny_run(tmp_path_factory.mktemp("validate"), 20)


@pytest.fixture(scope="module")
def classifier(run: Path) -> Classifier:
    return Classifier.load(run, device="cpu")


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ----- arguments of the Python API ------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [-1, 0, True, 2.0, "8", None])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_batch_size_must_be_a_positive_integer(
    classifier: Classifier, method: str, batch_size: Any
) -> None:
    """batch_size=-1 returned uninitialised memory; 0 raised range()'s ValueError."""
    with pytest.raises(ConfigError, match=r"^batch_size: must be an integer >= 1, got ") as info:
        getattr(classifier, method)(["a printer on fire"], batch_size=batch_size)
    one_line(info)


@pytest.mark.parametrize(
    ("arguments", "start"),
    [
        ({"device": "tpu"}, "device: must be one of auto, cpu, cuda, mps (or cuda:N), got 'tpu'"),
        ({"device": None}, "device: must be one of"),
        ({"precision": "int4"}, "precision: must be one of fp32, bf16, fp16, auto, got 'int4'"),
        ({"precision": True}, "precision: must be one of"),
        ({"quantize": "int4"}, "quantize: must be None or one of int8, got 'int4'"),
        ({"quantize": True}, "quantize: must be None or one of int8, got True"),
    ],
)
def test_load_arguments_are_checked_before_anything_loads(
    run: Path, arguments: dict, start: str
) -> None:
    """device="tpu" raised torch's RuntimeError; precision="int4" silently used fp16."""
    with pytest.raises(ConfigError) as info:
        Classifier.load(run, **arguments)
    assert one_line(info).startswith(start)


def test_load_takes_a_path_not_anything(run: Path) -> None:
    with pytest.raises(ConfigError, match=r"^run_dir: must be a directory path, got 5"):
        Classifier.load(5)  # type: ignore[arg-type]


def test_device_and_precision_helpers_refuse_unknown_names() -> None:
    with pytest.raises(ConfigError, match=r"^device: "):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match=r"^precision: "):
        resolve_precision("int4", resolve_device("cpu"))
    assert resolve_precision("fp32", resolve_device("cpu")) is None


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"dataset": 5}, "dataset"),
        ({"text_column": ""}, "text_column"),
        ({"encoding": 8}, "encoding"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_evaluate_run_arguments_are_checked(run: Path, arguments: dict, field: str) -> None:
    with pytest.raises(LlmclfError, match=rf"^{field}: ") as info:
        evaluate_run(run, **arguments)
    one_line(info)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_batch": True}, "max_batch"),
        ({"max_chars": 1.5}, "max_chars"),
        ({"workers": False}, "workers"),
        ({"port": True}, "port"),
        ({"host": 5}, "host"),
        ({"run": 5}, "run"),
        ({"device": ["cpu"]}, "device"),
    ],
)
def test_serve_config_checks_types(changes: dict, field: str) -> None:
    config: dict[str, Any] = {"run": "runs/x", **changes}
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        ServeConfig(**config)


# ----- a hand-edited or damaged llmclf.json ---------------------------------------------------
def damaged(run: Path, tmp_path: Path, edit: Any) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "llmclf.json").read_text())
    edit(manifest)
    (copy / "llmclf.json").write_text(json.dumps(manifest))
    return copy


def _set(path: str, value: Any) -> Any:
    def edit(manifest: dict) -> None:
        *parents, last = path.split(".")
        target = manifest
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (  # was RuntimeError: shape mismatch at the first prediction
            _set("labels", ["account", "billing", "hardware", "urgent"]),
            "has 4 labels ['account', 'billing', 'hardware', 'urgent'] but model.num_classes is 3",
        ),
        (  # was RuntimeError: Error(s) in loading state_dict
            lambda m: (_set("model.num_classes", 4)(m), _set("labels", list("abcd"))(m)),
            "head.weight has shape (3, 128) in the weights but (4, 128) by llmclf.json's "
            "model.num_classes",
        ),
        (_set("padding", KeyError), "has no 'padding' field"),  # was KeyError: 'padding'
        (_set("padding", {"name": 3}), "padding state must be a dict with a 'name'"),
        (_set("labels", ["a", "a", "b"]), "labels must be distinct strings"),
        (_set("labels", "abc"), "'labels' must be a JSON list"),
        (_set("model.num_classes", "3"), "model.num_classes must be an integer >= 2, got '3'"),
        (_set("model.pooling", "max"), "pooling must be one of last, last-token, first, mean"),
        (_set("model.config.n_head", 5), "model.config is not a gpt2 config"),
        (_set("model.config.n_embd", 64), "has shape"),
        (_set("model.config.colour", 1), "model.config is not a gpt2 config"),
        (_set("trainable", KeyError), "has no 'trainable' field"),
        (lambda m: m.clear(), "checkpoint schema None"),
    ],
    ids=[
        "labels-vs-head",
        "num-classes-vs-weights",
        "no-padding",
        "bad-padding",
        "duplicate-labels",
        "labels-not-a-list",
        "num-classes-a-string",
        "unknown-pooling",
        "bad-backbone-config",
        "width-vs-weights",
        "unknown-backbone-field",
        "no-trainable",
        "empty",
    ],
)
def test_a_damaged_manifest_is_one_line_naming_the_mismatch(
    run: Path, tmp_path: Path, edit: Any, expected: str
) -> None:
    copy = damaged(run, tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        Classifier.load(copy, device="cpu")
    assert expected in one_line(info)
    result = CliRunner().invoke(main, ["predict", str(copy), "hello"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and expected in result.stderr
    assert "Traceback" not in result.output


# ----- an unfinished run ------------------------------------------------------------------------
@pytest.fixture
def unfinished(run: Path, tmp_path: Path) -> Path:
    return damaged(run, tmp_path, lambda m: m.update(complete=False, epochs_completed=1))


def test_python_api_warns_about_an_unfinished_run(unfinished: Path, run: Path) -> None:
    with pytest.warns(UnfinishedRunWarning, match="unfinished run .*after epoch 1 of 2"):
        clf = Classifier.load(unfinished, device="cpu")
    assert clf.complete is False and clf.info()["complete"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a finished run warns nothing
        assert Classifier.load(run, device="cpu").complete is True


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_cli_says_a_run_is_unfinished(unfinished: Path, command: str) -> None:
    args = [command, str(unfinished), *(["a printer on fire"] if command == "predict" else [])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"Warning: {unfinished} is an unfinished run" in result.stderr
    assert f"llmclf fit --resume {unfinished}" in result.stderr
    assert "UnfinishedRunWarning" not in result.stderr  # one line, not Python's warning format
