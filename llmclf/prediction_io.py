"""Streaming predictions to table / json / jsonl / csv, one output row per input row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO

from .inference import Classifier, Prediction
from .reporting import Phase, Reporter

FORMATS = ("table", "json", "jsonl", "csv")


class PredictionWriter:
    """Writes predictions as they come; `close` finishes the document."""

    def __init__(self, out: IO[str], fmt: str, labels: tuple[str, ...]) -> None:
        self.out, self.fmt, self.labels = out, fmt, labels
        self.rows = 0
        self.truncated = 0  # texts longer than the model reads, cut to their first tokens
        self.tokens_dropped = 0  # tokens those cuts left out, all texts together
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if self._csv:
            probs = [f"p_{name}" for name in labels]
            self._csv.writerow(["text", "label", "score", *probs, "tokens_used", "tokens_dropped"])
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
            self._csv.writerow(
                [
                    text,
                    prediction.label,
                    f"{prediction.score:.6f}",
                    *probs,
                    prediction.tokens_used,
                    prediction.tokens_dropped,
                ]
            )
        else:  # table: one aligned line per text
            shown = text.replace("\n", " ")
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            self.out.write(f"{prediction.label:<12} {prediction.score:6.3f}  {shown}\n")
        self.rows += 1
        self.truncated += prediction.truncated
        self.tokens_dropped += prediction.tokens_dropped

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.rows else "]\n")
        self.out.flush()


def predict_chunks(
    classifier: Classifier,
    chunks: Iterable[list[str]],
    writer: PredictionWriter,
    batch_size: int,
    *,
    reporter: Reporter | None = None,
    total: int | None = None,
) -> int:
    """Predict chunk by chunk (memory stays flat); return the number of input rows read.

    Emits a ``predict`` phase to ``reporter``: ``total`` texts (``None``: not known before the
    input is read), progress after every batch.
    """
    read = 0
    with Phase(reporter, "predict", total=total) as phase:
        for texts in chunks:
            read += len(texts)
            predictions = classifier.predict(texts, batch_size, progress=phase.advance)
            for text, prediction in zip(texts, predictions, strict=True):
                writer.write(text, prediction)
            writer.out.flush()  # each chunk's predictions appear as soon as they are made
    writer.close()
    return read


def cut_summary(
    truncated: int,
    max_tokens: int,
    tokens_dropped: int | None = None,
    *,
    long_texts: str = "head",
) -> str:
    """How many texts were cut to the model's ``max_tokens`` (and how many tokens that left
    out), for predict's closing line; ``long_texts`` is the run's long-text policy (under
    ``windows`` a text is cut only by its window limit)."""
    windows = long_texts.split(":")[0] == "windows"
    if not truncated:
        if windows:
            return f"no text was cut (the model reads every token, in windows of {max_tokens:,})"
        return f"no text was cut (the model reads up to {max_tokens:,} tokens)"
    texts = "1 text was" if truncated == 1 else f"{truncated:,} texts were"
    if windows:
        summary = f"{texts} cut to their first windows by {long_texts}"
    else:
        which = "first" if long_texts == "head" else f"{long_texts}'s"
        summary = f"{texts} cut to the {which} {max_tokens:,} tokens"
    if tokens_dropped is not None:
        summary += f", leaving out {plural(tokens_dropped, 'token')}"
    return summary


def plural(count: int, noun: str) -> str:
    """``1 row``, ``2 rows``, ``1,000 rows``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
