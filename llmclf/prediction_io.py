"""Streaming predictions to table / json / jsonl / csv, one output row per input row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO

from .inference import Classifier, Prediction

FORMATS = ("table", "json", "jsonl", "csv")


class PredictionWriter:
    """Writes predictions as they come; `close` finishes the document."""

    def __init__(self, out: IO[str], fmt: str, labels: tuple[str, ...]) -> None:
        self.out, self.fmt, self.labels = out, fmt, labels
        self.rows = 0
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if self._csv:
            self._csv.writerow(["text", "label", "score", *[f"p_{name}" for name in labels]])
        if fmt == "json":
            out.write("[")

    def write(self, text: str, prediction: Prediction) -> None:
        record = {"text": text, **prediction.to_dict()}
        if self.fmt == "jsonl":
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.fmt == "json":
            self.out.write(
                ("," if self.rows else "") + "\n  " + json.dumps(record, ensure_ascii=False)
            )
        elif self._csv:
            probs = [f"{prediction.probabilities[name]:.6f}" for name in self.labels]
            self._csv.writerow([text, prediction.label, f"{prediction.score:.6f}", *probs])
        else:  # table: one aligned line per text
            shown = text.replace("\n", " ")
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            self.out.write(f"{prediction.label:<12} {prediction.score:6.3f}  {shown}\n")
        self.rows += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.rows else "]\n")
        self.out.flush()


def predict_chunks(
    classifier: Classifier,
    chunks: Iterable[list[str]],
    writer: PredictionWriter,
    batch_size: int,
) -> int:
    """Predict chunk by chunk (memory stays flat); return the number of input rows read."""
    read = 0
    for texts in chunks:
        read += len(texts)
        for text, prediction in zip(texts, classifier.predict(texts, batch_size), strict=True):
            writer.write(text, prediction)
    writer.close()
    return read
