"""llmclf: turn a pretrained GPT-2 into a text classifier.

The registries (``datasets``, ``balancers``, ``padding``, ``backbones``, ``long_texts``) are
cheap to import; the training and inference API (``Trainer``, ``TrainConfig``, ``Classifier``)
imports torch on first use, so ``import llmclf`` stays fast. ``download(names, home=None)``
fetches datasets, tokenizer files and backbone weights ahead of time.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import LlmclfError
from .registry import backbones, balancers, datasets, long_texts, padding

_LAZY = {
    "TrainConfig": "llmclf.training.config",
    "Trainer": "llmclf.training.trainer",
    "Run": "llmclf.training.trainer",
    "Classifier": "llmclf.inference",
    "Prediction": "llmclf.inference",
    "download": "llmclf.downloads",
    "reproduce": "llmclf.reproduction",
    "ReproduceReport": "llmclf.reproduction",
    "sweep": "llmclf.sweeps",
}

__all__ = [
    "Classifier",
    "LlmclfError",
    "Prediction",
    "ReproduceReport",
    "Run",
    "TrainConfig",
    "Trainer",
    "__version__",
    "backbones",
    "balancers",
    "datasets",
    "download",
    "long_texts",
    "padding",
    "reproduce",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmclf' has no attribute {name!r}")
