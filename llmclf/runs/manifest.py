"""``llmclf.json``'s schema: a new run's manifest, reading older schemas, the model spec in it.

Schema 2 (current) keeps the model's structure as one `llmclf.models.spec.ModelSpec` under
``"model"``. Schema 1 kept it in ``backbone`` (``class``, ``config``), ``head``, ``pooling`` and
the ``lora`` trainable policy; `upgrade_manifest` converts such a manifest in memory (the file
is never rewritten), so old runs keep loading. A schema newer than this llmclf is refused.

Writing the manifest is `llmclf.runs.rundir.RunDirectory`'s job alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import CheckpointError, ConfigError, UsageError
from ..models.spec import ModelSpec
from ..models.trainable import parse_trainable
from . import checkpoint as ckpt

READABLE_SCHEMAS = (1, ckpt.SCHEMA_VERSION)  # what `upgrade_manifest` accepts


def new_manifest(description: Mapping[str, Any]) -> dict[str, Any]:
    """A new run's manifest: the schema and bookkeeping fields, then ``description``."""
    return {
        "schema_version": ckpt.SCHEMA_VERSION,
        "llmclf_version": __version__,
        "torch_version": torch.__version__,
        "complete": False,
        "epochs_completed": 0,
        **description,
    }


def upgrade_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """``manifest`` in the current schema (2); a schema 1 manifest is converted in memory.

    Schema 1 kept the model's structure in ``backbone`` (``class``, ``config``), ``head``,
    ``pooling`` and the LoRA policy string; schema 2 keeps it in ``model`` (a `ModelSpec`).
    A schema this llmclf does not know is a `CheckpointError`.
    """
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: is not a JSON object; restore the file the run wrote")
    version = manifest.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise CheckpointError(
            f"{path.parent} was written with checkpoint schema {version}; this llmclf reads "
            f"schema {' and '.join(map(str, READABLE_SCHEMAS))}"
        )
    return _upgrade_from_1(manifest, path) if version == 1 else manifest


def _upgrade_from_1(manifest: dict[str, Any], path: Path) -> dict[str, Any]:
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {problem}; restore the file the run wrote")

    for key in ("backbone", "head", "trainable"):
        if key not in manifest:
            raise fail(f"has no {key!r} field")
        if not isinstance(manifest[key], dict):
            raise fail(f"{key!r} must be a JSON object")
    backbone = manifest["backbone"]
    if backbone.get("class") != "GPT2":
        raise CheckpointError(
            f"{path.parent} uses backbone class {backbone.get('class')}; only GPT2 backbones load"
        )
    try:
        adapters = parse_trainable(manifest["trainable"].get("policy")).adapters
    except UsageError:
        raise fail("trainable.policy must be a policy such as last-block") from None
    model = {
        "architecture": "gpt2",
        "config": backbone.get("config"),
        "num_classes": manifest["head"].get("num_classes"),
        "pooling": manifest.get("pooling"),
        "adapters": None if adapters is None else {"r": adapters.r, "alpha": adapters.alpha},
    }
    upgraded = {k: v for k, v in manifest.items() if k not in ("head", "pooling")}
    upgraded.update(schema_version=ckpt.SCHEMA_VERSION, backbone={"name": backbone.get("name")})
    upgraded["model"] = model
    return upgraded


def model_spec(manifest: Mapping[str, Any], path: Path) -> ModelSpec:
    """The `ModelSpec` of a (current-schema) manifest, checked against its architecture."""
    try:
        spec = ModelSpec.from_dict(manifest.get("model"))
        spec.check()
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}; restore the file the run wrote") from None
    return spec
