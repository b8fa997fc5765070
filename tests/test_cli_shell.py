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


def test_click_usage_error_exits_2() -> None:
    result = CliRunner().invoke(main, ["list", "nonsense"])
    assert result.exit_code == 2


def test_debug_flag_shows_the_exception() -> None:
    result = CliRunner().invoke(main, ["--debug", "_fail"])
    assert isinstance(result.exception, DataError)


def test_help_does_not_import_torch() -> None:
    code = "import sys; from llmclf.cli import main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
