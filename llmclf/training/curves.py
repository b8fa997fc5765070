"""``curves.png``: loss and accuracy against examples seen, as the book plots them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..assets import atomic_path


def plot_curves(history: list[dict[str, Any]], path: Path) -> str | None:
    """Draw the curves into ``path``; return a note instead when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the user's backend stays as it is
    except ImportError:
        return "curves.png skipped: install matplotlib (pip install 'llmclf[plot]')"
    if not history:
        return None
    steps = [row for row in history if row["kind"] == "step"] or history
    epochs = [row for row in history if row["kind"] == "epoch"]
    fig = Figure(figsize=(10, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    seen = [row["examples_seen"] for row in steps]
    ax_loss.plot(seen, [row["train_loss"] for row in steps], label="train")
    ax_loss.plot(seen, [row["val_loss"] for row in steps], linestyle="-.", label="validation")
    ax_loss.set(xlabel="examples seen", ylabel="loss", title="Loss")
    ax_loss.legend()
    seen = [row["examples_seen"] for row in epochs]
    ax_acc.plot(seen, [row["train_accuracy"] for row in epochs], marker="o", label="train")
    ax_acc.plot(seen, [row["val_accuracy"] for row in epochs], marker="o", label="validation")
    ax_acc.set(xlabel="examples seen", ylabel="accuracy", title="Accuracy (end of epoch)")
    ax_acc.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)  # a Figure draws with its own Agg canvas
    return None
