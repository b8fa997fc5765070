"""Progress reporting: the Trainer emits named events; reporters decide how to show them.

Events (with their keyword payloads):

- ``data(report)``: the data report, a dict.
- ``message(text)``: a one-line note (e.g. why the frozen-trunk cache is off).
- ``model(trainable, total, policy, cache)``: parameter counts.
- ``epoch_start(epoch, epochs, steps)`` / ``step(epoch, step, loss)``.
- ``evaluation(row)``: one history row (step, examples seen, losses, accuracies).
- ``epoch_end(epoch, train_loss, val_loss, val_accuracy, saved)``.
- ``done(output_dir, metrics)``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


class Reporter:
    """Base reporter: ignores every event. Subclasses override `event`."""

    def event(self, name: str, **data: Any) -> None:
        """Receive one event."""

    def close(self) -> None:
        """Release what the reporter holds (files, live displays)."""


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
    """Writes one JSON object per event: ``{"event": name, "time": ISO-8601 UTC, ...payload}``."""

    def __init__(self, target: str | Path | IO[str]) -> None:
        self._owns = isinstance(target, str | Path)
        self._file: IO[str] = open(target, "w", encoding="utf-8") if self._owns else target  # type: ignore[arg-type]  # noqa: SIM115

    def event(self, name: str, **data: Any) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._file.write(json.dumps({"event": name, "time": stamp, **data}, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._owns:
            self._file.close()
