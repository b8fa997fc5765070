"""llmclf leaves process-wide settings alone: a notebook's plotting backend, the csv module."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from llmclf.data.readers import load_texts
from llmclf.training.curves import plot_curves

HISTORY = [
    {"kind": "step", "examples_seen": 16, "train_loss": 1.0, "val_loss": 1.1},
    {"kind": "step", "examples_seen": 32, "train_loss": 0.7, "val_loss": 0.8},
    {
        "kind": "epoch",
        "examples_seen": 32,
        "train_loss": 0.7,
        "val_loss": 0.8,
        "train_accuracy": 0.6,
        "val_accuracy": 0.5,
    },
]


def test_plotting_curves_keeps_the_users_matplotlib_backend(tmp_path: Path) -> None:
    """curves.py called matplotlib.use("Agg") at import, switching a notebook's backend."""
    matplotlib = pytest.importorskip("matplotlib")
    before = matplotlib.get_backend()
    try:
        matplotlib.use("svg")  # the user's choice: any backend that is not Agg
        assert plot_curves(HISTORY, tmp_path / "curves.png") is None
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # no figure left open in pyplot's registry


def test_a_long_csv_field_is_read_without_changing_the_process_limit(tmp_path: Path) -> None:
    """readers.py raised csv.field_size_limit for the whole process, for good."""
    before = csv.field_size_limit()
    long_text = "x" * (before + 10)
    path = tmp_path / "long.csv"
    path.write_text(f"text\nshort\n{long_text}\nlast\n")
    chunks = load_texts(path, chunksize=1)
    assert next(chunks) == ["short"]
    assert csv.field_size_limit() == before  # not while the reader waits between rows either
    assert [text for chunk in chunks for text in chunk] == [long_text, "last"]
    assert csv.field_size_limit() == before
    with pytest.raises(csv.Error, match="field larger than field limit"):  # others keep it
        list(csv.reader([f"{long_text}\n"]))
