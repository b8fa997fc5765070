"""Score a saved run on its own test split (the exact rows it was tested on) or a whole dataset.

The rows are read and encoded as in training, and scored by `llmclf.scoring.score`, the function
that wrote the run's ``metrics.json``: on the same split the two agree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .data.pipeline import Split, load_all, load_split
from .errors import CheckpointError, ConfigError, UsageError
from .inference import Classifier
from .options import SPLITS
from .reporting import Phase, Reporter
from .scoring import model_logits, score
from .training.config import TrainConfig


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
    precision: str = "fp32",
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Metrics of the model in ``run_dir``.

    Without ``dataset``: the rows of ``split`` (default ``test``) the run saved, the same rows
    it was scored on at the end of training. With ``dataset`` (a registry name or a file):
    every row of it; ``text_column``, ``label_column`` and ``encoding`` describe that file
    (they default to the run's own). ``precision`` is the autocast precision, as for
    `Classifier.load` (a run trained in bf16 reproduces its own metrics with ``"bf16"``).
    ``reporter`` receives the ``load model``, ``data`` and
    ``evaluate`` phases (see `llmclf.reporting`).

    Raises `ConfigError` / `UsageError` for a bad argument (one line naming it).
    """
    _check_arguments(dataset, text_column, label_column, encoding, batch_size)
    if dataset is not None and split is not None:
        raise UsageError(
            "--split picks one of the run's saved splits; --dataset scores a whole "
            "dataset; pass one of them"
        )
    split = split or "test"
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    with Phase(reporter, "load model"):
        classifier = Classifier.load(run_dir, device=device, precision=precision)
    changes = {"text_column": text_column, "label_column": label_column, "encoding": encoding}
    changes["dataset"] = None if dataset is None else os.fspath(dataset)
    rows, scope = _rows(classifier, run_dir, split, changes, reporter)
    # a run saved when llmclf allowed batch-dependent padding is scored one text at a time,
    # as `Classifier` predicts it
    size = 1 if classifier.one_at_a_time else batch_size
    policy = classifier.policy
    rows = rows.examples(policy.long_text, policy.keep())  # windows: as training made them
    with Phase(reporter, "evaluate", total=rows.num_examples) as phase:
        metrics = score(
            model_logits(classifier.model, classifier.device, classifier.amp_dtype),
            rows.token_ids,
            rows.example_labels,
            policy,
            label_names=classifier.labels,
            batch_size=size,
            progress=phase.advance,
            owners=rows.owners,  # windows are scored per text
        )
    metrics["scope"] = scope
    return metrics


def _rows(
    classifier: Classifier,
    run_dir: str | Path,
    split: str,
    changes: dict[str, str | None],
    reporter: Reporter | None,
) -> tuple[Split, str]:
    """The rows to score, encoded as the run encodes them, and what they are: the saved
    ``split`` of the run's dataset, or every row of ``changes["dataset"]``."""
    manifest = classifier.manifest
    if not isinstance(manifest.get("config"), dict) or not isinstance(manifest.get("data"), dict):
        raise CheckpointError(
            f"{run_dir}/llmclf.json has no 'config' or 'data' field, so the run's data cannot "
            "be rebuilt; restore the file the run wrote, or pass --dataset"
        )
    config = TrainConfig.from_dict(manifest["config"])
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    spec, dataset = config.data, changes["dataset"]
    context = classifier.model.backbone.config.context_length
    labels = _label_map(classifier.labels)
    if dataset is not None:
        with Phase(reporter, "data"):
            return load_all(spec, labels, classifier.tokenizer, context), f"all of {dataset}"
    row_ids = manifest["data"]["split"][split]
    if not row_ids:
        others = [name for name in SPLITS if manifest["data"]["split"][name]]
        raise UsageError(
            f"the run's {split} split is empty (split {config.split}); "
            f"score another: --split {others[-1] if others else 'train'}, or pass --dataset"
        )
    fingerprint = manifest["data"]["fingerprint"]
    with Phase(reporter, "data"):
        rows = load_split(spec, labels, row_ids, classifier.tokenizer, context, fingerprint)
    return rows, f"{split} split of {config.dataset}"


def _check_arguments(
    dataset: object, text_column: object, label_column: object, encoding: object, batch_size: object
) -> None:
    if dataset is not None and not isinstance(dataset, str | os.PathLike):
        raise ConfigError(f"dataset: must be a dataset name or a file path, got {dataset!r}")
    for name, value in (
        ("text_column", text_column),
        ("label_column", label_column),
        ("encoding", encoding),
    ):
        if value is not None and not (isinstance(value, str) and value):
            raise ConfigError(f"{name}: must be a non-empty string or None, got {value!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: must be an integer >= 1, got {batch_size!r}")


def _label_map(names: tuple[str, ...]):
    from .data.labels import LabelMap

    return LabelMap(tuple(names))
