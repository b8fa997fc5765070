"""Hugging Face hub files of the Llama/Qwen3 backbones: HF_TOKEN as a bearer token, gated models'
refusal in one line, files under $LLMCLF_HOME/backbones/<name>/ (a local server as the hub)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

import llmclf
from llmclf.cli import main
from llmclf.errors import AssetError

TOKEN = "hf_test_token"


@contextmanager
def fake_hub(token: str) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A hub on a local port that answers 401 unless ``Authorization: Bearer <token>``; with
    it, every file is a few bytes. Yields its URL and the (path, Authorization) requests."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            seen.append((self.path, auth))
            body = b"unauthorized" if auth != f"Bearer {token}" else self.path.encode()
            self.send_response(401 if auth != f"Bearer {token}" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", seen
        finally:
            server.shutdown()
            thread.join()


@pytest.fixture
def hub_env(writable_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMCLF_OFFLINE", "0")
    monkeypatch.delenv("LLMCLF_MIRROR", raising=False)
    monkeypatch.delenv("LLMCLF_HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return writable_home


def test_a_gated_model_refused_says_how_to_get_access(
    hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_hub(TOKEN) as (url, seen):
        monkeypatch.setenv("HF_ENDPOINT", url)
        result = CliRunner().invoke(main, ["download", "llama-3.2-1b"])
    assert result.exit_code == 1
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert "refused access (HTTP 401, HF_TOKEN is not set)" in message
    assert "accept the licence on https://huggingface.co/meta-llama/Llama-3.2-1B" in message
    assert "set HF_TOKEN" in message
    repo = "/meta-llama/Llama-3.2-1B/resolve/main/"
    files = ("model.safetensors", "config.json", "tokenizer.json")  # each tried, all reported
    assert sorted(seen) == sorted((repo + name, None) for name in files)
    assert not (hub_env / "backbones" / "llama-3.2-1b").exists()  # nothing half-written


def test_hf_token_is_sent_as_a_bearer_token(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with fake_hub(TOKEN) as (url, seen):
        monkeypatch.setenv("HF_ENDPOINT", url)
        paths = llmclf.download("smollm2-135m", hub_env)
    folder = hub_env / "backbones" / "smollm2-135m"
    assert sorted(p.name for p in paths) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert all(p.parent == folder for p in paths)
    repo = "/HuggingFaceTB/SmolLM2-135M/resolve/main/"
    assert (folder / "tokenizer.json").read_bytes() == f"{repo}tokenizer.json".encode()
    assert {auth for _, auth in seen} == {f"Bearer {TOKEN}"}


def test_a_wrong_token_is_named_in_the_refusal(
    hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "stale")
    with fake_hub(TOKEN) as (url, _), pytest.raises(AssetError) as info:
        monkeypatch.setenv("HF_ENDPOINT", url)
        llmclf.download("qwen3-0.6b", hub_env)
    assert "HTTP 401, with the HF_TOKEN sent" in str(info.value)
    assert "set HF_TOKEN to a token that may read it" in str(info.value)


def test_the_token_never_goes_to_a_mirror(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LLMCLF_MIRROR is someone's web server, not the hub: HF_TOKEN stays home."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    with fake_hub("another") as (url, seen), pytest.raises(AssetError):
        monkeypatch.setenv("LLMCLF_MIRROR", url)
        llmclf.download("smollm2-135m", hub_env)
    assert seen and all(auth is None for _, auth in seen)


def test_download_list_shows_a_backbones_hub_files(hub_env: Path) -> None:
    from llmclf.downloads import cached

    result = CliRunner().invoke(main, ["download", "--list", "qwen3-1.7b"])
    assert result.exit_code == 0, result.output
    assert "0 of 5 files cached" in result.output
    assert [row.path.relative_to(hub_env).as_posix() for row in cached(["qwen3-1.7b"])] == [
        f"backbones/qwen3-1.7b/{name}"
        for name in (
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "config.json",
            "tokenizer.json",
        )
    ]
