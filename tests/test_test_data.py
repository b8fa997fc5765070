"""Where the suite finds its data (tests/conftest.py), proved on a bare clone in a temporary folder.

Each test runs pytest in a subprocess on a copy of ``tests/conftest.py`` and one small test,
in a folder with no ``../shared`` beside it, so only the environment decides where data comes from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import serve_directory, sha256

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
def test_reads_the_data(shared_data):
    assert (shared_data / "sms_spam" / "SMSSpamCollection").stat().st_size == 477_907
"""


def run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on a bare clone (conftest + PROBE) with only ``env`` deciding where data is."""
    clone = tmp_path / "clone"
    if not clone.exists():
        (clone / "tests").mkdir(parents=True)
        shutil.copyfile(ROOT / "tests" / "conftest.py", clone / "tests" / "conftest.py")
        (clone / "tests" / "test_probe.py").write_text(PROBE)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCLF_", "CI", "HF_"))}
    full = {**keep, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache"), **env}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=clone,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_data_or_network_the_run_stops_at_once_with_one_message(tmp_path: Path) -> None:
    result = run_suite(tmp_path, LLMCLF_OFFLINE="1")
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert output.count("Provide them in one of three ways") == 1, output
    for way in ("LLMCLF_TEST_DATA=DIR", "../shared/data", "llmclf download sms gpt2-bpe --home"):
        assert way in output
    assert "sms_spam/SMSSpamCollection" in output
    assert "passed" not in output and "failed" not in output and "error" not in output.lower()


def test_test_data_from_the_environment_variable(tmp_path: Path, shared_data: Path) -> None:
    result = run_suite(tmp_path, LLMCLF_TEST_DATA=str(shared_data), CI="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_an_incomplete_data_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "data" / "gpt2").mkdir(parents=True)
    result = run_suite(tmp_path, LLMCLF_TEST_DATA=str(tmp_path / "data"))
    assert result.returncode == 4
    assert f"LLMCLF_TEST_DATA is {tmp_path / 'data'}, which lacks" in result.stdout


def test_first_run_fills_the_test_cache_then_reuses_it(tmp_path: Path, shared_data: Path) -> None:
    cache = tmp_path / "cache" / "llmclf-test-data"
    with serve_directory(shared_data) as (url, requested):
        first = run_suite(tmp_path, LLMCLF_MIRROR=url)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "first run: downloading the test data" in first.stdout
        assert len(requested) == 3
        names = ("sms_spam/SMSSpamCollection", "gpt2/encoder.json", "gpt2/vocab.bpe")
        assert all(sha256(cache / n) == sha256(shared_data / n) for n in names)
        second = run_suite(tmp_path, LLMCLF_MIRROR=url)
        assert second.returncode == 0, second.stdout + second.stderr
        assert len(requested) == 3  # reused, not downloaded again


def test_under_ci_a_missing_copy_fails_and_nothing_is_downloaded(
    tmp_path: Path, shared_data: Path
) -> None:
    with serve_directory(shared_data) as (url, requested):
        result = run_suite(tmp_path, LLMCLF_MIRROR=url, CI="true")
    assert result.returncode == 4
    assert "CI is set, and under CI the tests never download" in result.stdout
    assert requested == []
    assert not (tmp_path / "cache").exists()


def test_an_unreachable_source_is_named_before_any_download(tmp_path: Path) -> None:
    """Without network the first-run download waited 16-27 s on DNS before its message."""
    result = run_suite(tmp_path, LLMCLF_MIRROR="http://llmclf-no-such-host.invalid/data")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "llmclf-no-such-host.invalid:80 cannot be reached" in result.stdout
    assert "Provide them in one of three ways" in result.stdout
    assert "first run: downloading" not in result.stdout
