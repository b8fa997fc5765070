"""The data report: what was read, what was dropped and why, and what each split holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .long_texts import LongTextPolicy

MOST = 0.5  # a padding policy that cuts more than this share of training texts is warned about


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
    max_tokens: int  # tokens kept per text: the cap, then the padding policy's (see record_cuts)
    truncated: dict[str, int]  # split -> texts cut to max_tokens
    token_lengths: dict[str, dict[str, float]] = field(default_factory=dict)  # min/mean/max
    class_weights: dict[str, float] | None = None
    tokens_dropped: dict[str, int] = field(default_factory=dict)  # split -> tokens cut off
    padding: str | None = None  # the padding policy that set max_tokens, once it is known
    batch_width: int | None = None  # every batch's width under a fixed-width policy
    cut_warning: str | None = None  # set when the cut takes most training texts
    max_length: int | None = None  # the max_length asked for (max_tokens never exceeds the context)
    split: str = ""  # how the splits were made (fractions, official, predefined)
    html_changed: int | None = None  # texts whose <br /> tags --strip-html replaced (or None)
    long_texts: str = "head"  # which tokens of a text over the cap are kept
    tokenize_seconds: float | None = None  # time to tokenise every text used
    examples: dict[str, int] | None = None  # windowed policies: split -> windows (examples)
    windowed: dict[str, int] | None = None  # windowed policies: split -> texts over the cap

    def record_cuts(
        self,
        max_tokens: int,
        token_counts: Mapping[str, Sequence[int]],
        padding: str | None = None,
        batch_width: int | None = None,
        *,
        long_text: LongTextPolicy | None = None,
    ) -> str | None:
        """Count, per split, the texts and tokens cut by keeping ``max_tokens`` tokens a text.

        ``token_counts`` are each split's token counts before any cut. The Trainer calls this
        again once the padding policy has learned its length, so the report shows the length
        training really used. Returns (and keeps) a warning when most training texts are cut.
        With a windowed ``long_text`` (``windows``) a text over the cap is read in several
        windows of ``max_tokens`` rather than cut: it counts its windows (`examples`) and the
        texts over the cap (`windowed`), and as cut only the tokens a window limit leaves out.
        """
        self.max_tokens = max_tokens
        self.padding = padding
        self.batch_width = batch_width
        if long_text is not None and getattr(long_text, "windowed", False):
            return self._record_windows(max_tokens, token_counts, long_text)
        self.truncated = {s: sum(n > max_tokens for n in c) for s, c in token_counts.items()}
        self.tokens_dropped = {
            s: sum(max(0, n - max_tokens) for n in c) for s, c in token_counts.items()
        }
        train = token_counts.get("train", ())
        cut, total = self.truncated.get("train", 0), sum(train)
        self.cut_warning = None
        if not train or cut <= MOST * len(train):
            return None
        lost = self.tokens_dropped["train"] / max(total, 1)
        by = f"padding {padding}" if padding else "the token cap"
        fixes = ["raise --max-length"]
        if padding and padding != "pad-batch":
            fixes.append("use --padding pad-batch")
        fixes.append("read every token with --long-texts windows")
        warning = (
            f"{by} cuts {cut:,} of {len(train):,} training texts ({cut / len(train):.0%}) to "
            f"{max_tokens:,} tokens, dropping {lost:.0%} of their tokens; "
            f"{', '.join(fixes[:-1])} or {fixes[-1]}"
        )
        self.cut_warning = warning
        return warning

    def _record_windows(
        self, n: int, token_counts: Mapping[str, Sequence[int]], long_text: LongTextPolicy
    ) -> None:
        """`record_cuts` for a windowed policy: windows, texts over the cap, tokens left out."""
        self.cut_warning = None
        self.examples = {s: sum(long_text.count(k, n) for k in c) for s, c in token_counts.items()}
        self.windowed = {s: sum(k > n for k in c) for s, c in token_counts.items()}
        read = {s: [long_text.tokens_read(k, n) for k in c] for s, c in token_counts.items()}
        self.truncated = {
            s: sum(r < k for r, k in zip(read[s], c, strict=True)) for s, c in token_counts.items()
        }
        self.tokens_dropped = {
            s: sum(k - r for r, k in zip(read[s], c, strict=True)) for s, c in token_counts.items()
        }
        return None

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)

    def render(self) -> Any:
        """A rich renderable: a summary table and a per-class table (fields that are not set
        are left out; user strings are shown as they are, never read as markup)."""
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table

        summary = Table(
            title=f"data: {escape(self.dataset)}", title_justify="left", show_header=False
        )
        summary.add_column(style="bold")
        summary.add_column()
        summary.add_row("rows read", f"{self.rows_read:,}")
        for reason, count in self.dropped.items():
            if count:
                summary.add_row(f"dropped: {escape(reason)}", f"{count:,}")
        summary.add_row("rows kept", f"{self.rows_kept:,}")
        scope = "predefined splits" if self.predefined_splits else f"scope {self.balance_scope}"
        summary.add_row("balance", f"{escape(self.balance)} ({scope})")
        if self.html_changed is not None:
            summary.add_row("<br /> replaced", f"in {self.html_changed:,} texts")
        sizes = " / ".join(f"{escape(k)} {v:,}" for k, v in self.split_sizes.items())
        summary.add_row("split", sizes + (f" ({escape(self.split)})" if self.split else ""))
        used = f"{self.max_tokens:,}" + (f" ({escape(self.padding)})" if self.padding else "")
        if self.batch_width is not None:
            used += f", every batch {self.batch_width:,} wide"
        if self.max_length is not None and self.max_length > self.max_tokens:
            used += f" (--max-length {self.max_length:,} asked)"
        used += f"; long texts: {escape(self.long_texts)}"
        if self.examples is not None:  # a windowed policy reads every token, a window at a time
            every = "all" if not any(self.tokens_dropped.values()) else "all but those dropped"
            summary.add_row("tokens used per text", f"{every}, in windows of {used}")
        else:
            summary.add_row("tokens used per text", f"at most {used}")
        if self.tokenize_seconds is not None:
            summary.add_row("tokenised in", f"{self.tokenize_seconds:.2f} s")
        for split, windows in (self.examples or {}).items():
            over = (self.windowed or {}).get(split, 0)
            summary.add_row(
                f"windows: {split}",
                f"{self.split_sizes.get(split, 0):,} texts -> {windows:,} windows "
                f"({over:,} texts over the cap)",
            )
        for split, count in self.truncated.items():
            dropped = self.tokens_dropped.get(split, 0)
            summary.add_row(f"cut: {split}", f"{count:,} texts, {dropped:,} tokens")
        if self.cut_warning:
            summary.add_row("[bold red]warning[/]", escape(self.cut_warning))
        for split, stats in self.token_lengths.items():
            if stats:
                summary.add_row(
                    f"tokens: {split}",
                    f"min {stats['min']:.0f}, mean {stats['mean']:.1f}, max {stats['max']:.0f}",
                )
        return Group(summary, self._classes_table())

    def _classes_table(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        classes = Table(title="classes", title_justify="left")
        classes.add_column("label", style="bold")
        classes.add_column("cleaned", justify="right")
        classes.add_column("balanced", justify="right")
        for split in self.split_class_counts:
            classes.add_column(escape(split), justify="right")
        if self.class_weights:
            classes.add_column("weight", justify="right")
        for name in self.labels:
            row = [escape(name), f"{self.class_counts.get(name, 0):,}"]
            row.append(f"{self.balanced_counts.get(name, 0):,}")
            row += [f"{counts.get(name, 0):,}" for counts in self.split_class_counts.values()]
            if self.class_weights:
                row.append(f"{self.class_weights.get(name, 0.0):.3f}")
            classes.add_row(*row)
        return classes
