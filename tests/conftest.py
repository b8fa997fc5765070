"""Shared fixtures. Every test runs offline against the real data files, found in one place.

The data directory (laid out like ``$LLMCLF_HOME``) is, in this order:

1. ``$LLMCLF_TEST_DATA`` when set;
2. ``../shared/data`` beside the repository (our CI);
3. a per-user test cache, ``$XDG_CACHE_HOME/llmclf-test-data`` (``~/.cache/...``), filled on
   the first run by llmclf's own downloader (pinned hashes, atomic writes, progress bars; from
   ``$LLMCLF_MIRROR`` when set; each host is first given a few seconds to answer, so without
   network the message comes at once). Not under ``CI`` or ``LLMCLF_OFFLINE``: there a missing copy
   stops the run.

Without any of them the session stops at once with one message saying how to provide the files.
The IMDb archive (84 MB) is not needed by every test: the ``imdb_archive`` fixture finds it the
same way, and downloads it into the test cache only when a test that asks for it runs.
Tests only read that directory; tests that write use ``writable_home`` or a temporary copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("sms", "gpt2-bpe")  # what the suite reads; `llmclf download` names
NEEDED_FILES = ("sms_spam/SMSSpamCollection", "gpt2/encoder.json", "gpt2/vocab.bpe")
FIRST_RUN_SIZE = "about 2 MB"  # SMSSpamCollection 478 kB, encoder.json 1.04 MB, vocab.bpe 456 kB
NOT_FOUND_EXIT = 4  # pytest's own code for a usage error
REACH_TIMEOUT = 5.0  # seconds to reach the first-run download's hosts before giving up


def user_test_cache() -> Path:
    """The per-user test cache: ``$XDG_CACHE_HOME/llmclf-test-data`` or ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "llmclf-test-data"


def locate_test_data() -> tuple[Path, str]:
    """Where the data is (or will be downloaded to), and how it was chosen."""
    if os.environ.get("LLMCLF_TEST_DATA"):
        return Path(os.environ["LLMCLF_TEST_DATA"]).expanduser().resolve(), "LLMCLF_TEST_DATA"
    beside = ROOT.parent / "shared" / "data"
    if beside.is_dir():
        return beside, "../shared/data"
    return user_test_cache(), "test cache"


def missing_files(directory: Path) -> list[str]:
    return [name for name in NEEDED_FILES if not (directory / name).is_file()]


SHARED_DATA, HOW = locate_test_data()


def _no_data_message(reason: str) -> str:
    return (
        f"llmclf's tests need the real data files {', '.join(NEEDED_FILES)}: {reason}.\n"
        "Provide them in one of three ways:\n"
        "  1. LLMCLF_TEST_DATA=DIR, a directory laid out like $LLMCLF_HOME that holds them;\n"
        "  2. a checkout beside ../shared/data (our CI);\n"
        f"  3. network access on the first run, outside CI: the tests download them "
        f"({FIRST_RUN_SIZE}) into {user_test_cache()}\n"
        f"     (or run `llmclf download {' '.join(NEEDED)} --home {user_test_cache()}`; "
        "LLMCLF_MIRROR names a mirror)."
    )


def _fill_test_cache(config: pytest.Config) -> str | None:
    """Download the files into the test cache; return why that is not possible, or None."""
    if os.environ.get("CI"):
        return "CI is set, and under CI the tests never download"
    if os.environ.get("LLMCLF_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "LLMCLF_OFFLINE is set, so they cannot be downloaded"
    from llmclf.downloads import download
    from llmclf.errors import LlmclfError

    try:
        unreachable = _unreachable_source()
    except LlmclfError as exc:  # e.g. a malformed LLMCLF_MIRROR
        return f"they cannot be downloaded: {exc}"
    if unreachable:
        return unreachable
    capture = config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():  # show the progress bars
            print(f"\nfirst run: downloading the test data ({FIRST_RUN_SIZE}) into {SHARED_DATA}")
            download(NEEDED, home=SHARED_DATA)
    except LlmclfError as exc:
        return f"downloading them into {SHARED_DATA} failed: {exc}"
    return None


def _unreachable_source(timeout: float = REACH_TIMEOUT) -> str | None:
    """Why a host the data comes from cannot be reached within ``timeout`` seconds, or None.

    Without network, name resolution alone can take half a minute (a socket timeout does not
    bound it), so each host is tried in a thread that is given up on after ``timeout``.
    """
    import socket
    import threading
    import urllib.parse

    from llmclf.downloads import resolve

    sources = {a.source() for item in resolve(NEEDED) for a in item.assets}
    hosts = set()
    for url in sources:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname:
            hosts.add((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    for host, port in sorted(hosts):
        failure: list[str] = ["no answer"]

        def connect(host: str = host, port: int = port, failure: list[str] = failure) -> None:
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                failure.clear()
            except OSError as exc:
                failure[:] = [str(exc)]

        probe = threading.Thread(target=connect, daemon=True)
        probe.start()
        probe.join(timeout)
        if probe.is_alive() or failure:
            why = f"no answer within {timeout:g} s" if probe.is_alive() else failure[0]
            return f"{host}:{port} cannot be reached ({why}), so they cannot be downloaded"
    return None


def pytest_collection(session: pytest.Session) -> None:
    """Find the data, or fill the test cache, or stop the whole run with one message."""
    missing = missing_files(SHARED_DATA)
    if not missing:
        return
    if HOW != "test cache":
        reason = f"{HOW} is {SHARED_DATA}, which lacks {', '.join(missing)}"
    else:
        reason = _fill_test_cache(session.config)
    if reason is not None:
        pytest.exit(_no_data_message(reason), returncode=NOT_FOUND_EXIT)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data files (read-only); see the module docstring for where they come from."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def imdb_archive(pytestconfig: pytest.Config) -> Path:
    """The real IMDb archive (84 MB), fetched into the test cache only when a test asks for it."""
    path = SHARED_DATA / "imdb" / "aclImdb_v1.tar.gz"
    if path.is_file():
        return path
    reason = f"{HOW} is {SHARED_DATA}, which lacks imdb/aclImdb_v1.tar.gz"
    if HOW == "test cache" and not os.environ.get("CI"):  # under CI the tests never download
        from llmclf.downloads import download
        from llmclf.errors import LlmclfError

        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        try:
            with capture.global_and_fixture_disabled():
                download("imdb", home=SHARED_DATA)
            return path
        except LlmclfError as exc:
            reason = f"downloading it into {SHARED_DATA} failed: {exc}"
    pytest.fail(
        f"this test needs the IMDb archive: {reason}; run `llmclf download imdb --home "
        f"{SHARED_DATA}`"
    )


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    """No test touches the network; assets come from the test data directory (read-only)."""
    monkeypatch.setenv("LLMCLF_HOME", str(shared_data))
    monkeypatch.setenv("LLMCLF_OFFLINE", "1")
    for name in ("LLMCLF_DEBUG", "LLMCLF_MIRROR", "LLMCLF_HF_ENDPOINT", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def writable_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, writable LLMCLF_HOME."""
    home = tmp_path / "llmclf-home"
    home.mkdir()
    monkeypatch.setenv("LLMCLF_HOME", str(home))
    return home
