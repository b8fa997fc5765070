"""Classification metrics from labels and probabilities (no scikit-learn at run time)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(
    labels: Sequence[int],
    probabilities: np.ndarray,
    label_names: Sequence[str],
    loss: float | None = None,
) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / F1, macro F1, confusion matrix, and ROC AUC.

    Args:
        labels: true label ids, shape (N,).
        probabilities: predicted class probabilities, shape (N, K).
        label_names: K names; per-class entries and the confusion matrix follow this order.
        loss: mean cross-entropy, reported as is when given.

    ROC AUC is computed for two classes only (score = probability of class 1); it is ``None``
    when one class is absent from ``labels``.
    """
    y = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    k = len(label_names)
    pred = probs.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)

    per_class: dict[str, dict[str, float | int]] = {}
    for i, name in enumerate(label_names):
        tp = int(confusion[i, i])
        predicted = int(confusion[:, i].sum())
        actual = int(confusion[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}

    metrics: dict[str, Any] = {
        "n": len(y),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])) if k else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "labels": list(label_names),
    }
    if loss is not None:
        metrics["loss"] = float(loss)
    if k == 2:
        metrics["roc_auc"] = roc_auc(y, probs[:, 1]) if len(y) else None
    return metrics


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) statistic, ties averaged."""
    labels = np.asarray(labels)
    positives = int((labels == 1).sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1  # 1-based average rank
        start = end + 1
    return ranks
