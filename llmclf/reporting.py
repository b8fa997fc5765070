"""Progress reporting: the Trainer emits named events; reporters decide how to show them.

Events (with their keyword payloads):

- ``config(config, output_dir)``: the run's whole config (`TrainConfig.to_dict`) and the
  directory it will be saved in, first.
- ``data(report)``: the data report, a dict.
- ``message(text)``: a one-line note (e.g. why the frozen-trunk cache is off).
- ``model(trainable, total, policy, cache)``: parameter counts.
- ``epoch_start(epoch, epochs, steps)`` / ``step(epoch, step, loss)``.
- ``evaluation(row)``: one history row (step, examples seen, losses, accuracies).
- ``epoch_end(epoch, train_loss, val_loss, val_accuracy, saved, seconds)``: ``seconds`` is the
  epoch's wall time, from ``epoch_start`` to this event (steps, evaluations and saving).
- ``done(output_dir, metrics)``.

Slow phases (`fit`, `predict`, `evaluate` all emit them; see `Phase`):

- ``phase_start(phase, total)``: a phase begins; ``total`` is how many units (texts, batches)
  it will process, or ``None`` when that is not known in advance (a streamed file).
- ``phase_progress(phase, completed)``: units done so far (after each batch or chunk).
- ``phase_end(phase, seconds)``: the phase is over (also when it failed), after ``seconds``.

The phases are ``data`` (read, clean, balance, split, tokenise), ``backbone`` (build the
backbone, read its weights), ``trunk cache`` (texts through the frozen blocks),
``final evaluation`` (batches of every split, scored with the saved model), ``load model`` (a
run, for predict and evaluate) and ``predict`` / ``evaluate`` (texts scored).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any


class Reporter:
    """Base reporter: ignores every event. Subclasses override `event`."""

    def event(self, name: str, **data: Any) -> None:
        """Receive one event."""

    def close(self) -> None:
        """Release what the reporter holds (files, live displays)."""


class Phase:
    """A timed phase: ``phase_start`` on entry, ``phase_progress`` on `advance`, ``phase_end``.

    ``with Phase(reporter, "trunk cache", total=len(texts)) as phase: ... phase.advance(32)``.
    """

    def __init__(self, reporter: Reporter | None, name: str, total: int | None = None) -> None:
        self.reporter = reporter or Reporter()
        self.name, self.total = name, total
        self.completed = 0
        self._started = 0.0

    def __enter__(self) -> Phase:
        self.reporter.event("phase_start", phase=self.name, total=self.total)
        self._started = time.perf_counter()
        return self

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more units done."""
        self.completed += count
        self.reporter.event("phase_progress", phase=self.name, completed=self.completed)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        seconds = round(time.perf_counter() - self._started, 3)
        self.reporter.event("phase_end", phase=self.name, seconds=seconds)


class MultiReporter(Reporter):
    """Forwards every event to several reporters."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def event(self, name: str, **data: Any) -> None:
        for reporter in self.reporters:
            reporter.event(name, **data)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()


class JsonLinesReporter(Reporter):
    """Writes one JSON object per event: ``{"event": name, "time": ISO-8601 UTC, ...payload}``.

    A path ``target`` is created with any missing parent folders, and replaced when it exists.
    """

    def __init__(self, target: str | Path | IO[str]) -> None:
        self._owns = isinstance(target, str | Path)
        if self._owns:
            Path(target).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        self._file: IO[str] = open(target, "w", encoding="utf-8") if self._owns else target  # type: ignore[arg-type]  # noqa: SIM115

    def event(self, name: str, **data: Any) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._file.write(json.dumps({"event": name, "time": stamp, **data}, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._owns:
            self._file.close()
