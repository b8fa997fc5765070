"""The registries. Built-ins live in the modules named here and register on first read."""

from __future__ import annotations

from typing import Any

from .registry import Registry

datasets: Registry[Any] = Registry(
    "dataset", "llmclf.datasets", ("llmclf.data.sources", "llmclf.data.imdb")
)
balancers: Registry[Any] = Registry("balancer", "llmclf.balancers", ("llmclf.data.balance",))
padding: Registry[Any] = Registry("padding policy", "llmclf.padding", ("llmclf.data.padding",))
backbones: Registry[Any] = Registry(
    "backbone", "llmclf.backbones", ("llmclf.models.backbones", "llmclf.models.hf_backbones")
)
long_texts: Registry[Any] = Registry(
    "long-text policy", "llmclf.long_texts", ("llmclf.data.long_texts",)
)

ALL: dict[str, Registry[Any]] = {
    "datasets": datasets,
    "balancers": balancers,
    "padding": padding,
    "backbones": backbones,
    "long_texts": long_texts,
}
