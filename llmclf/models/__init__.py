"""GPT-2 written from scratch, its weights, the classification head, trainable-layer policies.

The names below import torch on first use, so importing this package (as the backbone
registry does) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GPT2": "llmclf.models.gpt2",
    "GPT2Config": "llmclf.models.gpt2",
    "GPT2Builder": "llmclf.models.backbones",
    "build_gpt2": "llmclf.models.backbones",
    "load_hf_weights": "llmclf.models.weights",
    "resolve_pretrained": "llmclf.models.weights",
    "POOLINGS": "llmclf.models.classifier",
    "SequenceClassifier": "llmclf.models.classifier",
    "pool": "llmclf.models.classifier",
    "TrainableReport": "llmclf.models.trainable",
    "apply_trainable": "llmclf.models.trainable",
    "parse_trainable": "llmclf.models.trainable",
    "merge_lora": "llmclf.models.lora",
    "ModelSpec": "llmclf.models.spec",
    "Adapters": "llmclf.models.spec",
    "build_classifier": "llmclf.models.spec",
    "backbone_entry": "llmclf.models.spec",
    "freeze": "llmclf.models.trainable",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmclf.models' has no attribute {name!r}")
