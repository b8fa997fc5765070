"""Data files: every format reads back exactly, and every bad file is a one-line DataError."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmclf.data.readers import load_texts, read_table
from llmclf.errors import DataError

# any text: quotes, commas, tabs, newlines (\n, \r, \r\n), unicode beyond the BMP, NUL excluded
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
rows = st.lists(st.tuples(texts, texts), min_size=1, max_size=8)
# pandas' to_csv leaves a lone \r unquoted (so no reader can tell it from a line end):
# its files are tested without \r; the csv module's writer quotes it and is tested with it.
texts_without_cr = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r")
)
rows_without_cr = st.lists(st.tuples(texts_without_cr, texts_without_cr), min_size=1, max_size=8)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _tmp(suffix: str) -> Path:
    """A fresh file per hypothesis example (function-scoped tmp_path would be shared)."""
    fd, name = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    return Path(name)


# ----- round trips -----------------------------------------------------------------------
@fast
@given(rows=rows_without_cr, sep=st.sampled_from([",", "\t"]))
def test_pandas_written_csv_and_tsv_read_back_unchanged(rows, sep) -> None:
    path = _tmp(".csv" if sep == "," else ".tsv")
    try:
        pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, sep=sep, index=False)
        frame = read_table(path)
        assert list(zip(frame["text"], frame["label"], strict=True)) == rows
    finally:
        path.unlink()


@fast
@given(rows=rows)
def test_csv_module_written_csv_reads_back_unchanged(rows) -> None:
    path = _tmp(".csv")
    try:
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)  # \r\n line ends, like Excel
            writer.writerow(["label", "text"])
            writer.writerows((label, text) for text, label in rows)
        frame = read_table(path)
        assert list(zip(frame["text"], frame["label"], strict=True)) == rows
    finally:
        path.unlink()


@fast
@given(rows=rows, ascii_only=st.booleans())
def test_jsonl_reads_back_unchanged(rows, ascii_only) -> None:
    path = _tmp(".jsonl")
    try:
        lines = [json.dumps({"text": t, "label": lab}, ensure_ascii=ascii_only) for t, lab in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        frame = read_table(path)
        assert list(zip(frame["text"], frame["label"], strict=True)) == rows
        assert list(load_texts(path)) == [[t for t, _ in rows]]
    finally:
        path.unlink()


@fast
@given(rows=rows)
def test_pandas_written_jsonl_and_json_read_back_unchanged(rows) -> None:
    frame = pd.DataFrame(rows, columns=["text", "label"])
    for suffix, lines in ((".jsonl", True), (".json", False)):
        path = _tmp(suffix)
        try:
            frame.to_json(path, orient="records", lines=lines, force_ascii=False)
            back = read_table(path)
            assert list(zip(back["text"], back["label"], strict=True)) == rows
        finally:
            path.unlink()


@fast
@given(rows=rows_without_cr, chunksize=st.sampled_from([None, 1, 3]))
def test_load_texts_yields_every_csv_text_in_order(rows, chunksize) -> None:
    path = _tmp(".csv")
    try:
        pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
        chunks = list(load_texts(path, chunksize=chunksize))
        assert [t for chunk in chunks for t in chunk] == [t for t, _ in rows]
        assert all(len(chunk) <= (chunksize or len(rows)) for chunk in chunks)
    finally:
        path.unlink()


def test_parquet_reads_with_other_column_names(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"message": ["a", "b"], "y": [0, 1], "extra": [1.5, 2.5]}).to_parquet(path)
    frame = read_table(path, text_column="message", label_column="y")
    assert frame["text"].tolist() == ["a", "b"]
    assert [str(v) for v in frame["label"]] == ["0", "1"]
    assert list(load_texts(path, text_column="message")) == [["a", "b"]]


def test_csv_quotes_commas_newlines_exactly(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"He said ""hi"", then\nleft",spam\nplain,ham\n', "utf-8")
    frame = read_table(path)
    assert frame["text"].tolist() == ['He said "hi", then\nleft', "plain"]


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\nhello,a\n".encode("utf-8-sig"))
    assert read_table(path)["text"].tolist() == ["hello"]


def test_other_encodings_with_the_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\ncafé,a\n".encode("latin-1"))
    assert read_table(path, encoding="latin-1")["text"].tolist() == ["café"]


# ----- load_texts for prediction -----------------------------------------------------------
def test_txt_is_one_text_per_line_and_keeps_empty_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\r\n\nthird <|endoftext|>\n")
    assert list(load_texts(path)) == [["first", "", "third <|endoftext|>"]]


def test_missing_texts_become_empty_strings_never_dropped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n{"text": null}\n{"other": 1}\n{"text": 7}\n', "utf-8")
    assert list(load_texts(path, chunksize=2)) == [["a", ""], ["", "7"]]


@pytest.mark.parametrize(
    ("name", "content"), [("e.csv", b""), ("h.csv", b"text\n"), ("e.txt", b""), ("e.jsonl", b"")]
)
def test_empty_inputs_yield_nothing(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert list(load_texts(path)) == []


def test_stdin_dash_reads_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"one\ntwo, three\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert list(load_texts("-")) == [["one", "two, three"]]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\n")))
    with pytest.raises(DataError, match=r"standard input: line 2 .*--encoding"):
        list(load_texts("-"))


def test_load_texts_without_the_column_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("message,id\nhi,1\n", "utf-8")
    with pytest.raises(DataError, match=r"no column 'text' \(set --text-column\).*'message'"):
        list(load_texts(path))
    assert list(load_texts(path, text_column="message")) == [["hi"]]


# ----- bad files: one line that says what to do ------------------------------------------
def _error(path: Path, **kwargs: str) -> str:
    with pytest.raises(DataError) as info:
        read_table(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nope.csv")


def test_a_directory(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path)


def test_an_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    message = _error(path)
    assert "unsupported file type '.xlsx'" in message and ".csv" in message


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "empty.json", "empty.tsv"])
def test_an_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert "is empty" in _error(path)


def test_blank_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n", "utf-8")
    assert "is empty" in _error(path)


def test_a_header_with_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("text,label\n", "utf-8")
    assert "has a header but no rows" in _error(path)


def test_absent_columns_list_the_found_ones_and_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("message,category\nhi,a\n", "utf-8")
    message = _error(path)
    assert "'text' (set --text-column)" in message
    assert "'label' (set --label-column)" in message
    assert "columns found: 'message', 'category'" in message
    only_label = _error(path, text_column="message")
    assert "--text-column" not in only_label and "--label-column" in only_label


def test_absent_columns_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "cols.jsonl"
    path.write_text('{"body": "hi", "label": "a"}\n', "utf-8")
    assert "columns found: 'body', 'label'" in _error(path)


def test_non_utf8_bytes_name_the_line_and_suggest_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\nfine,a\nalso fine,b\ncaf\xe9,a\n")
    message = _error(path)
    assert "line 4 is not valid utf-8" in message and "--encoding" in message


def test_non_utf8_bytes_in_jsonl_and_txt(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    assert "line 2 is not valid utf-8" in _error(path)
    txt = tmp_path / "latin.txt"
    txt.write_bytes(b"ok\n\xff\n")
    with pytest.raises(DataError, match="line 2 is not valid utf-8"):
        list(load_texts(txt))


def test_an_unknown_encoding(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,b\n", "utf-8")
    assert "unknown encoding 'utf-99'" in _error(path, encoding="utf-99")


def test_a_malformed_jsonl_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n', "utf-8")
    assert "line 3 is not valid JSON" in _error(path)
    path.write_text('{"text": "a", "label": "x"}\n["not", "an", "object"]\n', "utf-8")
    assert "line 2 is a JSON list, not an object" in _error(path)


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n{"text": "a", "label": "x"},\n{"text": }\n]', "utf-8")
    assert "invalid JSON at line 3" in _error(path)
    path.write_text('{"text": ["a"], "label": ["x"]}', "utf-8")
    assert "expected an array of records" in _error(path)


def test_a_row_with_too_many_fields(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("text,label\nhello, world,a\n", "utf-8")
    message = _error(path)
    assert "line 2 has 3 fields but the header has 2" in message and "quote" in message


def test_an_unclosed_quote_is_an_error_not_a_merged_row(tmp_path: Path) -> None:
    path = tmp_path / "quote.tsv"
    path.write_text('text\tlabel\n"quoted" then text\tham\nnext\tspam\n', "utf-8")
    assert "record starting on line 2" in _error(path)


def test_a_corrupt_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    assert "cannot read" in _error(path)


def test_parquet_without_an_engine_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    assert "pip install 'llmclf[parquet]'" in _error(path)
