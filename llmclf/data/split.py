"""The stratified, seeded train / validation / test split.

Split sizes follow the book: ``train = int(0.7 * n)``, ``validation = int(0.1 * n)``, test the
rest (1,494 rows -> 1,045 / 149 / 300). Those totals are shared out over the classes in
proportion to their sizes (largest remainder first), with every class in every non-empty split.
The cut points are shared out cumulatively (train, then train + validation), so rounding never
piles up in the last split: every split keeps the class ratio as closely as whole rows allow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from ..options import SPLITS


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Rows per split for ``n`` rows: train and validation round down, test gets the rest.

    With a test fraction of 0 the rest goes to training instead.
    """
    train, validation = int(n * fractions[0]), int(n * fractions[1])
    if fractions[2] == 0:
        return n - validation, validation, 0
    return train, validation, n - train - validation


def stratified_split(
    row_ids: Sequence[int],
    labels: Sequence[int],
    fractions: Sequence[float],
    seed: int,
    names: Sequence[str] | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Split ``row_ids`` into (train, validation, test) row ids, stratified by ``labels``.

    Deterministic for a given input order and seed. Each split comes back in a seeded random
    order. ``names`` (label id -> name) makes error messages readable.
    """
    n = len(row_ids)
    totals = split_sizes(n, fractions)
    members: dict[int, list[int]] = {}
    for row, label in zip(row_ids, labels, strict=True):
        members.setdefault(label, []).append(row)
    classes = sorted(members)
    counts = [len(members[c]) for c in classes]
    # every split with a fraction > 0 needs each class, however few rows there are: a split
    # asked for is never silently empty (an empty validation split makes "best" meaningless)
    needed = [1, int(fractions[1] > 0), int(fractions[2] > 0)]
    _check_feasible(n, totals, classes, counts, needed, names)

    train = _apportion(
        totals[0],
        [fractions[0] * k for k in counts],
        lower=[needed[0]] * len(counts),
        upper=[k - needed[1] - needed[2] for k in counts],
    )
    up_to_validation = _apportion(
        totals[0] + totals[1],
        [(fractions[0] + fractions[1]) * k for k in counts],
        lower=[t + needed[1] for t in train],
        upper=[k - needed[2] for k in counts],
    )
    validation = [u - t for u, t in zip(up_to_validation, train, strict=True)]
    rng = np.random.RandomState(seed)  # RandomState: its streams never change across versions
    out: tuple[list[int], list[int], list[int]] = ([], [], [])
    for c, t, v in zip(classes, train, validation, strict=True):
        ids = [members[c][i] for i in rng.permutation(len(members[c]))]
        out[0].extend(ids[:t])
        out[1].extend(ids[t : t + v])
        out[2].extend(ids[t + v :])
    return tuple([part[i] for i in rng.permutation(len(part))] for part in out)  # type: ignore[return-value]


def _check_feasible(
    n: int,
    totals: tuple[int, int, int],
    classes: list[int],
    counts: list[int],
    needed: list[int],
    names: Sequence[str] | None,
) -> None:
    label = (lambda c: repr(names[c])) if names is not None else repr
    splits = sum(needed)
    for c, k in zip(classes, counts, strict=True):
        if k < splits:
            raise DataError(
                f"class {label(c)} has {k} row(s) but every one of the {splits} splits needs "
                "one; add rows of that class or change the split fractions"
            )
    for name, total, need in zip(SPLITS, totals, needed, strict=True):
        if need and total < len(classes):
            raise DataError(
                f"the {name} split gets {total} of {n} rows, fewer than the {len(classes)} "
                f"classes; add rows, or give {name} a larger fraction (or 0: no {name} split)"
            )


def _apportion(total: int, ideal: list[float], lower: list[int], upper: list[int]) -> list[int]:
    """Integers near ``ideal`` within [lower, upper] that sum to ``total`` (largest remainder)."""
    alloc = [min(max(math.floor(x), lo), hi) for x, lo, hi in zip(ideal, lower, upper, strict=True)]
    while sum(alloc) < total:
        open_ = [i for i in range(len(alloc)) if alloc[i] < upper[i]]
        i = max(open_, key=lambda j: (ideal[j] - alloc[j], -j))
        alloc[i] += 1
    while sum(alloc) > total:
        open_ = [i for i in range(len(alloc)) if alloc[i] > lower[i]]
        i = max(open_, key=lambda j: (alloc[j] - ideal[j], j))
        alloc[i] -= 1
    return alloc
