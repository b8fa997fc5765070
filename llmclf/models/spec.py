"""One description of a classifier (`ModelSpec`) and the one function that builds it.

`build_classifier` is the only place a `SequenceClassifier` is made: the Trainer builds
``build_classifier(spec, backbone=<the registry builder's module>)``; `Classifier.load` calls
``load_classifier(spec, state)``, which builds ``build_classifier(spec)`` on the meta device
(structure only) and assigns the tensors of ``model.safetensors``. The spec is saved in
``llmclf.json`` under ``"model"``, so a run rebuilds from its own directory, without the
registry or the plugin that trained it::

    {"architecture": "gpt2", "config": {"n_layer": 12, ...}, "num_classes": 2,
     "pooling": "last-token", "adapters": null}          # or {"r": 8, "alpha": 16.0}

Adding an architecture family
-----------------------------
An architecture is a module class and its config dataclass, registered by name in
`ARCHITECTURES`. To add one (say Llama, in ``llmclf/models/llama.py``):

1. Write the module with GPT-2's interface, which the classifier, the frozen-trunk cache and the
   Trainer rely on: ``Llama(config)``; ``config.n_embd`` and ``config.context_length``;
   ``embed(ids) -> (B, T, C)``; ``run_blocks(x, start, end)``; ``h`` (a ``ModuleList`` of blocks,
   each with ``forward_at(x, pos) -> (B, C)``); ``ln_f`` (the final norm); ``init_weights``.
   The config is a dataclass of JSON values (it is saved as ``asdict(config)``). The class
   declares its parameter names (`llmclf.models.trainable.BackboneNames`): ``block_prefix``
   (``"layers."``), ``final_norm`` (``"norm."``), ``embeddings`` (``("embed_tokens.",)``) and
   ``lora_targets`` (the projections LoRA wraps); the trainable policies and LoRA ask the
   class, so nothing else changes. To take ``--pack`` it also sets ``packs = True`` and
   accepts a packed row's per-token ``positions`` (1, W) and its texts' lengths ``spans``
   (N,), within which attention stays: ``embed(ids, positions)``,
   ``run_blocks(x, start, end, spans, positions)`` and ``forward_at(x, pos, keys, seen,
   positions)`` (see `llmclf.models.packing`).
2. Add one line to `ARCHITECTURES`: ``"mamba": (Mamba, MambaConfig)`` (Llama and Qwen3 are
   there, from `llmclf.models.hf_checkpoint.FAMILIES`).
3. Register its sizes in the backbone registry with an entry whose ``architecture`` attribute
   is ``"llama"`` and whose ``tokenizer`` attribute names its tokenizer (see `backbone_entry`;
   `llmclf.models.backbones.GPT2Builder` is the pattern: calling it builds the module, its
   ``config`` attribute gives the size without building; `llmclf.models.hf_backbones.HFBuilder`
   is the same for Hugging Face checkpoints). The tokenizer is ``"gpt2"`` (tiktoken) or
   ``"tokenizer.json"`` (the builder's ``tokenizer_dir()`` holds it; see `load_tokenizer`).

Nothing in the Trainer or the loader changes. A registry entry without an ``architecture``
attribute (a plugin's plain builder function) is GPT-2, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .classifier import POOLINGS, SequenceClassifier
from .gpt2 import GPT2, GPT2Config
from .hf_checkpoint import FAMILIES
from .lora import add_lora
from .trainable import BackboneNames

# architecture name -> (module class, config dataclass)
ARCHITECTURES: dict[str, tuple[type, type]] = {
    "gpt2": (GPT2, GPT2Config),
    **{model_type: (model, config) for model_type, (config, model) in FAMILIES.items()},
}
DEFAULT_ARCHITECTURE = "gpt2"  # what a registry entry without an ``architecture`` is
DEFAULT_TOKENIZER = "gpt2"  # what a registry entry without a ``tokenizer`` uses


@dataclass(frozen=True)
class Architecture:
    """An architecture family: its name, module class and config class."""

    name: str
    model_class: type
    config_class: type

    def config(self, fields: Mapping[str, Any]) -> Any:
        """The config from its saved fields; a bad field is a `ConfigError`."""
        try:
            return self.config_class(**fields)
        except (TypeError, ValueError, ConfigError) as exc:
            raise ConfigError(f"model.config is not a {self.name} config ({exc})") from None


def architecture(name: str) -> Architecture:
    """The architecture named ``name`` in `ARCHITECTURES`, or a `ConfigError` naming the known
    ones."""
    if name not in ARCHITECTURES:
        raise ConfigError(
            f"unknown architecture {name!r}; llmclf knows {', '.join(sorted(ARCHITECTURES))} "
            "(a new family is added to llmclf.models.spec.ARCHITECTURES)"
        )
    model_class, config_class = ARCHITECTURES[name]
    return Architecture(name, model_class, config_class)


@dataclass(frozen=True)
class Adapters:
    """LoRA adapters on the attention and MLP projections of every block (or of the top
    ``blocks`` blocks): rank ``r`` and scale ``alpha`` (the update is multiplied by
    ``alpha / r``)."""

    r: int = 8
    alpha: float = 16.0
    blocks: int | None = None  # adapters on the top N blocks only; None: every block

    def layers(self, n_layer: int) -> range | None:
        """The blocks that carry adapters, or None for every block."""
        return None if self.blocks is None else range(max(n_layer - self.blocks, 0), n_layer)

    def to_dict(self) -> dict[str, Any]:
        """``{r, alpha}``, and ``blocks`` only when set (older llmclf reads the rest)."""
        data = dataclasses.asdict(self)
        if self.blocks is None:
            del data["blocks"]
        return data

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"model.adapters.r must be an integer >= 1, got {self.r!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float):
            raise ConfigError(f"model.adapters.alpha must be a number, got {self.alpha!r}")
        if self.alpha <= 0:
            raise ConfigError(f"model.adapters.alpha must be > 0, got {self.alpha!r}")
        b = self.blocks
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ConfigError(f"model.adapters.blocks must be an integer >= 1 or null, got {b!r}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes a classifier's structure; JSON-serialisable (`to_dict`).

    Weights are not part of it: the Trainer brings a backbone with its weights, a loader a
    state dict.
    """

    architecture: str  # a name in ARCHITECTURES: "gpt2"
    config: dict[str, Any]  # the architecture config's fields: the backbone's size
    num_classes: int  # the head's outputs
    pooling: str = "last-token"  # one of llmclf.models.classifier.POOLINGS
    adapters: Adapters | None = None  # LoRA adapters the weights carry, or None

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str):
            raise ConfigError(f"model.architecture must be a string, got {self.architecture!r}")
        if not isinstance(self.config, dict):
            raise ConfigError(f"model.config must be a JSON object, got {self.config!r}")
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError(f"model.num_classes must be an integer >= 2, got {n!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(
                f"model.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"
            )
        if self.adapters is not None and not isinstance(self.adapters, Adapters):
            raise ConfigError(f"model.adapters must be Adapters or None, got {self.adapters!r}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON values (what ``llmclf.json`` holds under ``"model"``)."""
        data = dataclasses.asdict(self)
        data["adapters"] = None if self.adapters is None else self.adapters.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        """The spec `to_dict` wrote; a missing or wrong field is a `ConfigError` naming it."""
        if not isinstance(data, dict):
            raise ConfigError(f"model must be a JSON object, got {data!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - names):
            raise ConfigError(f"model has unknown field(s) {', '.join(unknown)}")
        for name in ("architecture", "config", "num_classes"):
            if name not in data:
                raise ConfigError(f"model has no {name!r} field")
        adapters = data.get("adapters")
        if adapters is not None:
            if not isinstance(adapters, dict) or set(adapters) - {"r", "alpha", "blocks"}:
                raise ConfigError(
                    f"model.adapters must be {{r, alpha[, blocks]}}, got {adapters!r}"
                )
            adapters = Adapters(**adapters)
        return cls(**{**data, "adapters": adapters})

    def check(self) -> Any:
        """The architecture config this spec describes; `ConfigError` if it is not one."""
        return architecture(self.architecture).config(self.config)


def build_classifier(
    spec: ModelSpec, *, backbone: nn.Module | None = None, seed: int = 123
) -> SequenceClassifier:
    """The classifier ``spec`` describes: backbone + pooling + linear head (+ LoRA adapters).

    Args:
        spec: the structure.
        backbone: the backbone module with its weights (training: what the registry builder
            returned); it must be of ``spec``'s architecture. ``None`` builds the structure
            from ``spec.config`` on the current default device; under
            ``with torch.device("meta")`` that allocates nothing, for a loader that assigns a
            saved state dict (`load_classifier`).
        seed: seeds the adapters' initialisation (a local generator). The head is initialised
            from the global RNG, as ``nn.Linear`` does.

    Every parameter is left trainable: which ones train is `llmclf.models.trainable.freeze`'s
    business.
    """
    arch = architecture(spec.architecture)
    if backbone is None:
        backbone = arch.model_class(arch.config(spec.config))
    elif not isinstance(backbone, arch.model_class):
        raise ConfigError(
            f"the backbone is a {type(backbone).__name__}, not a {arch.model_class.__name__} "
            f"(architecture {spec.architecture!r}); make the registry entry's architecture "
            "name the class its builder returns"
        )
    model = SequenceClassifier(backbone, spec.num_classes, pooling=spec.pooling)
    if spec.adapters is not None:
        generator = torch.Generator().manual_seed(seed)
        names = BackboneNames.of(model.backbone)
        only = names.only(spec.adapters.layers(len(model.backbone.h)))
        r, alpha = spec.adapters.r, spec.adapters.alpha
        add_lora(model.backbone, r, alpha, names.lora_targets, generator, only)
    return model


def load_classifier(
    spec: ModelSpec,
    state: Mapping[str, torch.Tensor],
    *,
    check: Callable[[SequenceClassifier, Mapping[str, torch.Tensor]], None] | None = None,
) -> SequenceClassifier:
    """``build_classifier(spec)`` with the tensors of ``state`` (no random initialisation).

    ``check(model, state)``, when given, runs before loading (to word a shape mismatch). Keys
    missing from or unexpected in ``state`` raise `ConfigError`. The LoRA adapters stay
    separate (`llmclf.models.lora.merge_lora` folds them in).
    """
    with torch.device("meta"):  # no memory, no RNG: every tensor comes from ``state``
        model = build_classifier(spec)
    if check is not None:
        check(model, state)
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"the weights do not match the model spec: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone registry entry, resolved: its builder, architecture and tokenizer.

    ``size`` is the architecture config the builder builds, when the builder can say without
    building (a `llmclf.models.backbones.GPT2Builder` can; a plain builder function cannot).
    """

    name: str
    builder: Callable[..., Any]
    architecture: Architecture
    tokenizer: str
    size: Any | None

    @property
    def context_length(self) -> int | None:
        """The most tokens one input may hold, when known without building."""
        return None if self.size is None else self.size.context_length

    def tokenizer_dir(self) -> Any:
        """Where the entry's ``tokenizer.json`` is (its builder's ``tokenizer_dir()``,
        downloading it if needed); None for GPT-2's BPE, which lives in ``$LLMCLF_HOME/gpt2``."""
        if self.tokenizer == DEFAULT_TOKENIZER:
            return None
        find = getattr(self.builder, "tokenizer_dir", None)
        if find is None:
            raise ConfigError(
                f"backbone {self.name!r} uses tokenizer {self.tokenizer!r} but its builder has no "
                "tokenizer_dir() saying where that tokenizer.json is; add one"
            )
        return find()


def backbone_entry(name: str) -> BackboneEntry:
    """Resolve the backbone registered as ``name`` (an unknown name lists the known ones).

    An entry names its architecture (a key of `ARCHITECTURES`) and its tokenizer by the
    attributes ``architecture`` and ``tokenizer``; without them it is GPT-2 with GPT-2's BPE.
    A name that is not registered but is a directory holding a ``config.json`` is a local
    Hugging Face model (`llmclf.models.hf_backbones.local_builder`).
    An unknown architecture is a `ConfigError` that names the entry.
    """
    from ..registry import backbones
    from .hf_backbones import is_model_directory, local_builder

    if name not in backbones and is_model_directory(name):
        builder = local_builder(name)
    else:
        builder = backbones.get(name)
    arch_name = getattr(builder, "architecture", DEFAULT_ARCHITECTURE)
    try:
        arch = architecture(arch_name)
    except ConfigError as exc:
        raise ConfigError(f"backbone {name!r}: {exc}") from None
    tokenizer = getattr(builder, "tokenizer", DEFAULT_TOKENIZER)
    return BackboneEntry(name, builder, arch, tokenizer, getattr(builder, "config", None))
