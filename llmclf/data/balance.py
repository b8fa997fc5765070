"""Balancers: make the classes count equally, by sampling rows or by weighting the loss.

A balancer is any callable ``balancer(frame, *, seed) -> Balanced`` registered in
``llmclf.balancers``. ``frame`` has columns ``text`` and ``label`` (label ids); the result keeps
the frame's index (the row ids), so a run can record exactly which rows it trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..registry import balancers

if TYPE_CHECKING:  # pandas is imported on use, so `llmclf list` stays fast
    import pandas as pd


@dataclass
class Balanced:
    """The balanced rows, and per-label-id loss weights when the balancer weights instead."""

    frame: pd.DataFrame
    class_weights: list[float] | None = None


class Balancer(Protocol):
    """What a balancer is: a callable registered in ``llmclf.balancers``.

    It takes the rows to balance (columns ``text`` and ``label``, label ids; the index is the
    row ids) and the run's seed, and returns a `Balanced`: rows of its input with their index
    kept (repeats allowed, for oversampling), and optionally one loss weight per label id. A
    plain function with this signature is a balancer; so is an object with this ``__call__``.
    """

    def __call__(self, frame: pd.DataFrame, *, seed: int) -> Balanced: ...


@balancers.register("none", builtin=True)
def none(frame: pd.DataFrame, *, seed: int) -> Balanced:
    """Keep every row as it is."""
    return Balanced(frame)


@balancers.register("undersample", builtin=True)
def undersample(frame: pd.DataFrame, *, seed: int) -> Balanced:
    """Sample every class down to the smallest (the book's default; seeded)."""
    import pandas as pd

    groups = _by_label(frame)
    smallest = min(len(g) for g in groups)
    return Balanced(
        pd.concat(
            g if len(g) == smallest else g.sample(n=smallest, random_state=seed) for g in groups
        )
    )


@balancers.register("oversample", builtin=True)
def oversample(frame: pd.DataFrame, *, seed: int) -> Balanced:
    """Repeat rows of smaller classes, sampled with replacement, up to the largest (seeded)."""
    import pandas as pd

    groups = _by_label(frame)
    largest = max(len(g) for g in groups)
    parts = []
    for g in groups:
        parts.append(g)
        if len(g) < largest:
            parts.append(g.sample(n=largest - len(g), replace=True, random_state=seed))
    return Balanced(pd.concat(parts))


@balancers.register("class-weight", builtin=True)
def class_weight(frame: pd.DataFrame, *, seed: int) -> Balanced:
    """Keep every row; weight the loss by inverse class frequency (mean weight 1 per row)."""
    counts = frame["label"].value_counts()
    n_labels = int(frame["label"].max()) + 1
    present = len(counts)
    # w_c = n / (k * n_c): every class carries the same total weight, and the weights
    # average 1 over the rows, so the loss keeps its usual scale (sklearn's "balanced").
    weights = [
        len(frame) / (present * int(counts[c])) if c in counts.index else 0.0
        for c in range(n_labels)
    ]
    return Balanced(frame, weights)


def _by_label(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The rows of each label id, in label-id order, each in its original order."""
    return [group for _, group in frame.groupby("label", sort=True)]
