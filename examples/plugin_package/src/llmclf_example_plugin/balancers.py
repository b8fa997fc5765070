"""The ``undersample-2x`` balancer: a gentler undersampling than the book's."""

from __future__ import annotations

import pandas as pd

from llmclf.data.balance import Balanced


def undersample_2x(frame: pd.DataFrame, *, seed: int) -> Balanced:
    """Sample every class down to at most twice the smallest (seeded); keeps more data.

    A balancer receives the rows as a frame with columns ``text`` and ``label`` (label ids) and
    returns :class:`~llmclf.data.balance.Balanced`. It must keep the frame's index: those are
    the row ids a run records. It never repeats a row, so it works before the split
    (``--balance-scope all``) as well as on the training split only.
    """
    cap = 2 * int(frame["label"].value_counts().min())
    parts = [
        group if len(group) <= cap else group.sample(n=cap, random_state=seed)
        for _, group in frame.groupby("label", sort=True)
    ]
    return Balanced(pd.concat(parts))
