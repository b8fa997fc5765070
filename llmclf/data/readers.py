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
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, UsageError
from ..options import check_encoding as _check_encoding

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
_FIELD_SIZE_LIMIT = 1 << 30  # characters in one csv field: long documents are fine
STDIN_FORMATS = ("txt", "csv", "tsv", "jsonl")


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
    _check_encoding(encoding, DataError)
    kind = TABLE_FORMATS[path.suffix.lower()]
    if kind == "parquet":
        frame = _read_parquet(path)
        _require_columns(path, list(frame.columns), text_column, label_column)
        if frame.empty:
            raise DataError(f"{path} has columns but no rows; add rows to it")
        frame = frame[[text_column, label_column]]
        return frame.set_axis(["text", "label"], axis=1).reset_index(drop=True)
    if kind in _DELIMITERS:
        delimiter = _DELIMITERS[kind]
        header, rows = _table_rows(_csv_records(path, delimiter, encoding), path, delimiter)
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
    text_column: str | None = None,
    encoding: str = "utf-8",
    chunksize: int | None = None,
    stdin_format: str | None = None,
) -> Iterator[list[str]]:
    """The texts of a file, read lazily in lists of at most ``chunksize`` (one list when None).

    Reads csv, tsv, jsonl, json, parquet and txt by suffix, taking ``text_column`` (default
    ``"text"``) of a table. ``"-"`` reads standard input as ``stdin_format``: ``"txt"`` (the
    default) or a ``"csv"``, ``"tsv"`` or ``"jsonl"`` table. In txt, one line is one text and
    ``\n``, ``\r\n`` or a lone ``\r`` ends a line, in a file as on standard input. A missing or
    null text becomes ``""``: no row is ever dropped, so every input row gets a prediction (in a
    one-column csv/tsv a blank line is an empty cell). An empty input yields nothing.

    Options that cannot apply raise `UsageError` here, before anything is read.
    """
    if chunksize is not None and chunksize < 1:
        raise DataError(f"chunksize must be at least 1, got {chunksize}")
    _check_encoding(encoding, DataError)
    texts: Iterable[str]
    if str(path) == "-":
        fmt = stdin_format or "txt"
        if fmt not in STDIN_FORMATS:
            raise UsageError(f"unknown stdin format {fmt!r}; use one of {', '.join(STDIN_FORMATS)}")
        if fmt == "txt" and text_column is not None:
            raise UsageError(
                "--text-column needs a table, but standard input is read as plain text (one "
                "text per line); add --stdin-format csv (or tsv, jsonl)"
            )
        texts = _stdin_texts(fmt, text_column or "text", encoding)
    else:
        if stdin_format is not None:
            raise UsageError(
                f"--stdin-format applies to --file - (standard input); {path} is read by its suffix"
            )
        path = _check_file(path, TEXT_FORMATS, allow_empty=True)
        kind = TEXT_FORMATS[path.suffix.lower()]
        texts = _texts_of(path, kind, text_column or "text", encoding)
    return _chunked(texts, chunksize)


def _chunked(texts: Iterable[str], chunksize: int | None) -> Iterator[list[str]]:
    if chunksize is None:
        if everything := list(texts):
            yield everything
        return
    iterator = iter(texts)
    while chunk := list(islice(iterator, chunksize)):
        yield chunk


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
    records: Iterator[tuple[int, list[str]]], source: Path | str, delimiter: str
) -> tuple[list[str] | None, Iterator[list[str]]]:
    """The header (None when there are only blank lines) and the rows, each as wide as it.

    Blank lines before the header are skipped. A blank record after it (`_csv_records` passes
    them only with ``keep_blank``) is an empty cell in a one-column table, as spreadsheets
    export one, and not a record in a wider one.
    """
    header = next((row for _, row in records if row), None)
    if header is None:
        return None, iter(())
    header[0] = header[0].removeprefix("\ufeff")

    def rows() -> Iterator[list[str]]:
        for line, row in records:
            if not row:
                if len(header) == 1:
                    yield [""]
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{source}: line {line} has {len(row)} fields but the header has "
                    f"{len(header)}; quote fields that contain {_DELIMITER_NAMES[delimiter]}"
                )
            yield row

    return header, rows()


def _csv_records(
    path: Path, delimiter: str, encoding: str, keep_blank: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """(starting line number, fields) for every non-blank record (blank ones too: keep_blank)."""
    with _decoding(path, encoding), open(path, encoding=encoding, newline="") as f:
        yield from _parse_csv(f, path, delimiter, keep_blank)


def _parse_csv(
    lines: Iterable[str], source: Path | str, delimiter: str, keep_blank: bool
) -> Iterator[tuple[int, list[str]]]:
    """`_csv_records` of lines that keep their line ends (as a file opened with newline="")."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    start = 1
    try:
        for row in _long_fields(reader):
            if row or keep_blank:
                yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(
            f"{source}: cannot parse the record starting on line {start} ({exc}); put "
            'quotes around fields that hold quotes, delimiters or newlines and double the " '
            "inside them"
        ) from None


def _long_fields(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """``reader``'s rows, parsed with room for long documents (1 GiB fields).

    ``csv.field_size_limit`` is process-wide, so it is raised only while this reader parses a
    record and put back before each row is handed on: other csv users never see it changed.
    """
    while True:
        previous = csv.field_size_limit(max(csv.field_size_limit(), _FIELD_SIZE_LIMIT))
        try:
            row = next(reader)
        except StopIteration:
            return
        finally:
            csv.field_size_limit(previous)
        yield row


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


def _json_object(path: Path | str, number: int, line: str) -> dict[str, Any]:
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
_LINE_END = re.compile(r"\r\n|\r|\n")
_STDIN = "standard input"


def _texts_of(path: Path, kind: str, text_column: str, encoding: str) -> Iterator[str]:
    if path.stat().st_size == 0:
        return
    if kind == "txt":
        with open(path, "rb") as f:
            yield from _lines(_decoded(f, encoding, str(path)))
    elif kind in _DELIMITERS:
        records = _csv_records(path, _DELIMITERS[kind], encoding, keep_blank=True)
        yield from _column(records, str(path), _DELIMITERS[kind], text_column)
    elif kind == "parquet":
        frame = _read_parquet(path)
        if text_column not in frame.columns:
            _require_text_column(path, list(frame.columns), text_column)
        yield from (as_text(v) for v in frame[text_column].tolist())
    else:
        yield from _record_texts(_json_records(path, encoding, kind), path, text_column)


def _stdin_texts(fmt: str, text_column: str, encoding: str) -> Iterator[str]:
    """Standard input read as ``fmt``, with the same rules as a file of that format."""
    stream = getattr(sys.stdin, "buffer", None)
    # a text stream (tests, notebooks) is already decoded
    pieces = iter(sys.stdin) if stream is None else _decoded(stream, encoding, _STDIN)
    if fmt == "txt":
        yield from _lines(pieces)
    elif fmt in _DELIMITERS:
        records = _parse_csv(_lines(pieces, keepends=True), _STDIN, _DELIMITERS[fmt], True)
        yield from _column(records, _STDIN, _DELIMITERS[fmt], text_column)
    else:  # jsonl
        records = (
            _json_object(_STDIN, number, line.removeprefix("\ufeff"))
            for number, line in enumerate(_lines(pieces), 1)
            if line.strip()
        )
        yield from _record_texts(records, _STDIN, text_column)


def _column(
    records: Iterator[tuple[int, list[str]]], source: str, delimiter: str, text_column: str
) -> Iterator[str]:
    """The ``text_column`` field of each csv/tsv record after the header (see `_table_rows`)."""
    header, rows = _table_rows(records, source, delimiter)
    if header is None:  # only blank lines
        return
    if text_column not in header:
        _require_text_column(source, header, text_column)
    index = header.index(text_column)
    for row in rows:
        yield row[index]


def _record_texts(
    records: Iterator[dict[str, Any]], source: Path | str, text_column: str
) -> Iterator[str]:
    """``text_column`` of each JSON record; an error if none of the first 100 has it."""
    head = list(islice(records, 100))
    if head and not any(text_column in record for record in head):
        _require_text_column(source, list(dict.fromkeys(k for r in head for k in r)), text_column)
    for record in chain(head, records):
        yield as_text(record.get(text_column))


def _require_text_column(source: Path | str, found: list[str], text_column: str) -> None:
    shown = ", ".join(repr(c) for c in found[:20]) or "(none)"
    raise DataError(
        f"{source} has no column {text_column!r} (set --text-column); columns found: {shown}"
    )


def _decoded(raw_lines: Iterable[bytes], encoding: str, source: str) -> Iterator[str]:
    """Bytes decoded piece by piece; bytes not in ``encoding`` are a DataError naming the line."""
    decoder = codecs.getincrementaldecoder(encoding)()
    number = 0
    try:
        for raw in raw_lines:
            number += 1
            yield decoder.decode(raw)
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{source}: line {number} is not valid {encoding} ({exc.reason}); pass its "
            "encoding with --encoding, e.g. --encoding latin-1"
        ) from None


def _lines(pieces: Iterable[str], keepends: bool = False) -> Iterator[str]:
    """The lines of a text that arrives in pieces, a leading BOM dropped.

    ``\n``, ``\r\n`` and a lone ``\r`` each end a line (Python's universal newlines); text
    after the last line end is a last line. With ``keepends`` each line keeps its end, as
    csv.reader wants.
    """
    pending, at_start = "", True
    for piece in pieces:
        pending += piece
        if at_start and pending:
            pending, at_start = pending.removeprefix("\ufeff"), False
        end = len(pending) - pending.endswith("\r")  # a last \r may be half of a \r\n
        start = 0
        for match in _LINE_END.finditer(pending, 0, end):
            yield pending[start : match.end() if keepends else match.start()]
            start = match.end()
        pending = pending[start:]
    if pending:
        yield pending if keepends else pending.removesuffix("\r")


def as_text(value: object) -> str:
    """A text cell as a string: missing (None, NaN) becomes ``""``, a number its digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)
