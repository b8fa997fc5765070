"""Read data files: labelled tables for training, bare texts for prediction.

CSV and TSV go through Python's ``csv`` module in strict mode, so quoted fields with commas,
quotes and newlines load exactly and a malformed record is an error that names its line,
never a silently merged row. Every problem is a `DataError` that says what to fix.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}
TEXT_FORMATS = {**TABLE_FORMATS, ".txt": "txt"}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
_DELIMITER_NAMES = {",": "commas", "\t": "tabs"}


def table_format(path: str | Path) -> str | None:
    """``"csv"``, ``"tsv"``, ``"jsonl"``, ``"json"`` or ``"parquet"`` from the suffix, else None."""
    return TABLE_FORMATS.get(Path(path).suffix.lower())


def read_table(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a labelled data file into a frame with columns ``text`` and ``label``.

    Values are kept as read (strings, numbers, or None where a JSON value is missing or
    null); cleaning happens later. Raises `DataError` for a missing path, a directory,
    an unsupported type, an empty file, a header with no rows, absent columns, bytes that are
    not ``encoding``, or a malformed record.
    """
    import pandas as pd

    path = _check_file(path, TABLE_FORMATS)
    check_encoding(encoding)
    kind = TABLE_FORMATS[path.suffix.lower()]
    if kind == "parquet":
        frame = _read_parquet(path)
        _require_columns(path, list(frame.columns), text_column, label_column)
        if frame.empty:
            raise DataError(f"{path} has columns but no rows; add rows to it")
        frame = frame[[text_column, label_column]]
        return frame.set_axis(["text", "label"], axis=1).reset_index(drop=True)
    if kind in _DELIMITERS:
        header, rows = _table_rows(path, _DELIMITERS[kind], encoding)
        if header is None:
            raise DataError(f"{path} is empty; add a header and rows to it")
        _require_columns(path, header, text_column, label_column)
        t, lab = header.index(text_column), header.index(label_column)
        pairs = [(row[t], row[lab]) for row in rows]
        if not pairs:
            raise DataError(f"{path} has a header but no rows; add rows below the header")
    else:
        records = list(_json_records(path, encoding, kind))
        if not records:
            raise DataError(f"{path} holds no records; add one object per row")
        found = list(dict.fromkeys(key for record in records for key in record))
        _require_columns(path, found, text_column, label_column)
        pairs = [(r.get(text_column), r.get(label_column)) for r in records]
    return pd.DataFrame(pairs, columns=["text", "label"], dtype=object)


def load_texts(
    path: str | Path,
    text_column: str = "text",
    encoding: str = "utf-8",
    chunksize: int | None = None,
) -> Iterator[list[str]]:
    """Yield the texts of a file in lists of at most ``chunksize`` (all at once when None).

    Reads csv, tsv, jsonl, json, parquet and txt (one text per line); ``"-"`` reads standard
    input, one text per line. A missing or null text becomes ``""``: no row is ever dropped,
    so every input row gets a prediction. An empty file yields nothing.
    """
    if chunksize is not None and chunksize < 1:
        raise DataError(f"chunksize must be at least 1, got {chunksize}")
    check_encoding(encoding)
    if str(path) == "-":
        texts: Iterable[str] = _stdin_lines(encoding)
    else:
        path = _check_file(path, TEXT_FORMATS, allow_empty=True)
        texts = _texts_of(path, TEXT_FORMATS[path.suffix.lower()], text_column, encoding)
    if chunksize is None:
        if everything := list(texts):
            yield everything
        return
    iterator = iter(texts)
    while chunk := list(islice(iterator, chunksize)):
        yield chunk


def check_encoding(encoding: str) -> None:
    """Raise `DataError` unless ``encoding`` names a Python text codec."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise DataError(
            f"unknown encoding {encoding!r}; pass a Python codec name with --encoding, "
            "e.g. utf-8, utf-8-sig, latin-1 or cp1252"
        ) from None


# ----- files -----------------------------------------------------------------------------
def _check_file(path: str | Path, formats: dict[str, str], allow_empty: bool = False) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data file {path} does not exist; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a data file ({_suffixes(formats)})")
    if path.suffix.lower() not in formats:
        raise DataError(
            f"cannot read {path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
            f"use one of {_suffixes(formats)}"
        )
    if not allow_empty and path.stat().st_size == 0:
        raise DataError(f"{path} is empty; add a header and rows to it")
    return path


def _suffixes(formats: dict[str, str]) -> str:
    return ", ".join(formats)


def _require_columns(path: Path, found: list[str], text_column: str, label_column: str) -> None:
    flags = {text_column: "--text-column", label_column: "--label-column"}
    missing = [name for name in flags if name not in found]
    if missing:
        what = " and ".join(f"{name!r} (set {flags[name]})" for name in missing)
        shown = ", ".join(repr(c) for c in found[:20]) + (", ..." if len(found) > 20 else "")
        raise DataError(f"{path} has no column {what}; columns found: {shown or '(none)'}")


@contextmanager
def _decoding(path: Path, encoding: str) -> Iterator[None]:
    """Turn a UnicodeDecodeError into a DataError naming the first undecodable line."""
    try:
        yield
    except UnicodeDecodeError as exc:
        line = _first_undecodable_line(path, encoding)
        where = f"line {line}" if line else f"byte {exc.start}"
        raise DataError(
            f"{path}: {where} is not valid {encoding} ({exc.reason}); pass the file's "
            "encoding with --encoding, e.g. --encoding latin-1"
        ) from None


def _first_undecodable_line(path: Path, encoding: str) -> int | None:
    decoder = codecs.getincrementaldecoder(encoding)()
    number = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError:
                return number
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return number
    return None


# ----- csv / tsv -------------------------------------------------------------------------
def _table_rows(
    path: Path, delimiter: str, encoding: str
) -> tuple[list[str] | None, Iterator[list[str]]]:
    """The header (None for a file of blank lines) and the rows, each as wide as the header."""
    records = _csv_records(path, delimiter, encoding)
    first = next(records, None)
    if first is None:
        return None, iter(())
    _, header = first
    header[0] = header[0].removeprefix("\ufeff")

    def rows() -> Iterator[list[str]]:
        for line, row in records:
            if len(row) != len(header):
                raise DataError(
                    f"{path}: line {line} has {len(row)} fields but the header has "
                    f"{len(header)}; quote fields that contain {_DELIMITER_NAMES[delimiter]}"
                )
            yield row

    return header, rows()


def _csv_records(path: Path, delimiter: str, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(starting line number, fields) for every non-blank record."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # long documents are fine
    with _decoding(path, encoding), open(path, encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        start = 1
        try:
            for row in reader:
                if row:
                    yield start, row
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(
                f"{path}: cannot parse the record starting on line {start} ({exc}); put "
                'quotes around fields that hold quotes, delimiters or newlines and double the " '
                "inside them"
            ) from None


# ----- json / jsonl ----------------------------------------------------------------------
def _json_records(path: Path, encoding: str, kind: str) -> Iterator[dict[str, Any]]:
    with _decoding(path, encoding), open(path, encoding=encoding) as f:
        if kind == "jsonl":
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield _json_object(path, number, line.removeprefix("\ufeff"))
            return
        try:
            data = json.loads(f.read().removeprefix("\ufeff"))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
                "fix the file or write it as JSON Lines (.jsonl)"
            ) from None
    if not isinstance(data, list):
        raise DataError(
            f"{path} holds a JSON {type(data).__name__}; expected an array of records "
            '[{"text": ..., "label": ...}, ...]'
        )
    for number, record in enumerate(data, 1):
        if not isinstance(record, dict):
            raise DataError(
                f"{path}: record {number} is a JSON {type(record).__name__}, not an object; "
                'write records as {"text": ..., "label": ...}'
            )
        yield record


def _json_object(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: line {number} is not valid JSON ({exc.msg}, column {exc.colno}); "
            "write one JSON object per line"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{path}: line {number} is a JSON {type(obj).__name__}, not an object; "
            'write one object per line, e.g. {"text": "...", "label": "..."}'
        )
    return obj


# ----- parquet ---------------------------------------------------------------------------
def _read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path, columns=columns)
    except ImportError as exc:
        raise DataError(
            f"reading {path} needs pyarrow; install it: pip install 'llmclf[parquet]'"
        ) from exc
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {path} as parquet ({first}); check the file") from None


# ----- texts for prediction --------------------------------------------------------------
def _texts_of(path: Path, kind: str, text_column: str, encoding: str) -> Iterator[str]:
    if path.stat().st_size == 0:
        return
    if kind == "txt":
        with _decoding(path, encoding), open(path, encoding=encoding) as f:
            for number, line in enumerate(f, 1):
                line = line.removesuffix("\n")
                yield line.removeprefix("\ufeff") if number == 1 else line
    elif kind in _DELIMITERS:
        header, rows = _table_rows(path, _DELIMITERS[kind], encoding)
        if header is None:  # only blank lines
            return
        if text_column not in header:
            _require_text_column(path, header, text_column)
        index = header.index(text_column)
        for row in rows:
            yield row[index]
    elif kind == "parquet":
        frame = _read_parquet(path)
        if text_column not in frame.columns:
            _require_text_column(path, list(frame.columns), text_column)
        yield from (as_text(v) for v in frame[text_column].tolist())
    else:
        records = _json_records(path, encoding, kind)
        head = list(islice(records, 100))
        if head and not any(text_column in record for record in head):
            _require_text_column(path, list(dict.fromkeys(k for r in head for k in r)), text_column)
        for record in chain(head, records):
            yield as_text(record.get(text_column))


def _require_text_column(path: Path, found: list[str], text_column: str) -> None:
    shown = ", ".join(repr(c) for c in found[:20]) or "(none)"
    raise DataError(
        f"{path} has no column {text_column!r} (set --text-column); columns found: {shown}"
    )


def _stdin_lines(encoding: str) -> Iterator[str]:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream (tests, notebooks): already decoded
        for line in sys.stdin:
            yield line.removesuffix("\n").removesuffix("\r")
        return
    decoder = codecs.getincrementaldecoder(encoding)()
    for number, raw in enumerate(stream, 1):
        try:
            line = decoder.decode(raw)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"standard input: line {number} is not valid {encoding} ({exc.reason}); "
                "pass its encoding with --encoding, e.g. --encoding latin-1"
            ) from None
        yield line.removesuffix("\n").removesuffix("\r")


def as_text(value: object) -> str:
    """A text cell as a string: missing (None, NaN) becomes ``""``, a number its digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)
