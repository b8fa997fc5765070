"""Our metrics agree with scikit-learn's on random labels and scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from llmclf.metrics import classification_metrics


@pytest.mark.parametrize("num_classes", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(num_classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    labels = rng.integers(0, num_classes, size=n)
    logits = rng.normal(size=(n, num_classes)) + np.eye(num_classes)[labels] * 0.8
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if seed == 2:  # ties in the scores
        probs = np.round(probs, 1)
        probs[:, -1] = 1 - probs[:, :-1].sum(axis=1)
    names = [f"c{i}" for i in range(num_classes)]
    got = classification_metrics(labels, probs, names)
    pred = probs.argmax(axis=1)

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert got["macro_f1"] == pytest.approx(
        skm.f1_score(labels, pred, average="macro", zero_division=0)
    )
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, pred, labels=list(range(num_classes)), zero_division=0
    )
    for i, name in enumerate(names):
        assert got["per_class"][name]["precision"] == pytest.approx(p[i])
        assert got["per_class"][name]["recall"] == pytest.approx(r[i])
        assert got["per_class"][name]["f1"] == pytest.approx(f[i])
        assert got["per_class"][name]["support"] == s[i]
    assert (
        got["confusion_matrix"]
        == skm.confusion_matrix(labels, pred, labels=list(range(num_classes))).tolist()
    )
    if num_classes == 2:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs[:, 1]))
    else:
        assert "roc_auc" not in got


def test_roc_auc_is_none_when_one_class_is_missing() -> None:
    got = classification_metrics([1, 1, 1], np.array([[0.2, 0.8]] * 3), ["ham", "spam"])
    assert got["roc_auc"] is None
    assert got["accuracy"] == 1.0
