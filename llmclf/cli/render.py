"""Rich rendering of training events and metrics (display only; no logic)."""

from __future__ import annotations

import io
from dataclasses import fields
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..reporting import Reporter


class RichReporter(Reporter):
    """Progress bar per epoch and per slow phase, the data report, a line per epoch, a final
    metrics table. Bars are drawn only on a terminal (``console.is_terminal``)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or stderr_console()
        self._said: set[str] = set()  # messages printed, so the data report does not repeat them
        self.progress: Progress | None = None
        self.task: Any = None
        self.phases: Progress | None = None  # one live display for every phase in flight
        self.phase_tasks: dict[str, Any] = {}

    def event(self, name: str, **data: Any) -> None:
        handler = getattr(self, f"_on_{name}", None)
        if handler:
            handler(**data)

    def _on_data(self, report: dict[str, Any]) -> None:
        from ..data.report import DataReport

        known = {f.name for f in fields(DataReport)}
        try:
            data = DataReport(**{k: report[k] for k in known & report.keys()})
        except TypeError:  # not a whole report (a plugin's trainer): its set fields, flat
            data, known = None, set()
        if data is not None:
            if f"warning: {data.cut_warning}" in self._said:  # already shown, before the table
                data.cut_warning = None
            self.console.print(data.render())
        for key, value in report.items():  # e.g. the cache note, unless already a message
            if key not in known and value is not None and _flat(value) not in self._said:
                self.console.print(f"{escape(str(key))}: {escape(_flat(value))}")

    def _on_message(self, text: str) -> None:
        self._said.add(text)
        self.console.print(f"[dim]{escape(text)}[/dim]")

    def _on_model(self, trainable: int, total: int, policy: str, cache: str) -> None:
        self.console.print(f"trainable parameters: {trainable:,} of {total:,} ({escape(policy)})")

    def _on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, loss="-")

    def _on_step(self, epoch: int, step: int, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.3f}")

    def _on_epoch_end(
        self,
        epoch: int,
        train_loss: float,
        val_loss: float,
        val_accuracy: float,
        saved: bool,
        seconds: float = 0.0,
    ) -> None:
        self.close()
        mark = " (saved)" if saved else ""
        self.console.print(
            f"epoch {epoch}: train loss {train_loss:.3f}, validation loss {val_loss:.3f}, "
            f"validation accuracy {val_accuracy:.2%}{mark}"
        )

    def _on_done(self, output_dir: str, metrics: dict[str, Any]) -> None:
        self.console.print(metrics_table(metrics))

    def _on_phase_start(self, phase: str, total: int | None) -> None:
        if not self.console.is_terminal or self.progress is not None:  # one live display at once
            return
        if self.phases is None:
            self.phases = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
                redirect_stdout=False,  # stdout carries results (predictions), never the bar
            )
            self.phases.start()
        self.phase_tasks[phase] = self.phases.add_task(phase, total=total)

    def _on_phase_progress(self, phase: str, completed: int) -> None:
        if self.phases is not None and phase in self.phase_tasks:
            self.phases.update(self.phase_tasks[phase], completed=completed)

    def _on_phase_end(self, phase: str, seconds: float) -> None:
        if self.phases is None or phase not in self.phase_tasks:
            return
        self.phases.remove_task(self.phase_tasks.pop(phase))
        if not self.phase_tasks:
            self.phases.stop()
            self.phases = None

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.phases is not None:
            self.phases.stop()
            self.phases = None
            self.phase_tasks.clear()


def stderr_console() -> Console:
    """The console for stderr. Off a terminal (piped, a log file) lines are never wrapped, so
    a line such as an epoch's stays whole for grep."""
    console = Console(stderr=True)
    if console.is_terminal:
        return console
    return Console(stderr=True, soft_wrap=True, width=max(console.width, UNWRAPPED_WIDTH))


UNWRAPPED_WIDTH = 1000  # off a terminal: the width tables may take before they wrap


class ConsoleStream(io.TextIOBase):
    """A text stream that writes through a rich console, so its lines print above a live
    progress bar on the same terminal instead of through it.

    Lines are held until `flush` (printing each line alone would redraw the bar each time);
    an unfinished last line waits for its newline or `close`.
    """

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        return len(text)

    def flush(self) -> None:
        lines, newline, rest = self._pending.rpartition("\n")
        if newline:
            self.console.out(lines, highlight=False)
            self._pending = rest
        self.console.file.flush()

    def close(self) -> None:
        self.flush()
        if self._pending:
            self.console.out(self._pending, end="", highlight=False)
            self._pending = ""
        super().close()


def metrics_table(metrics: dict[str, dict[str, Any]]) -> Table:
    """Accuracy, macro F1, ROC AUC and loss for each split."""
    table = Table(show_edge=False)
    table.add_column("split")
    for column in ("n", "accuracy", "macro F1", "ROC AUC", "loss"):
        table.add_column(column, justify="right")
    for split, m in metrics.items():
        auc = m.get("roc_auc")
        table.add_row(
            escape(split),
            str(m.get("n", "")),
            f"{m['accuracy']:.2%}",
            f"{m['macro_f1']:.3f}",
            "-" if auc is None else f"{auc:.3f}",
            "-" if m.get("loss") is None else f"{m['loss']:.3f}",
        )
    return table


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_flat(v) for v in value)
    if isinstance(value, float):  # 0.6666666666666666 -> 0.667
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)
