"""`DataSpec`: what data a run trains on and how it is prepared and batched.

It is the ``data`` part of `llmclf.training.config.TrainConfig` (``config.data``), and what
`prepare_data` takes. Each field is also a ``llmclf fit`` option; its help is declared here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ConfigError
from ..options import (
    BALANCE_SCOPES,
    check_choice,
    check_encoding,
    check_fields,
    check_split,
    option,
)


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """What data to train on and how to prepare it. Plain values only, so it saves as JSON.

    Each field's meaning is its ``help``, which ``llmclf fit --help`` and the CLI reference
    show.
    """

    dataset: str = option(
        "sms",
        "Registered dataset name, or a csv/tsv/jsonl/json/parquet file.",
        metavar="NAME|FILE",
    )
    text_column: str = option("text", "Text column of a file dataset.", metavar="COLUMN")
    label_column: str = option("label", "Label column of a file dataset.", metavar="COLUMN")
    encoding: str = option("utf-8", "Encoding of a file dataset.", metavar="CODEC")
    balance: str = option(
        "undersample",
        "Balancer: none, undersample, oversample, class-weight, or a plugin's.",
        metavar="NAME",
    )
    balance_scope: str = option(
        "all",
        "Balance the whole set before splitting (all, the book's) or the training split only.",
        choices=BALANCE_SCOPES,
    )
    split: tuple[float, float, float] | str = option(
        (0.7, 0.1, 0.2),
        "Train/validation/test fractions, or official: the dataset's own train/test partition "
        "(its split column) with a seeded, stratified 10% of train for validation.",
        metavar="TRAIN,VAL,TEST|official",
    )
    dedupe: bool = option(False, "Drop duplicate texts before splitting.")
    strip_html: bool = option(
        False,
        "Replace HTML line breaks (<br />, as in IMDb reviews) with a newline, in training and "
        "at prediction.",
    )
    padding: str = option(
        "pad-batch",
        "Padding policy: pad-batch (per batch), pad-dataset (to the longest training text, "
        "the book's), truncate-dataset (cut and pad to --max-length), or a plugin's; fit "
        "refuses one that would make a prediction depend on its batch.",
        metavar="NAME",
    )
    max_length: int | None = option(
        None,
        "Cap on tokens per text (never above the context length).",
        default_text="the context length",
    )
    long_texts: str = option(
        "head",
        "Which tokens of a text longer than the cap are kept: head, tail, head+tail[:K] (first "
        "K, default a quarter of the cap, and the last ones), windows[:S][,agg=max]"
        "[,max_windows=M] (every token, in windows of the cap S tokens apart, default half "
        "the cap; one prediction a text from the windows' mean or max), or a plugin's.",
        metavar="POLICY",
    )
    bucket: bool = option(False, "Length-bucketed training batches (pad-batch only).")
    seed: int = option(123, "Random seed of the split, the shuffling and the head.")

    def __post_init__(self) -> None:
        if isinstance(self.dataset, os.PathLike):  # paths may come as pathlib.Path
            object.__setattr__(self, "dataset", os.fspath(self.dataset))
        check_fields(self)
        object.__setattr__(self, "split", check_split(self.split))
        for name in ("dataset", "text_column", "label_column", "balance", "padding", "long_texts"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name}: must be a non-empty string")
        if self.text_column == self.label_column:
            raise ConfigError(
                f"text_column and label_column are both {self.text_column!r}; name two columns"
            )
        check_encoding(self.encoding)
        check_choice("balance_scope", self.balance_scope, BALANCE_SCOPES)
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed: must be in 0..2**32-1, got {self.seed}")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"max_length: must be an integer >= 1 or null, got {self.max_length}")
