"""``TrainConfig``: every choice of a fine-tuning run, as names and numbers (JSON round trip).

The defaults reproduce chapter 6 of *Build a Large Language Model (From Scratch)*: SMS spam,
undersampling, a 70/10/20 split, GPT-2 small with the last block + final norm + head trainable,
AdamW (lr 5e-5, weight decay 0.1), 5 epochs of batch 8, evaluation every 50 steps, seed 123.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LlmclfError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DEVICES = ("auto", "cpu", "cuda", "mps")
BALANCE_SCOPES = ("all", "train")
SAVE_POLICIES = ("best", "last")
CACHE_POLICIES = ("auto", "off")
_STRINGS = (  # fields that hold a name or a path
    "dataset",
    "text_column",
    "label_column",
    "encoding",
    "balance",
    "balance_scope",
    "padding",
    "backbone",
    "weights",
    "pooling",
    "trainable",
    "device",
    "precision",
    "cache",
    "save",
)


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of one fine-tuning run. Fields hold names, never objects.

    Every field is also a ``llmclf fit`` option (``batch_size`` is ``--batch-size``).

    Attributes:
        dataset: a registered dataset name, or a csv/tsv/jsonl/json/parquet file.
        text_column: the text column of a file dataset.
        label_column: the label column of a file dataset.
        encoding: the encoding of a file dataset.
        balance: balancer name: none, undersample, oversample, class-weight.
        balance_scope: ``all`` balances then splits (the book's); ``train`` balances only the
            training split, so validation and test keep the real class ratio.
        split: train / validation / test fractions.
        dedupe: drop duplicate texts before splitting.
        padding: padding policy: pad-batch, pad-dataset, truncate-dataset (needs
            max_length). `Trainer.fit` refuses one that would make a prediction depend on
            its batch (truncate-batch, or ``last`` pooling without a fixed width).
        max_length: cap on tokens per text (never above the backbone's context length).
        bucket: length-bucketed training batches.
        backbone: backbone name, e.g. gpt2-small.
        weights: ``pretrained``, ``random``, or a path to a safetensors file or directory.
        pooling: last, last-token, first, mean.
        trainable: head, last-block, last-blocks:N, all, lora, lora:r=R,alpha=A.
        dropout: dropout rate during training.
        epochs: passes over the training split.
        batch_size: the global batch size (split across processes under torchrun).
        grad_accum: batches per optimizer step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        early_stopping: stop after this many epochs without a better validation loss.
        eval_every: optimizer steps between the evaluations recorded in history.csv.
        eval_batches: batches per periodic evaluation (None: the whole split).
        seed: seeds the split, the shuffling and the head's initialisation.
        device: auto (cuda, then mps, then cpu), cpu, cuda, mps.
        precision: fp32, bf16, fp16, or auto (bf16 where the device is fast at it).
        cache: ``auto`` uses the frozen-trunk cache whenever it is exact; ``off`` never does.
        save: keep the ``best`` model by validation loss, or the ``last``.
        output: the run directory (default ``runs/<dataset>``, made unique).
    """

    # data
    dataset: str = "sms"  # registry name or path to a csv/tsv/jsonl/json/parquet file
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    balance: str = "undersample"  # balancer registry name
    balance_scope: str = "all"  # "all": balance, then split (book) | "train": training split only
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train / validation / test
    dedupe: bool = False
    padding: str = "pad-batch"  # padding registry name
    max_length: int | None = None  # token cap per text (always <= the context length)
    bucket: bool = False  # length-bucketed training batches (pad-batch only)
    # model
    backbone: str = "gpt2-small"  # backbone registry name
    weights: str = "pretrained"  # "pretrained" | "random" | path to a safetensors file or dir
    pooling: str = "last-token"  # last | last-token | first | mean
    trainable: str = "last-block"  # head | last-block | last-blocks:N | all | lora[:r=..,alpha=..]
    dropout: float = 0.0
    # optimisation
    epochs: int = 5
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.1
    grad_clip: float | None = None
    early_stopping: int | None = None  # patience in epochs on validation loss
    eval_every: int = 50  # steps between evaluations recorded in history.csv
    eval_batches: int | None = 5  # batches per periodic evaluation (None: the whole split)
    seed: int = 123
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (bf16 where the device is fast at it)
    cache: str = "auto"  # frozen-trunk cache: auto (when exact) | off
    save: str = "best"  # best (lowest validation loss) | last
    output: str | None = None  # run directory; default runs/<dataset>[-N]

    def __post_init__(self) -> None:
        for name in ("dataset", "weights", "output"):  # paths may come as pathlib.Path
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if isinstance(self.split, list):
            object.__setattr__(self, "split", tuple(self.split))
        self._check_types()
        _check(len(self.split) == 3, "split", "needs three fractions: train, validation, test")
        _check(
            all(f >= 0 for f in self.split)
            and self.split[0] > 0
            and abs(sum(self.split) - 1.0) < 1e-6,
            "split",
            f"fractions must be >= 0, train > 0, and sum to 1; got {self.split}",
        )
        for name in ("epochs", "batch_size", "grad_accum", "eval_every"):
            value = getattr(self, name)
            _check(value >= 1, name, f"must be an integer >= 1, got {value!r}")
        for name in ("max_length", "early_stopping", "eval_batches"):
            value = getattr(self, name)
            _check(
                value is None or value >= 1, name, f"must be an integer >= 1 or null, got {value!r}"
            )
        _check(0 <= self.seed < 2**32, "seed", f"must be in 0..2**32-1, got {self.seed}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        _check(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or null")
        _choice(self, "precision", PRECISIONS)
        _choice(self, "device", DEVICES)
        _choice(self, "balance_scope", BALANCE_SCOPES)
        _choice(self, "save", SAVE_POLICIES)
        _choice(self, "cache", CACHE_POLICIES)
        from ..models.classifier import POOLINGS
        from ..models.trainable import parse_trainable

        _choice(self, "pooling", POOLINGS)
        try:
            parse_trainable(self.trainable)
        except (LlmclfError, ValueError) as exc:
            raise ConfigError(f"trainable: {exc}") from None
        for name in ("dataset", "backbone", "weights", "balance", "padding"):
            _check(getattr(self, name).strip(), name, "must be a non-empty string")

    def _check_types(self) -> None:
        """Every field has its declared type (a config file's ``"no"`` is not a boolean)."""
        for name in _STRINGS:
            value = getattr(self, name)
            _check(isinstance(value, str), name, f"must be a string, got {value!r}")
        _check(
            self.output is None or isinstance(self.output, str),
            "output",
            f"must be a directory path (a string) or null, got {self.output!r}",
        )
        for name in ("dedupe", "bucket"):
            value = getattr(self, name)
            _check(
                isinstance(value, bool),
                name,
                f"must be true or false (a JSON/TOML boolean, unquoted), got {value!r}",
            )
        for name in ("epochs", "batch_size", "grad_accum", "eval_every", "seed"):
            value = getattr(self, name)
            _check(_is_int(value), name, f"must be an integer, got {value!r}")
        for name in ("max_length", "early_stopping", "eval_batches"):
            value = getattr(self, name)
            _check(
                value is None or _is_int(value), name, f"must be an integer or null, got {value!r}"
            )
        for name in ("lr", "weight_decay", "dropout"):
            value = getattr(self, name)
            _check(_is_number(value), name, f"must be a finite number (unquoted), got {value!r}")
        _check(
            self.grad_clip is None or _is_number(self.grad_clip),
            "grad_clip",
            f"must be a finite number or null, got {self.grad_clip!r}",
        )
        _check(
            isinstance(self.split, tuple) and all(_is_number(f) for f in self.split),
            "split",
            f"must be three numbers (train, validation, test), got {self.split!r}",
        )

    # ----- JSON / TOML ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["split"] = list(self.split)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be an object of fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a comparison with a string where a number belongs
            raise ConfigError(f"invalid config: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a JSON or TOML file (by extension; ``.toml`` is TOML, anything else JSON)."""
        return cls.from_dict(read_config_file(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a JSON or TOML config file, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing JSON or TOML file")
    if path.suffix not in ("", ".json", ".toml"):
        raise ConfigError(
            f"config file {path} must be JSON (.json) or TOML (.toml), not {path.suffix}"
        )
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"config file {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold an object of config fields")
    return {key.replace("-", "_"): value for key, value in data.items()}


def _check(ok: object, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _choice(config: TrainConfig, field: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, field)
    _check(value in choices, field, f"must be one of {', '.join(choices)}; got {value!r}")
