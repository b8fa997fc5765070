"""The data pipeline: load -> clean -> label map -> balance -> stratified split -> encode.

``prepare_data`` turns a `DataSpec` into three encoded splits, the label map, the
class weights (when the balancer weights the loss) and a `DataReport`. ``load_split``
rebuilds exactly the rows a run used; ``load_all`` reads a whole dataset for evaluation.
"""

from __future__ import annotations

import time
import warnings
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, LlmclfWarning, UsageError
from ..options import OFFICIAL_SPLIT, OFFICIAL_VALIDATION, SPLITS
from ..registry import balancers
from .balance import Balanced
from .clean import Cleaned, clean
from .clean import fingerprint as fingerprint_of
from .labels import LabelMap
from .long_texts import LongTextPolicy, get_long_text_policy, to_examples
from .padding import token_cap
from .readers import load_texts  # public here: predict reads its inputs through it
from .report import DataReport
from .sources import load_source
from .spec import DataSpec  # the data part of a TrainConfig (config.data)
from .split import stratified_split
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DataSpec",
    "PreparedData",
    "Split",
    "load_all",
    "load_split",
    "load_texts",
    "prepare_data",
]


@dataclass
class Split:
    """One encoded split; ``row_ids`` are positions in the cleaned dataset (may repeat when
    oversampling).

    ``texts``, ``labels``, ``row_ids`` and ``token_counts`` hold one entry per text;
    ``token_ids`` one per example the model reads. Until `examples` is called (and always for
    a one-piece long-text policy) that is one per text, cut to the token cap (``owners`` is
    None); a windowed policy's split keeps every token it reads, and `examples` turns it into
    its windows, with ``owners[e]`` the position of example ``e``'s text.
    """

    texts: list[str]
    labels: list[int]  # label ids
    token_ids: list[Sequence[int]]  # per example (see above), each a `compact` array
    row_ids: list[int]
    token_counts: list[int] = field(default_factory=list)  # per text, before any cut
    owners: list[int] | None = None  # example -> its text's position; None: one a text

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_examples(self) -> int:
        """How many examples (windows) the model reads for this split."""
        return len(self.token_ids)

    @property
    def example_labels(self) -> list[int]:
        """Each example's label: its text's."""
        return self.labels if self.owners is None else [self.labels[t] for t in self.owners]

    def examples(self, long_text: LongTextPolicy, n: int) -> Split:
        """This split as the examples ``long_text`` reads with a cap of ``n`` tokens: itself
        for a one-piece policy, every text's windows for a windowed one."""
        if not getattr(long_text, "windowed", False) or self.owners is not None:
            return self
        token_ids, owners = to_examples(self.token_ids, long_text, n)
        return replace(self, token_ids=[compact(ids) for ids in token_ids], owners=owners)


def compact(ids: Sequence[int]) -> array:
    """Token ids as 4-byte integers: a Python list of ints takes 36 bytes a token, which for
    50,000 reviews of 300 tokens is half a gigabyte."""
    return array("i", ids)


@dataclass
class PreparedData:
    """Everything the Trainer needs from the data, and the report of how it was made."""

    train: Split
    validation: Split
    test: Split
    labels: LabelMap
    class_weights: list[float] | None  # per label id; only the class-weight balancer sets it
    report: DataReport
    fingerprint: str  # sha256 of the cleaned rows: detects a changed dataset later

    def split_ids(self) -> dict[str, list[int]]:
        """The row ids of each split, to save with a run."""
        return {name: list(getattr(self, name).row_ids) for name in SPLITS}


TOKENIZE_CHUNK = 2_000  # texts per encode_batch call (tiktoken threads within one call)


def prepare_data(
    spec: DataSpec, tokenizer: Tokenizer, context_length: int, *, reporter: Any = None
) -> PreparedData:
    """Load, clean, map labels, balance, split (stratified, seeded) and encode ``spec``'s data.

    ``reporter`` (a `llmclf.reporting.Reporter`) receives the ``tokenise`` phase
    events (and a dataset's own, such as ``read imdb``).
    """
    import pandas as pd

    cap = _token_cap(spec, context_length)
    if spec.max_length is not None and spec.max_length > context_length:
        message = above_context_message(spec.max_length, context_length)
        warnings.warn(message, LlmclfWarning, stacklevel=2)
    balancer = balancers.get(spec.balance)  # an unknown name fails before any loading
    long_text = get_long_text_policy(spec.long_texts)
    cleaned = _load_clean(spec, reporter)
    frame = cleaned.frame
    labels = LabelMap.from_labels(frame["label"])
    if len(labels) < 2:
        raise DataError(
            f"dataset {spec.dataset!r} has a single class ({labels.names[0]!r}) after cleaning; "
            f"a classifier needs two or more: check the label column ({spec.label_column!r}, "
            "set --label-column)"
        )
    label_ids = [labels.id(name) for name in frame["label"].astype(str).tolist()]
    table = pd.DataFrame({"text": frame["text"], "label": label_ids})

    ids, balanced = _assign_splits(spec, frame, table, labels, balancer)
    texts = frame["text"].tolist()
    started = time.perf_counter()
    encoded = _tokenize(
        texts, sorted({r for name in SPLITS for r in ids[name]}), tokenizer, reporter
    )
    seconds = time.perf_counter() - started
    splits = {
        name: _encode(texts, label_ids, ids[name], encoded, (long_text, cap)) for name in SPLITS
    }
    report = _report(spec, cleaned, labels, label_ids, balanced, splits, cap)
    report.tokenize_seconds = round(seconds, 3)
    return PreparedData(
        train=splits["train"][0],
        validation=splits["validation"][0],
        test=splits["test"][0],
        labels=labels,
        class_weights=balanced.class_weights,
        report=report,
        fingerprint=fingerprint_of(frame),
    )


def _assign_splits(
    spec: DataSpec, frame: Any, table: Any, labels: LabelMap, balancer: Any
) -> tuple[dict[str, list[int]], Any]:
    """The row ids of each split, and the balancer's result: the dataset's official
    partition, its predefined splits, or seeded stratified fractions (balancing the whole set
    first, or only the training split, as ``balance_scope`` says)."""
    if spec.split == OFFICIAL_SPLIT:  # the dataset's train/test; validation cut from train
        ids = _official(spec, frame, table, labels)
        balanced = _balance(balancer, spec, table.loc[ids["train"]], len(labels))
        ids["train"] = _train_order(balanced, ids["train"], spec.seed)
    elif "part" in frame.columns:  # predefined splits: used as given, only train is balanced
        parts = {name: table.index[frame["part"] == name].tolist() for name in SPLITS}
        balanced = _balance(balancer, spec, table.loc[parts["train"]], len(labels))
        ids = {**parts, "train": _train_order(balanced, parts["train"], spec.seed)}
    elif spec.balance_scope == "all":
        balanced = _balance(balancer, spec, table, len(labels))
        if balanced.frame.index.has_duplicates:
            raise UsageError(
                f"balancer {spec.balance!r} repeats rows, and balancing before splitting would "
                "put copies of a row in both training and test; set balance_scope='train' "
                "(--balance-scope train)"
            )
        ids = _split(spec, balanced.frame, labels, before=len(table))
    else:
        ids = _split(spec, table, labels)
        balanced = _balance(balancer, spec, table.loc[ids["train"]], len(labels))
        ids["train"] = _train_order(balanced, ids["train"], spec.seed)
    return ids, balanced


def load_split(
    spec: DataSpec,
    labels: LabelMap,
    row_ids: list[int],
    tokenizer: Tokenizer,
    context_length: int,
    fingerprint: str | None = None,
) -> Split:
    """Rebuild the rows ``row_ids`` of ``spec``'s dataset, loaded and cleaned as in training.

    With ``fingerprint``, a dataset whose cleaned rows changed since training is a
    `DataError` (the same row ids would now name other rows).
    """
    cap = _token_cap(spec, context_length)
    frame = _load_clean(spec).frame
    if fingerprint is not None and (actual := fingerprint_of(frame)) != fingerprint:
        raise DataError(
            f"dataset {spec.dataset!r} changed since training (fingerprint {actual[:12]} was "
            f"{fingerprint[:12]}), so the saved split no longer names the same rows; restore "
            "the original data, or evaluate on the whole new dataset instead"
        )
    bad = [r for r in row_ids if not 0 <= r < len(frame)]
    if bad:
        raise DataError(
            f"row ids {bad[:5]} are out of range for dataset {spec.dataset!r} with "
            f"{len(frame)} rows; the dataset changed since training, restore the original data"
        )
    names = frame["label"].astype(str).tolist()
    _require_known(spec, labels, [names[r] for r in row_ids])
    label_ids = [labels.id(n) if n in labels else -1 for n in names]
    return _encode_rows(spec, frame["text"].tolist(), label_ids, list(row_ids), tokenizer, cap)


def load_all(spec: DataSpec, labels: LabelMap, tokenizer: Tokenizer, context_length: int) -> Split:
    """Every row of ``spec``'s dataset (loaded and cleaned, not balanced or split), labelled
    with the model's label map; a label the model does not know is a `DataError`."""
    cap = _token_cap(spec, context_length)
    frame = _load_clean(spec).frame
    names = frame["label"].astype(str).tolist()
    _require_known(spec, labels, names)
    label_ids = [labels.id(n) for n in names]
    rows = list(range(len(frame)))
    return _encode_rows(spec, frame["text"].tolist(), label_ids, rows, tokenizer, cap)


def above_context_message(max_length: int, context_length: int) -> str:
    """Why a ``max_length`` above the backbone's context is lowered to it."""
    return (
        f"max_length {max_length:,} is above the backbone's context of {context_length:,} "
        f"tokens; texts are cut at {context_length:,}"
    )


# ----- steps -----------------------------------------------------------------------------
def _token_cap(spec: DataSpec, context_length: int) -> int:
    return token_cap(spec.max_length, context_length)  # the padding policies' cap


def _load_clean(spec: DataSpec, reporter: Any = None) -> Cleaned:
    source = load_source(
        spec.dataset, spec.text_column, spec.label_column, spec.encoding, reporter=reporter
    )
    if len(source) == 0:
        raise DataError(f"dataset {spec.dataset!r} has no rows; give it rows of text and label")
    cleaned = clean(source, dedupe=spec.dedupe, strip_html=spec.strip_html)
    if len(cleaned.frame) == 0:
        reasons = ", ".join(f"{n} {r}" for r, n in cleaned.dropped.items() if n)
        raise DataError(
            f"dataset {spec.dataset!r} has no usable rows: all {cleaned.rows_read} were dropped "
            f"({reasons}); check --text-column and --label-column"
        )
    return cleaned


def _balance(balancer: object, spec: DataSpec, frame: pd.DataFrame, n_labels: int) -> Balanced:
    result = balancer(frame, seed=spec.seed)  # type: ignore[operator]
    if not isinstance(result, Balanced):
        raise DataError(
            f"balancer {spec.balance!r} returned a {type(result).__name__}; a balancer must "
            "return llmclf.data.balance.Balanced(frame, class_weights)"
        )
    if "label" not in result.frame.columns or not result.frame.index.isin(frame.index).all():
        raise DataError(
            f"balancer {spec.balance!r} returned rows that are not in its input; return rows "
            "of the input frame, keeping its index (the row ids) and its label column"
        )
    weights = result.class_weights
    if weights is not None and len(weights) != n_labels:
        if len(weights) > n_labels:
            raise DataError(
                f"balancer {spec.balance!r} returned {len(weights)} class weights for "
                f"{n_labels} labels; return one weight per label id"
            )
        result = Balanced(result.frame, [*weights, *[0.0] * (n_labels - len(weights))])
    return result


def _split(
    spec: DataSpec, frame: pd.DataFrame, labels: LabelMap, before: int | None = None
) -> dict[str, list[int]]:
    """Split ``frame``; ``before``: its rows before balancing, named in a too-small error."""
    try:
        parts = stratified_split(
            frame.index.tolist(), frame["label"].tolist(), spec.split, spec.seed, labels.names
        )
    except DataError as exc:
        if before is None or before == len(frame):
            raise
        raise DataError(
            f"{exc} (balance {spec.balance!r} left {len(frame)} of {before} rows; "
            "--balance-scope train balances only the training split)"
        ) from None
    return dict(zip(SPLITS, parts, strict=True))


def _official(
    spec: DataSpec, frame: pd.DataFrame, table: pd.DataFrame, labels: LabelMap
) -> dict[str, list[int]]:
    """The dataset's own train/test rows, and a seeded, stratified validation slice of train
    (`OFFICIAL_VALIDATION` of it)."""
    if "split" not in frame.columns:
        raise UsageError(
            f"dataset {spec.dataset!r} has no official split (no 'split' column of train/test); "
            "pass split fractions instead, e.g. --split 0.7,0.1,0.2"
        )
    parts = frame["split"].astype(str)
    unknown = sorted(set(parts) - {"train", "test"})
    if unknown:
        raise DataError(
            f"dataset {spec.dataset!r} has split values {unknown}; its split column may only "
            "hold train and test"
        )
    train = table.index[parts == "train"].tolist()
    train_labels = table.loc[train, "label"].tolist()
    fractions = (1 - OFFICIAL_VALIDATION, OFFICIAL_VALIDATION, 0.0)
    kept, validation, _ = stratified_split(train, train_labels, fractions, spec.seed, labels.names)
    return {"train": kept, "validation": validation, "test": table.index[parts == "test"].tolist()}


def _train_order(balanced: Balanced, before: list[int], seed: int) -> list[int]:
    """The balanced training rows; when the balancer changed them, in a seeded random order."""
    rows = balanced.frame.index.tolist()
    if rows == before:
        return rows
    return [rows[i] for i in np.random.RandomState(seed).permutation(len(rows))]


def _require_known(spec: DataSpec, labels: LabelMap, names: list[str]) -> None:
    if unknown := labels.unknown(names):
        shown = ", ".join(repr(n) for n in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise DataError(
            f"dataset {spec.dataset!r} has labels the model does not know: {shown} (it knows "
            f"{', '.join(labels.names)}); drop those rows or train a model on them"
        )


def _tokenize(
    texts: list[str], rows: list[int], tokenizer: Tokenizer, reporter: Any = None
) -> dict[int, array]:
    """Row id -> token ids of ``texts[row]`` for each of ``rows``, encoded in batches of
    `TOKENIZE_CHUNK` (tiktoken's threads) with ``tokenise`` phase events."""
    from ..reporting import Phase

    out: dict[int, array] = {}
    with Phase(reporter, "tokenise", total=len(rows)) as phase:
        for start in range(0, len(rows), TOKENIZE_CHUNK):
            chunk = rows[start : start + TOKENIZE_CHUNK]
            encoded = tokenizer.encode_batch([texts[r] for r in chunk])
            out.update(zip(chunk, map(compact, encoded), strict=True))
            phase.advance(len(chunk))
    return out


def _encode(
    texts: list[str],
    label_ids: list[int],
    row_ids: list[int],
    encoded: dict[int, array],
    cut: tuple[LongTextPolicy, int],
) -> tuple[Split, int]:
    """The split of ``row_ids``, its tokens cut to ``cap`` by the long-text policy (a windowed
    one keeps every token its windows read); and how many texts were over the cap (``cut`` is
    the policy and the cap)."""
    long_text, cap = cut
    ids = [encoded[r] for r in row_ids]
    keep = long_text.reach if getattr(long_text, "windowed", False) else long_text.select
    split = Split(
        texts=[texts[r] for r in row_ids],
        labels=[label_ids[r] for r in row_ids],
        token_ids=[compact(keep(t, cap)) for t in ids],
        row_ids=list(row_ids),
        token_counts=[len(t) for t in ids],
    )
    return split, sum(len(t) > cap for t in ids)


def _encode_rows(
    spec: DataSpec,
    texts: list[str],
    label_ids: list[int],
    row_ids: list[int],
    tokenizer: Tokenizer,
    cap: int,
) -> Split:
    """`_encode` of ``row_ids`` with ``spec``'s long-text policy (evaluation's path)."""
    encoded = _tokenize(texts, sorted(set(row_ids)), tokenizer)
    return _encode(
        texts, label_ids, row_ids, encoded, (get_long_text_policy(spec.long_texts), cap)
    )[0]


def _report(
    spec: DataSpec,
    cleaned: Cleaned,
    labels: LabelMap,
    label_ids: list[int],
    balanced: Balanced,
    splits: dict[str, tuple[Split, int]],
    cap: int,
) -> DataReport:
    def counts(ids: list[int]) -> dict[str, int]:
        tally = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(labels))
        return {name: int(tally[i]) for i, name in enumerate(labels.names)}

    def lengths(split: Split) -> dict[str, float]:
        if not split.token_ids:
            return {}
        n = np.fromiter((len(t) for t in split.token_ids), dtype=np.int64)
        return {"min": int(n.min()), "mean": round(float(n.mean()), 2), "max": int(n.max())}

    weights = balanced.class_weights
    report = DataReport(
        dataset=spec.dataset,
        rows_read=cleaned.rows_read,
        dropped=dict(cleaned.dropped),
        rows_kept=len(cleaned.frame),
        labels=list(labels.names),
        class_counts=counts(label_ids),
        balance=spec.balance,
        balance_scope=(
            "train"
            if "part" in cleaned.frame.columns or spec.split == OFFICIAL_SPLIT
            else spec.balance_scope
        ),
        balanced_counts=counts(balanced.frame["label"].tolist()),
        predefined_splits="part" in cleaned.frame.columns,
        split=_split_text(spec, "part" in cleaned.frame.columns),
        html_changed=cleaned.html_changed if spec.strip_html else None,
        long_texts=spec.long_texts,
        split_sizes={name: len(split) for name, (split, _) in splits.items()},
        split_class_counts={name: counts(split.labels) for name, (split, _) in splits.items()},
        max_tokens=cap,
        max_length=spec.max_length,
        truncated={name: cut for name, (_, cut) in splits.items()},
        token_lengths={name: lengths(split) for name, (split, _) in splits.items()},
        class_weights=(
            {name: float(weights[i]) for i, name in enumerate(labels.names)} if weights else None
        ),
    )
    counts = {name: s.token_counts for name, (s, _) in splits.items()}
    report.record_cuts(cap, counts, long_text=get_long_text_policy(spec.long_texts))
    return report


def _split_text(spec: DataSpec, predefined: bool) -> str:
    """How the splits were made, for the report."""
    if predefined:
        return "predefined by the dataset"
    if spec.split == OFFICIAL_SPLIT:
        return f"official train/test, validation {OFFICIAL_VALIDATION:.0%} of train (seeded)"
    return "fractions " + "/".join(f"{f:g}" for f in spec.split) + f" (seed {spec.seed})"
