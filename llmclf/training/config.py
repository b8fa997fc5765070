"""``TrainConfig``: every choice of a fine-tuning run, as names and numbers (JSON round trip).

The config is composed of four small specs, each a frozen dataclass of plain values:
`DataSpec` (``config.data``: what data and how it is prepared), `ModelChoice`
(``config.model``: backbone, weights, pooling, what trains), `OptimSpec` (``config.optim``)
and `RuntimeSpec` (``config.runtime``: device, precision, cache, what is saved where). It is
still built and read flat: ``TrainConfig(dataset="sms", lr=1e-4).lr``, and it saves as one flat
JSON object of fields, the same ``config`` every ``llmclf.json`` has held.

Every field is declared once, with its default, its check and its help; ``llmclf fit`` builds
one option per field from these declarations (`config_fields`), so a new field is a new
option without a second edit.

The defaults reproduce chapter 6 of *Build a Large Language Model (From Scratch)*: SMS spam,
undersampling, a 70/10/20 split, GPT-2 small with the last block + final norm + head trainable,
AdamW (lr 5e-5, weight decay 0.1), 5 epochs of batch 8, evaluation every 50 steps, seed 123.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import Field, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..data.spec import DataSpec
from ..errors import ConfigError, LlmclfError
from ..options import (
    ATTENTIONS,
    CACHE_POLICIES,
    POOLINGS,
    PRECISIONS,
    SAVE_POLICIES,
    check_choice,
    check_device,
    check_fields,
    check_precision,
    default_of,
    option,
)

__all__ = [
    "SECTIONS",
    "DataSpec",
    "ModelChoice",
    "OptimSpec",
    "RuntimeSpec",
    "TrainConfig",
    "config_fields",
    "read_config_file",
]


@dataclass(frozen=True, kw_only=True)
class ModelChoice:
    """Which backbone, with which weights, pooled how, and which parameters train (names).

    Each field's meaning is its ``help``, which ``llmclf fit --help`` and the CLI reference
    show.
    """

    backbone: str = option(
        "gpt2-small",
        "Backbone: a registered name (llmclf list backbones) or a local Hugging Face model dir.",
        metavar="NAME",
    )
    weights: str = option(
        "pretrained",
        "pretrained, random, or a path to a model.safetensors (or its directory).",
        metavar="WEIGHTS",
    )
    pooling: str = option(
        "last-token",
        "Which state the head reads: last-token (the last real token), last (the last "
        "position, padding included: the book's), first, or mean (over real tokens).",
        choices=POOLINGS,
    )
    trainable: str = option(
        "last-block",
        "What trains: head, last-block, last-blocks:N, all, lora (r 8, alpha 16, every "
        "block), or lora:r=R,alpha=A,blocks=N.",
        metavar="POLICY",
    )
    dropout: float = option(0.0, "Dropout rate during training.")
    attention: str = option(
        "causal",
        "Backbone attention: causal (as GPT-2 was trained), or bidirectional (no causal mask; "
        "GPT-2 only, with a fixed-width --padding).",
        choices=ATTENTIONS,
    )

    def __post_init__(self) -> None:
        if isinstance(self.weights, os.PathLike):
            object.__setattr__(self, "weights", os.fspath(self.weights))
        check_fields(self)
        for name in ("backbone", "weights"):
            _check(getattr(self, name).strip(), name, "must be a non-empty string")
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("attention", self.attention, ATTENTIONS)
        _check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        from ..models.trainable import parse_trainable

        try:
            parse_trainable(self.trainable)
        except (LlmclfError, ValueError) as exc:
            raise ConfigError(f"trainable: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class OptimSpec:
    """How the trainable parameters are optimised (AdamW) and how often progress is measured.

    Each field's meaning is its ``help``, which ``llmclf fit --help`` and the CLI reference
    show.
    """

    epochs: int = option(5, "Passes over the training split.")
    batch_size: int = option(8, "Global batch size (split across processes under torchrun).")
    grad_accum: int = option(1, "Batches per optimizer step (gradient accumulation).")
    lr: float = option(5e-5, "AdamW learning rate.")
    weight_decay: float = option(0.1, "AdamW weight decay.")
    grad_clip: float | None = option(
        None, "Clip the gradient norm to this value.", default_text="no clipping"
    )
    early_stopping: int | None = option(
        None,
        "Stop after this many epochs without a better validation loss.",
        default_text="off",
    )
    eval_every: int = option(50, "Optimizer steps between evaluations recorded in history.csv.")
    eval_batches: int | None = option(
        5, "Batches per periodic evaluation (null in a --config file: the whole split)."
    )

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("epochs", "batch_size", "grad_accum", "eval_every"):
            value = getattr(self, name)
            _check(value >= 1, name, f"must be an integer >= 1, got {value!r}")
        for name in ("early_stopping", "eval_batches"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, f"must be >= 1 or null, got {value!r}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or null")


@dataclass(frozen=True, kw_only=True)
class RuntimeSpec:
    """Where and how the run executes, and what it keeps.

    Each field's meaning is its ``help``, which ``llmclf fit --help`` and the CLI reference
    show.
    """

    device: str = option(
        "auto",
        "Device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.",
        metavar="DEVICE",
    )
    precision: str = option(
        "fp32",
        "Autocast precision; auto is bf16 where the device is fast at it.",
        choices=PRECISIONS,
    )
    cache: str = option(
        "auto", "Frozen-trunk cache: auto (whenever it is exact) or off.", choices=CACHE_POLICIES
    )
    cache_dir: str | None = option(
        None,
        "Where the frozen-trunk cache spills to a memory-mapped file when it exceeds the memory "
        "budget (the file is deleted once mapped).",
        metavar="DIR",
        default_text="the run directory",
    )
    save: str = option(
        "best", "Keep the best model by validation loss, or the last.", choices=SAVE_POLICIES
    )
    pack: bool = option(
        False,
        "Pack each batch's texts side by side into one row, attention within each text: the "
        "blocks that run compute no padding; exact.",
    )
    compile: bool = option(
        False, "torch.compile the transformer blocks (compiling takes a while at the start)."
    )
    output: str | None = option(
        None, "Run directory.", metavar="DIR", default_text="runs/<dataset>, made unique"
    )

    def __post_init__(self) -> None:
        for name in ("output", "cache_dir"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        check_fields(self)
        check_device(self.device)
        check_precision(self.precision)
        check_choice("cache", self.cache, CACHE_POLICIES)
        check_choice("save", self.save, SAVE_POLICIES)


# Fields newer than the flat schema older llmclf versions read: saved only when they differ from
# their default, so a run that does not use them still loads in an older llmclf.
SAVED_WHEN_SET = ("strip_html", "long_texts", "cache_dir", "pack", "compile", "attention")

SECTIONS: dict[str, type] = {
    "data": DataSpec,
    "model": ModelChoice,
    "optim": OptimSpec,
    "runtime": RuntimeSpec,
}
_SECTION_OF = {f.name: name for name, spec in SECTIONS.items() for f in fields(spec)}


def config_fields() -> tuple[Field[Any], ...]:
    """Every field of a `TrainConfig`, section by section (data, model, optim, runtime)."""
    return tuple(f for spec in SECTIONS.values() for f in fields(spec))


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Configuration of one fine-tuning run: four specs of names and numbers, never objects.

    Build it flat (``TrainConfig(dataset="tickets", lr=1e-4)``: each field goes to its spec)
    or from specs (``TrainConfig(data=DataSpec(...), lr=1e-4)``); read it flat
    (``config.lr``) or by spec (``config.optim``). Every field is also a ``llmclf fit``
    option (``batch_size`` is ``--batch-size``). The fields and their meaning are those of
    `DataSpec`, `ModelChoice`, `OptimSpec` and `RuntimeSpec`.
    """

    data: DataSpec
    model: ModelChoice
    optim: OptimSpec
    runtime: RuntimeSpec

    def __init__(
        self,
        *,
        data: DataSpec | None = None,
        model: ModelChoice | None = None,
        optim: OptimSpec | None = None,
        runtime: RuntimeSpec | None = None,
        **values: Any,
    ) -> None:
        unknown = sorted(set(values) - set(_SECTION_OF))
        if unknown:
            raise TypeError(f"TrainConfig got unexpected field(s): {', '.join(unknown)}")
        given = {"data": data, "model": model, "optim": optim, "runtime": runtime}
        for section, spec_type in SECTIONS.items():
            base = given[section]
            mine = {k: v for k, v in values.items() if _SECTION_OF[k] == section}
            if base is None:
                spec = spec_type(**mine)
            elif isinstance(base, spec_type):
                spec = replace(base, **mine) if mine else base
            else:
                raise ConfigError(
                    f"{section}: must be a {spec_type.__name__}, got {type(base).__name__}"
                )
            object.__setattr__(self, section, spec)

    # ----- JSON / TOML ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, flat, as JSON values (the ``config`` object of ``llmclf.json``); the
        fields of `SAVED_WHEN_SET` only when they are not at their default."""
        data = {
            f.name: getattr(self, f.name)
            for f in config_fields()
            if f.name not in SAVED_WHEN_SET or getattr(self, f.name) != default_of(f)
        }
        data["split"] = self.split if isinstance(self.split, str) else list(self.split)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from flat fields, or fields grouped in ``data``/``model``/``optim``/``runtime``
        tables (a saved ``llmclf.json`` config of any version loads)."""
        flat = _flatten(data)
        unknown = sorted(set(flat) - set(_SECTION_OF))
        if unknown:
            known = ", ".join(sorted(_SECTION_OF))
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}; known: {known}")
        try:
            return cls(**flat)
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
        """A copy with ``changes`` (flat fields, or whole specs: ``data=DataSpec(...)``)."""
        specs = {name: changes.pop(name, getattr(self, name)) for name in SECTIONS}
        return TrainConfig(**specs, **changes)


def _field_property(section: str, f: Field[Any]) -> property:
    def get(config: TrainConfig) -> Any:
        return getattr(getattr(config, section), f.name)

    return property(get, doc=f.metadata.get("help"))


for _f in config_fields():  # flat read access: config.lr is config.optim.lr
    setattr(TrainConfig, _f.name, _field_property(_SECTION_OF[_f.name], _f))


def _flatten(data: object, where: str = "a config") -> dict[str, Any]:
    """Fields of ``data``, with section tables (``[optim]`` in TOML) merged in."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object of fields, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for name, item in value.items():
                if _SECTION_OF.get(name, key) != key:
                    raise ConfigError(f"{key}.{name}: {name} belongs to {_SECTION_OF[name]}")
                _put(flat, name, item)
        else:
            _put(flat, key, value)
    return flat


def _put(flat: dict[str, Any], name: str, value: Any) -> None:
    if name in flat:
        raise ConfigError(f"{name}: given twice (once in a section); give it once")
    flat[name] = value


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
    return _flatten(_underscored(data), where=f"config file {path}")


def _underscored(data: dict[str, Any]) -> dict[str, Any]:
    """``batch-size`` -> ``batch_size``, in section tables too."""
    return {
        key.replace("-", "_"): _underscored(value) if isinstance(value, dict) else value
        for key, value in data.items()
    }


def _check(ok: object, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field}: {message}")
