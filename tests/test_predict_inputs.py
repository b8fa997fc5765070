"""What predict accepts: every input row gets one prediction, and bad input is a one-line error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import fit_tiny_run

from llmclf import Classifier
from llmclf.cli import main
from llmclf.data.readers import load_texts
from llmclf.errors import DataError, UsageError


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained 3-class run (a few seconds), shared by this module."""
    return fit_tiny_run(tmp_path_factory.mktemp("predict-inputs"), 10, "--epochs", "1")


@pytest.fixture(scope="module")
def classifier(run: Path) -> Classifier:
    return Classifier.load(run, device="cpu")


def _predict(run: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["predict", str(run), *args], input=stdin)


def _jsonl_texts(stdout: str) -> list[str]:
    return [json.loads(line)["text"] for line in io.StringIO(stdout)]


# ----- the Python API ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize("one", ["a single string", b"some bytes"])
def test_one_string_is_refused_not_split_into_characters(
    classifier: Classifier, method: str, one: str | bytes
) -> None:
    with pytest.raises(
        UsageError, match=rf"{method} takes a list of texts, not one string"
    ) as info:
        getattr(classifier, method)(one)
    assert f"wrap it: {method}([text])" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([123], "texts[0] is an int, not a str"),
        (["fine", None], "texts[1] is None, not a str"),
        (["a", "b", float("nan")], "texts[2] is a float, not a str"),
        ([b"bytes"], "texts[0] is a bytes, not a str"),
    ],
)
def test_a_non_str_text_is_named_by_index_and_type(
    classifier: Classifier, texts: list, message: str
) -> None:
    for method in (classifier.predict, classifier.predict_proba):
        with pytest.raises(UsageError) as info:
            method(texts)
        assert str(info.value).startswith(message)
        assert "\n" not in str(info.value)


def test_any_iterable_of_str_still_predicts(classifier: Classifier) -> None:
    assert len(classifier.predict(("refund", "", "printer"))) == 3
    assert len(classifier.predict(t for t in ["refund", "printer"])) == 2
    assert classifier.predict([]) == []
    assert classifier.predict_proba(["refund", ""]).shape == (2, len(classifier.labels))


# ----- one-column csv/tsv: a blank line is an empty cell -----------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_one_column_blank_lines_are_empty_texts(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_text('text\nfirst\n\nthird\n""\nfifth\n', "utf-8")
    assert list(load_texts(path)) == [["first", "", "third", "", "fifth"]]
    path.write_bytes(b"\n\ntext\r\nfirst\r\n\r\nthird\r\n")  # blank lines before the header
    assert list(load_texts(path)) == [["first", "", "third"]]


def test_two_column_blank_lines_are_still_not_records(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,text\n1,a\n\n2,\n3,c\n", "utf-8")
    assert list(load_texts(path)) == [["a", "", "c"]]


def test_cli_one_column_file_accounts_for_every_row(run: Path, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('text\nfirst\n\nthird\n""\nfifth\n', "utf-8")
    result = _predict(run, "--file", str(path), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert _jsonl_texts(result.stdout) == ["first", "", "third", "", "fifth"]
    assert "read 5 rows, wrote 5 predictions" in result.stderr


# ----- stdin: --stdin-format -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("csv", 'id,body\n1,"a, quoted ""one"""\n2,"two\nlines"\n3,\n'),
        ("tsv", 'id\tbody\n1\ta, quoted "one"\n2\t"two\nlines"\n3\t\n'),
        ("jsonl", '{"body": "a, quoted \\"one\\""}\n{"body": "two\\nlines"}\n{"id": 3}\n'),
    ],
)
def test_stdin_tables_read_the_text_column(
    monkeypatch: pytest.MonkeyPatch, fmt: str, data: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    got = list(load_texts("-", text_column="body", stdin_format=fmt))
    assert got == [['a, quoted "one"', "two\nlines", ""]]


def test_stdin_table_without_the_column_lists_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"id,message\n1,hi\n")))
    with pytest.raises(DataError, match=r"standard input has no column 'text'.*'message'"):
        list(load_texts("-", stdin_format="csv"))


def test_stdin_csv_bad_bytes_name_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"text\nok\ncaf\xe9\n")))
    with pytest.raises(DataError, match=r"standard input: line 3 is not valid utf-8.*--encoding"):
        list(load_texts("-", stdin_format="csv"))


def test_cli_stdin_csv_with_text_column(run: Path) -> None:
    result = _predict(
        run,
        *("--file", "-", "--stdin-format", "csv", "--text-column", "text", "--format", "jsonl"),
        stdin="id,text\n1,printer\n2,\n3,refund\n",
    )
    assert result.exit_code == 0, result.output
    assert _jsonl_texts(result.stdout) == ["printer", "", "refund"]
    assert "read 3 rows, wrote 3 predictions" in result.stderr


def test_cli_text_column_on_plain_stdin_is_a_usage_error(run: Path) -> None:
    result = _predict(run, "--file", "-", "--text-column", "text", stdin="id,text\n1,printer\n")
    assert result.exit_code == 2
    assert "--stdin-format" in result.stderr and "--text-column" in result.stderr


def test_cli_stdin_format_needs_stdin(run: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("printer\n", "utf-8")
    result = _predict(run, "--file", str(path), "--stdin-format", "csv")
    assert result.exit_code == 2
    assert "--stdin-format" in result.stderr and "--file -" in result.stderr


# ----- txt files and plain stdin split lines by one rule ------------------------------------
@pytest.mark.parametrize(
    ("encoding", "raw", "texts"),
    [
        ("utf-8", "a\rb\r\nc\n\nd", ["a", "b", "c", "", "d"]),
        ("utf-8", "\ufeffone\r\rtwo\r", ["one", "", "two"]),
        ("utf-8", "x\n\n", ["x", ""]),
        ("utf-16", "a\r\nb\rc\n", ["a", "b", "c"]),
        ("utf-8", "", []),
    ],
)
def test_txt_file_and_stdin_split_lines_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str, raw: str, texts: list[str]
) -> None:
    data = raw.encode(encoding)
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    expected = [texts] if texts else []
    assert list(load_texts(path, encoding=encoding)) == expected
    assert list(load_texts("-", encoding=encoding)) == expected
