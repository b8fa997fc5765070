"""Score a saved run on its own test split (the exact rows it was tested on) or a whole dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data.pipeline import load_all, load_split
from .errors import UsageError
from .inference import Classifier
from .training.config import TrainConfig
from .training.metrics import classification_metrics
from .training.reporting import Phase, Reporter
from .training.trainer import data_spec

SPLITS = ("train", "validation", "test")


def evaluate_run(
    run_dir: str | Path,
    *,
    dataset: str | None = None,
    split: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    batch_size: int = 32,
    device: str = "auto",
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Metrics of the model in ``run_dir``.

    Without ``dataset``: the rows of ``split`` (default ``test``) the run saved, the same rows
    it was scored on at the end of training. With ``dataset`` (a registry name or a file):
    every row of it; ``text_column``, ``label_column`` and ``encoding`` describe that file
    (they default to the run's own). ``reporter`` receives the ``load model``, ``data`` and
    ``evaluate`` phases (see `llmclf.training.reporting`).
    """
    if dataset is not None and split is not None:
        raise UsageError(
            "--split picks one of the run's saved splits; --dataset scores a whole "
            "dataset; pass one of them"
        )
    split = split or "test"
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    with Phase(reporter, "load model"):
        classifier = Classifier.load(run_dir, device=device)
    manifest = classifier.manifest
    config = TrainConfig.from_dict(manifest["config"])
    changes = {"text_column": text_column, "label_column": label_column, "encoding": encoding}
    if dataset is not None:
        changes["dataset"] = dataset
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    spec = data_spec(config)
    context = classifier.model.backbone.config.context_length
    labels = _label_map(classifier.labels)
    if dataset is None:
        row_ids = manifest["data"]["split"][split]
        if not row_ids:
            others = [name for name in SPLITS if manifest["data"]["split"][name]]
            raise UsageError(
                f"the run's {split} split is empty (split fractions {list(config.split)}); "
                f"score another: --split {others[-1] if others else 'train'}, or pass --dataset"
            )
        fingerprint = manifest["data"]["fingerprint"]
        with Phase(reporter, "data"):
            rows = load_split(spec, labels, row_ids, classifier.tokenizer, context, fingerprint)
        scope = f"{split} split of {config.dataset}"
    else:
        with Phase(reporter, "data"):
            rows = load_all(spec, labels, classifier.tokenizer, context)
        scope = f"all of {dataset}"
    with Phase(reporter, "evaluate", total=len(rows)) as phase:
        probs = classifier.predict_proba(rows.texts, batch_size, progress=phase.advance)
    targets = torch.tensor(rows.labels, dtype=torch.long)
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), targets).item() if len(rows) else None
    metrics = classification_metrics(rows.labels, probs.numpy(), classifier.labels, loss=loss)
    metrics["scope"] = scope
    return metrics


def _label_map(names: tuple[str, ...]):
    from .data.labels import LabelMap

    return LabelMap(tuple(names))
