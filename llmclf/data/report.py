"""The data report: what was read, what was dropped and why, and what each split holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DataReport:
    """Every count the pipeline produces, so no row is ever lost silently.

    ``to_dict()`` is what a run saves; ``render()`` is what the CLI prints.
    """

    dataset: str
    rows_read: int
    dropped: dict[str, int]  # reason -> rows
    rows_kept: int
    labels: list[str]  # id order
    class_counts: dict[str, int]  # after cleaning, before balancing
    balance: str
    balance_scope: str  # "all" (balance, then split) | "train" (balance the training split)
    balanced_counts: dict[str, int]  # what the balancer returned: the whole set, or train only
    predefined_splits: bool  # the dataset came with its own train / validation / test
    split_sizes: dict[str, int]
    split_class_counts: dict[str, dict[str, int]]
    max_tokens: int  # texts longer than this many tokens were truncated to it
    truncated: dict[str, int]  # split -> texts truncated
    token_lengths: dict[str, dict[str, float]] = field(default_factory=dict)  # min/mean/max
    class_weights: dict[str, float] | None = None

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)

    def render(self) -> Any:
        """A rich renderable: a summary table and a per-class table."""
        from rich.console import Group
        from rich.table import Table

        summary = Table(title=f"data: {self.dataset}", title_justify="left", show_header=False)
        summary.add_column(style="bold")
        summary.add_column()
        summary.add_row("rows read", f"{self.rows_read:,}")
        for reason, count in self.dropped.items():
            if count:
                summary.add_row(f"dropped: {reason}", f"{count:,}")
        summary.add_row("rows kept", f"{self.rows_kept:,}")
        scope = "predefined splits" if self.predefined_splits else f"scope {self.balance_scope}"
        summary.add_row("balance", f"{self.balance} ({scope})")
        summary.add_row("split", " / ".join(f"{k} {v:,}" for k, v in self.split_sizes.items()))
        total_truncated = sum(self.truncated.values())
        summary.add_row("truncated", f"{total_truncated:,} texts to {self.max_tokens:,} tokens")
        for split, stats in self.token_lengths.items():
            if stats:
                summary.add_row(
                    f"tokens: {split}",
                    f"min {stats['min']:.0f}, mean {stats['mean']:.1f}, max {stats['max']:.0f}",
                )

        classes = Table(title="classes", title_justify="left")
        classes.add_column("label", style="bold")
        classes.add_column("cleaned", justify="right")
        classes.add_column("balanced", justify="right")
        for split in self.split_class_counts:
            classes.add_column(split, justify="right")
        if self.class_weights:
            classes.add_column("weight", justify="right")
        for name in self.labels:
            row = [name, f"{self.class_counts.get(name, 0):,}"]
            row.append(f"{self.balanced_counts.get(name, 0):,}")
            row += [f"{counts.get(name, 0):,}" for counts in self.split_class_counts.values()]
            if self.class_weights:
                row.append(f"{self.class_weights.get(name, 0.0):.3f}")
            classes.add_row(*row)
        return Group(summary, classes)
