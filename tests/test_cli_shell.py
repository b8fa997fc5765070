from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from llmclf import __version__
from llmclf.cli import main
from llmclf.errors import DataError, UsageError


@click.command("_fail", hidden=True)
@click.option("--usage", is_flag=True)
def _fail(usage: bool) -> None:
    """A command that raises a library error (test only)."""
    if usage:
        raise UsageError("bad option --frobnicate; use --frob")
    raise DataError("dataset 'x.csv' has no 'text' column; found: a, b. Set --text-column")


@pytest.fixture(autouse=True)
def failing_command():
    """A test-only command on the real CLI group, removed afterwards."""
    main.add_command(_fail)
    yield
    main.commands.pop("_fail", None)


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_library_error_is_one_line_on_stderr_with_exit_code_1() -> None:
    result = CliRunner().invoke(main, ["_fail"])
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: dataset 'x.csv' has no 'text' column; found: a, b. Set --text-column\n"
    )
    assert "Traceback" not in result.output


def test_usage_error_exits_2() -> None:
    result = CliRunner().invoke(main, ["_fail", "--usage"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "nonsense"], "'nonsense' is not one of"),
        (["fit", "--lr", "abc"], "Invalid value for '--lr': 'abc' is not a valid float"),
        (["fit", "--frobnicate"], "No such option '--frobnicate'"),
    ],
)
def test_click_usage_errors_are_one_line_with_exit_code_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args, prog_name="llmclf")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert f"(see 'llmclf {args[0]} --help')" in result.stderr


def test_an_unwritable_path_is_one_line_with_exit_code_1(tmp_path) -> None:
    (tmp_path / "a-file").write_text("")
    inside = tmp_path / "a-file" / "events.jsonl"  # a file cannot hold a folder
    result = CliRunner().invoke(main, ["fit", "--log-json", str(inside), "--epochs", "1"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"Error: {tmp_path}")
    assert result.stderr.endswith("; check the path\n")


def test_log_json_creates_missing_parent_folders(tmp_path, monkeypatch) -> None:
    """predict --output created them; fit --log-json nodir/x refused."""
    from llmclf.reporting import JsonLinesReporter

    log = tmp_path / "no" / "such" / "events.jsonl"
    reporter = JsonLinesReporter(log)
    reporter.event("message", text="hello")
    reporter.close()
    assert '"text": "hello"' in log.read_text()


def test_an_interrupt_is_one_line_with_exit_code_130(monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(main.commands["list"], "callback", interrupted)
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "Error: interrupted"


def test_debug_flag_shows_the_exception() -> None:
    result = CliRunner().invoke(main, ["--debug", "_fail"])
    assert isinstance(result.exception, DataError)


def test_help_does_not_import_torch() -> None:
    code = "import sys; from llmclf.cli import main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_commands_own_exit_code_is_kept(monkeypatch) -> None:
    def exits_3(*args, **kwargs):
        click.get_current_context().exit(3)

    monkeypatch.setattr(main.commands["list"], "callback", exits_3)
    assert CliRunner().invoke(main, ["list"]).exit_code == 3
