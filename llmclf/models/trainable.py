"""Which parameters train: a policy string, parsed once (`parse_trainable`), then applied.

Applying it is two steps: the policy's LoRA adapters (`TrainablePolicy.adapters`) are part of
the model's structure, so `llmclf.models.spec.build_classifier` adds them; `freeze` then sets
``requires_grad`` and returns the parameters that train, which the optimizer, gradient
clipping, the DDP check and the resume snapshot use (nothing re-scans ``requires_grad``).

- ``head``: the classification head only.
- ``last-block``: the last transformer block + final LayerNorm + head (the book's; the default).
- ``last-blocks:N``: the last N blocks + final LayerNorm + head.
- ``all``: everything.
- ``lora`` or ``lora:r=16,alpha=32``: LoRA adapters (default r=8, alpha=16) on every block's
  attention and MLP projections, + head. The whole base model, final LayerNorm included, stays
  frozen, so a LoRA run adds only adapters and a head to what it started from.
- ``lora:blocks=N`` (with r and alpha or not): adapters on the top N blocks only. The blocks
  below the lowest adapter are frozen and nothing in them trains, so the frozen-trunk cache
  computes them once per text.

The backbone class says which parameters are which (`BackboneNames`): GPT-2's blocks are
``h.{i}.``, its final norm ``ln_f.``; Llama's are ``layers.{i}.`` and ``norm.``. Nothing here
knows one family's names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import UsageError
from .classifier import SequenceClassifier
from .lora import add_lora

if TYPE_CHECKING:
    from .spec import Adapters


@dataclass(frozen=True)
class BackboneNames:
    """How a backbone class names its parameters (its class attributes of the same names;
    GPT-2's when a class declares none)."""

    block_prefix: str = "h."  # block i's parameters start with block_prefix + f"{i}."
    final_norm: str = "ln_f."  # the final norm's parameters start with this
    embeddings: tuple[str, ...] = ("wte.", "wpe.")  # embedding parameters start with one of these
    lora_targets: tuple[str, ...] = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")

    @classmethod
    def of(cls, backbone: nn.Module) -> BackboneNames:
        """The names ``backbone``'s class declares."""
        kind = type(backbone)
        defaults = cls()
        return cls(**{f: getattr(kind, f, getattr(defaults, f)) for f in cls.__dataclass_fields__})

    def only(self, layers: range | None):
        """A test for `add_lora`'s ``include``: whether a backbone module name is in one of
        ``layers`` (every module when ``layers`` is None)."""
        if layers is None:
            return None
        return lambda name: self.block_of("backbone." + name) in layers

    def block_of(self, name: str) -> int | None:
        """The block a classifier parameter belongs to ("backbone.h.3.mlp.c_fc.weight" -> 3)."""
        prefix = "backbone." + self.block_prefix
        if not name.startswith(prefix):
            return None
        return int(name[len(prefix) :].split(".", 1)[0])


FORMS = "head, last-block, last-blocks:N, all, lora, lora:r=R,alpha=A,blocks=N"
DEFAULT_POLICY = "last-block"


@dataclass(frozen=True)
class TrainablePolicy:
    """A parsed policy: ``kind`` is head | last-blocks | all | lora."""

    kind: str
    blocks: int = 0  # last-blocks: how many of the top blocks train; lora: how many of the top
    # blocks carry adapters (0: every block)
    r: int = 8  # lora: rank of the adapters
    alpha: float = 16.0  # lora: the update is scaled by alpha / r
    text: str = field(default="", compare=False)  # the policy as written ("lora:r=4")

    @property
    def adapters(self) -> Adapters | None:
        """The LoRA adapters this policy adds to the model, or None."""
        from .spec import Adapters

        if self.kind != "lora":
            return None
        return Adapters(self.r, self.alpha, blocks=self.blocks or None)


@dataclass(frozen=True)
class TrainableReport:
    """What `freeze` left trainable."""

    policy: str
    trainable: int  # trainable parameters
    total: int  # all parameters, adapters included
    trainable_names: tuple[str, ...]
    first_trainable_layer: int  # lowest block with a trainable parameter; 0 if embeddings
    # train, n_layer if no block does. Blocks below it are frozen and may be cached.
    parameters: dict[str, nn.Parameter] = field(default_factory=dict, repr=False, compare=False)
    # the parameters that train, by name, in the model's order

    def __str__(self) -> str:
        share = 100.0 * self.trainable / self.total if self.total else 0.0
        return (
            f"trainable ({self.policy}): {self.trainable:,} of {self.total:,} parameters "
            f"({share:.2f}%)"
        )


def parse_trainable(policy: str) -> TrainablePolicy:
    """Parse a policy string (see the module docstring); a bad one raises `UsageError`."""
    text = policy.strip() if isinstance(policy, str) else ""
    kind, _, args = text.partition(":")
    if kind == "last-block" and not args:
        return TrainablePolicy("last-blocks", blocks=1, text=text)
    if kind in ("head", "all") and not args:
        return TrainablePolicy(kind, text=text)
    if kind == "last-blocks" and args.isdigit() and int(args) >= 1:
        return TrainablePolicy("last-blocks", blocks=int(args), text=text)
    if kind == "lora" and ":" not in args:
        return _parse_lora(policy, args)
    raise _bad(policy)


def _parse_lora(policy: str, args: str) -> TrainablePolicy:
    values: dict[str, float] = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value) if key in ("r", "alpha", "blocks") else None
        except ValueError:
            number = None
        whole = key in ("r", "blocks")
        if number is None or key in values or number <= 0 or (whole and number % 1):
            raise _bad(policy)
        values[key] = number
    r, alpha = int(values.get("r", 8)), values.get("alpha", 16.0)
    blocks = int(values.get("blocks", 0))
    return TrainablePolicy("lora", blocks=blocks, r=r, alpha=alpha, text=policy.strip())


def _bad(policy: object) -> UsageError:
    return UsageError(
        f"unknown trainable policy {policy!r}; use one of: {FORMS} (N, R, A positive numbers)"
    )


def apply_trainable(model: SequenceClassifier, policy: str, *, seed: int = 123) -> TrainableReport:
    """Parse ``policy``, add its LoRA adapters to ``model`` if it has any, then `freeze`.

    ``seed`` seeds the adapters' initialisation (a local generator; the global RNG is left
    alone). Calling it again with the same LoRA policy keeps the adapters that are there.
    (The Trainer builds the adapters with the model instead: `llmclf.models.spec`.)
    """
    parsed = parse_trainable(policy)
    _check_blocks(parsed, len(model.backbone.h))
    if parsed.adapters is not None:
        generator = torch.Generator().manual_seed(seed)
        names = BackboneNames.of(model.backbone)
        layers = parsed.adapters.layers(len(model.backbone.h))
        targets = names.lora_targets
        add_lora(model.backbone, parsed.r, parsed.alpha, targets, generator, names.only(layers))
    return freeze(model, parsed)


def freeze(model: SequenceClassifier, policy: TrainablePolicy) -> TrainableReport:
    """Set ``requires_grad`` so that only what ``policy`` trains trains; report it, with the
    trainable parameters by name. A LoRA policy needs the adapters in the model already."""
    n_layer = len(model.backbone.h)
    _check_blocks(policy, n_layer)
    names = BackboneNames.of(model.backbone)
    for name, param in model.named_parameters():
        param.requires_grad_(_trains(policy, name, n_layer, names))
    return trainable_report(model, policy.text or policy.kind)


def _check_blocks(policy: TrainablePolicy, n_layer: int) -> None:
    if policy.kind == "last-blocks" and policy.blocks > n_layer:
        raise UsageError(
            f"trainable policy {policy.text!r} asks for {policy.blocks} blocks but the backbone "
            f"has {n_layer}; use last-blocks:{n_layer} or all"
        )
    if policy.kind == "lora" and policy.blocks > n_layer:
        raise UsageError(
            f"trainable policy {policy.text!r} asks for adapters on {policy.blocks} blocks but "
            f"the backbone has {n_layer}; use blocks={n_layer} or leave blocks out"
        )


def _trains(policy: TrainablePolicy, name: str, n_layer: int, names: BackboneNames) -> bool:
    """Whether the parameter ``name`` of a SequenceClassifier trains under ``policy``."""
    if policy.kind == "all" or name.startswith("head."):
        return True
    if policy.kind == "lora":
        return ".lora_" in name
    if policy.kind == "last-blocks":
        block = names.block_of(name)
        top = name.startswith("backbone." + names.final_norm)
        return top or (block is not None and block >= n_layer - policy.blocks)
    return False


def trainable_report(model: SequenceClassifier, policy: str) -> TrainableReport:
    """Count what trains in ``model`` as it is now."""
    params: dict[str, nn.Parameter] = {}
    trainable, total = 0, 0
    for name, param in model.named_parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
            params[name] = param
    names = list(params)
    n_layer = len(model.backbone.h)
    declared = BackboneNames.of(model.backbone)
    embeddings = tuple("backbone." + prefix for prefix in declared.embeddings)
    if any(name.startswith(embeddings) for name in names):
        first = 0
    else:
        blocks = [b for b in map(declared.block_of, names) if b is not None]
        first = min(blocks, default=n_layer)
    return TrainableReport(policy, trainable, total, tuple(names), first, params)
