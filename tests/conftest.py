"""Shared fixtures. Every test runs offline against the real files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: always present in CI, so a missing file is a failure, not a skip."""
    assert (SHARED_DATA / "sms_spam" / "SMSSpamCollection").is_file(), (
        f"real data files not found under {SHARED_DATA}; the repo must sit beside ../shared"
    )
    return SHARED_DATA


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    """No test touches the network; assets come from ../shared/data (read-only)."""
    monkeypatch.setenv("LLMCLF_HOME", str(shared_data))
    monkeypatch.setenv("LLMCLF_OFFLINE", "1")
    monkeypatch.delenv("LLMCLF_DEBUG", raising=False)


@pytest.fixture
def writable_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, writable LLMCLF_HOME."""
    home = tmp_path / "llmclf-home"
    home.mkdir()
    monkeypatch.setenv("LLMCLF_HOME", str(home))
    return home
