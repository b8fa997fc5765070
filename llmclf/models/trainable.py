"""Which parameters train: a policy string, parsed, then applied by setting ``requires_grad``.

- ``head``: the classification head only.
- ``last-block``: the last transformer block + final LayerNorm + head (the book's; the default).
- ``last-blocks:N``: the last N blocks + final LayerNorm + head.
- ``all``: everything.
- ``lora`` or ``lora:r=16,alpha=32``: LoRA adapters (default r=8, alpha=16) on every block's
  attention and MLP projections, + head. The whole base model, final LayerNorm included, stays
  frozen, so a LoRA run adds only adapters and a head to what it started from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UsageError
from .classifier import SequenceClassifier
from .lora import LORA_TARGETS, add_lora

FORMS = "head, last-block, last-blocks:N, all, lora, lora:r=R,alpha=A"
DEFAULT_POLICY = "last-block"


@dataclass(frozen=True)
class TrainablePolicy:
    """A parsed policy: ``kind`` is head | last-blocks | all | lora."""

    kind: str
    blocks: int = 0  # last-blocks: how many of the top blocks train
    r: int = 8  # lora: rank of the adapters
    alpha: float = 16.0  # lora: the update is scaled by alpha / r


@dataclass(frozen=True)
class TrainableReport:
    """What `apply_trainable` left trainable."""

    policy: str
    trainable: int  # trainable parameters
    total: int  # all parameters, adapters included
    trainable_names: tuple[str, ...]
    first_trainable_layer: int  # lowest block with a trainable parameter; 0 if embeddings
    # train, n_layer if no block does. Blocks below it are frozen and may be cached.

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
        return TrainablePolicy("last-blocks", blocks=1)
    if kind in ("head", "all") and not args:
        return TrainablePolicy(kind)
    if kind == "last-blocks" and args.isdigit() and int(args) >= 1:
        return TrainablePolicy("last-blocks", blocks=int(args))
    if kind == "lora" and ":" not in args:
        return _parse_lora(policy, args)
    raise _bad(policy)


def _parse_lora(policy: str, args: str) -> TrainablePolicy:
    values: dict[str, float] = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value) if key in ("r", "alpha") else None
        except ValueError:
            number = None
        if number is None or key in values or number <= 0 or (key == "r" and number % 1):
            raise _bad(policy)
        values[key] = number
    return TrainablePolicy("lora", r=int(values.get("r", 8)), alpha=values.get("alpha", 16.0))


def _bad(policy: object) -> UsageError:
    return UsageError(
        f"unknown trainable policy {policy!r}; use one of: {FORMS} (N, R, A positive numbers)"
    )


def apply_trainable(model: SequenceClassifier, policy: str, *, seed: int = 123) -> TrainableReport:
    """Freeze ``model`` except what ``policy`` trains; for ``lora``, add the adapters first.

    ``seed`` seeds the adapters' initialisation (a local generator; the global RNG is left
    alone). Calling it again with the same LoRA policy keeps the adapters that are there.
    """
    parsed = parse_trainable(policy)
    n_layer = len(model.backbone.h)
    if parsed.kind == "last-blocks" and parsed.blocks > n_layer:
        raise UsageError(
            f"trainable policy {policy!r} asks for {parsed.blocks} blocks but the backbone has "
            f"{n_layer}; use last-blocks:{n_layer} or all"
        )
    if parsed.kind == "lora":
        generator = torch.Generator().manual_seed(seed)
        add_lora(model.backbone, parsed.r, parsed.alpha, LORA_TARGETS, generator)

    for name, param in model.named_parameters():
        param.requires_grad_(_trains(parsed, name, n_layer))
    return trainable_report(model, policy.strip())


def _trains(policy: TrainablePolicy, name: str, n_layer: int) -> bool:
    """Whether the parameter ``name`` of a SequenceClassifier trains under ``policy``."""
    if policy.kind == "all" or name.startswith("head."):
        return True
    if policy.kind == "lora":
        return ".lora_" in name
    if policy.kind == "last-blocks":
        block = _block_of(name)
        top = name.startswith("backbone.ln_f.")
        return top or (block is not None and block >= n_layer - policy.blocks)
    return False


def trainable_report(model: SequenceClassifier, policy: str) -> TrainableReport:
    """Count what trains in ``model`` as it is now."""
    names, trainable, total = [], 0, 0
    for name, param in model.named_parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
            names.append(name)
    n_layer = len(model.backbone.h)
    if any(name.startswith(("backbone.wte.", "backbone.wpe.")) for name in names):
        first = 0
    else:
        blocks = [b for b in map(_block_of, names) if b is not None]
        first = min(blocks, default=n_layer)
    return TrainableReport(policy, trainable, total, tuple(names), first)


def _block_of(name: str) -> int | None:
    """The block a parameter belongs to ("backbone.h.3.mlp.c_fc.weight" -> 3), else None."""
    prefix = "backbone.h."
    if not name.startswith(prefix):
        return None
    return int(name[len(prefix) :].split(".", 1)[0])
