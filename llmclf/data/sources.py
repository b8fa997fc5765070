"""Where data comes from: registered datasets (``sms`` here, ``imdb``) and data files.

A dataset is a zero-argument function registered with ``@llmclf.datasets.register(name)`` that
returns a DataFrame with a text and a label column (and optionally a ``split`` column of
``train`` / ``test``, its official partition, used with ``--split official``), or a mapping of
predefined ``train`` / ``validation`` / ``test`` frames. A path to a .csv, .tsv, .jsonl, .json
or .parquet file needs no registration. This module imports neither torch nor pandas at the
top, so listing the registry stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .. import assets, settings
from ..errors import AssetError, DataError, UnknownNameError
from ..options import SPLITS
from ..registry import datasets

if TYPE_CHECKING:
    import pandas as pd

SMS_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SMS_MEMBER = "SMSSpamCollection"
SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
SMS_ASSET = assets.Asset(
    f"sms_spam/{SMS_MEMBER}",
    SMS_URL,
    SMS_SHA256,
    size=477_907,
    member=SMS_MEMBER,  # upstream is a zip; a mirror serves the extracted file
    what="SMS Spam Collection",
)
SMS_LABELS = ("ham", "spam")


@datasets.register(
    "sms", description="SMS Spam Collection (UCI): 5,574 text messages, ham/spam", builtin=True
)
def sms() -> pd.DataFrame:
    """SMS Spam Collection (UCI): 5,574 text messages, ham/spam.

    Downloaded once into ``$LLMCLF_HOME/sms_spam/`` and read with quoting off, so messages
    holding ``"`` characters never merge: 4,827 ham, 747 spam. Labels are an ordered
    Categorical, which makes ham label 0 and spam label 1.
    """
    import pandas as pd

    labels, texts = read_sms(sms_spam_file())
    return pd.DataFrame(
        {"text": texts, "label": pd.Categorical(labels, categories=SMS_LABELS, ordered=True)}
    )


sms.assets = (SMS_ASSET,)  # type: ignore[attr-defined]  # what `llmclf download sms` fetches


def sms_spam_file() -> Path:
    """``$LLMCLF_HOME/sms_spam/SMSSpamCollection``, hash-checked, downloaded when absent."""
    dest = settings.sms_spam_path()
    if dest.is_file() and (actual := assets.sha256_of(dest)) != SMS_SHA256:
        raise AssetError(
            f"{dest} has sha256 {actual}, expected {SMS_SHA256}; delete it so llmclf can "
            f"download it again from {SMS_URL}"
        )
    return assets.fetch(SMS_ASSET)


def read_sms(path: Path) -> tuple[list[str], list[str]]:
    """(labels, texts) of a ``label<TAB>text`` file, one message a line, quotes kept as text."""
    labels, texts = [], []
    lines = Path(path).read_bytes().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        label, tab, text = line.removesuffix("\r").partition("\t")
        if not tab:
            raise DataError(f"{path}: line {number} has no tab; expected label<TAB>text")
        labels.append(label)
        texts.append(text)
    return labels, texts


# ----- resolving --dataset ---------------------------------------------------------------
def is_file_dataset(dataset: str) -> bool:
    """Whether ``dataset`` means a path (it exists, has a data suffix, or has a separator)."""
    from .readers import table_format

    if dataset in datasets:
        return False
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return (
        table_format(dataset) is not None
        or any(s in dataset for s in separators)
        or Path(dataset).expanduser().exists()
    )


def find_dataset(dataset: str) -> Callable[[], object] | None:
    """The registered dataset function ``dataset`` names, or None when it names a file.

    Reads nothing; an unknown name is an `UnknownNameError` that suggests the closest.
    """
    if is_file_dataset(dataset):
        return None
    try:
        return datasets.get(dataset)
    except UnknownNameError as exc:
        raise UnknownNameError(
            f"{exc}; or pass a path to a .csv, .tsv, .jsonl, .json or .parquet file"
        ) from None


def load_source(
    dataset: str,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
    *,
    reporter: object = None,
) -> pd.DataFrame:
    """The raw rows of ``dataset`` (a registered name or a file path) as a frame.

    The frame has columns ``text`` and ``label`` as the source gave them; a dataset with
    predefined splits adds a ``part`` column (``train``, ``validation``, ``test``), rows in
    that order; one with an official partition adds a ``split`` column (``train``, ``test``).
    A dataset function that takes a ``reporter`` keyword gets ``reporter`` (for progress
    events, see `llmclf.reporting.Phase`).
    """
    from .readers import read_table

    function = find_dataset(dataset)
    if function is None:
        return read_table(dataset, text_column, label_column, encoding)
    result = function(reporter=reporter) if _takes_reporter(function) else function()
    where = f"dataset {dataset!r}"
    if isinstance(result, Mapping):
        return _predefined(where, result, text_column, label_column)
    return _columns(where, result, text_column, label_column)


def _takes_reporter(function: Callable[..., object]) -> bool:
    import inspect

    try:
        return "reporter" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or a C callable
        return False


def _columns(where: str, frame: object, text_column: str, label_column: str) -> pd.DataFrame:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"{where} returned a {type(frame).__name__}; a dataset function must return a "
            "pandas DataFrame with text and label columns, or a mapping of train/validation/"
            "test DataFrames"
        )
    found = [str(c) for c in frame.columns]
    flags = {text_column: "--text-column", label_column: "--label-column"}
    missing = [name for name in flags if name not in frame.columns]
    if missing:
        what = " and ".join(f"{name!r} (set {flags[name]})" for name in missing)
        raise DataError(f"{where} has no column {what}; columns found: {', '.join(found)}")
    out = frame[[text_column, label_column]].set_axis(["text", "label"], axis=1)
    if "split" in frame.columns and "split" not in (text_column, label_column):
        out = out.assign(split=frame["split"].to_numpy())  # an official partition
    return out.reset_index(drop=True)


def _predefined(
    where: str, parts: Mapping[str, object], text_column: str, label_column: str
) -> pd.DataFrame:
    import pandas as pd

    if set(parts) != set(SPLITS):
        raise DataError(
            f"{where} returned splits {sorted(map(str, parts))}; a mapping must have exactly "
            f"the keys {', '.join(SPLITS)}"
        )
    frames = []
    for part in SPLITS:
        frame = _columns(f"{where} ({part} split)", parts[part], text_column, label_column)
        frames.append(frame.assign(part=part))
    if len(frames[0]) == 0:
        raise DataError(f"{where} has an empty train split; give it rows")
    return pd.concat(frames, ignore_index=True)
