"""Small builders shared by the training / inference tests."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from llmclf import TrainConfig
from llmclf.reporting import Reporter

TOPICS = {
    "billing": ["invoice", "refund", "payment", "charged", "bill", "price"],
    "account": ["password", "login", "username", "locked", "email", "reset"],
    "hardware": ["printer", "screen", "keyboard", "battery", "cable", "mouse"],
}
FILLER = ["please", "help", "my", "the", "is", "not", "working", "today", "again", "why", "hi"]


def topic_frame(
    rows_per_class: int = 40, seed: int = 0, topics: dict | None = None
) -> pd.DataFrame:
    """A learnable multi-class dataset: each text mixes its class's words with filler."""
    rng = random.Random(seed)
    records = []
    for label, words in (topics or TOPICS).items():
        for _ in range(rows_per_class):
            tokens = rng.sample(words, 2) + rng.sample(FILLER, rng.randint(1, 6))
            rng.shuffle(tokens)
            records.append({"text": " ".join(tokens), "label": label})
    rng.shuffle(records)
    return pd.DataFrame.from_records(records)


def write_topic_csv(path: Path, rows_per_class: int = 40, seed: int = 0) -> Path:
    topic_frame(rows_per_class, seed).to_csv(path, index=False)
    return path


def tiny_fit_args(dataset: Path | str, output: Path, *extra: str) -> list[str]:
    """CLI arguments for a few-second fit of gpt2-tiny on a small file dataset."""
    return [
        "fit",
        "--dataset",
        str(dataset),
        "--backbone",
        "gpt2-tiny",
        "--weights",
        "random",
        "--trainable",
        "all",
        "--balance",
        "none",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--output",
        str(output),
        "--quiet",
        *extra,
    ]


def tiny_config(dataset: Path | str, output: Path | None = None, **changes) -> TrainConfig:
    """The Python-API twin of `tiny_fit_args`: a few-second gpt2-tiny config."""
    fields = {
        "dataset": str(dataset),
        "backbone": "gpt2-tiny",
        "weights": "random",
        "trainable": "all",
        "balance": "none",
        "epochs": 2,
        "batch_size": 16,
        "lr": 1e-3,
        "output": None if output is None else str(output),
    }
    return TrainConfig(**{**fields, **changes})


def fit_tiny_run(root: Path, rows_per_class: int, *extra: str) -> Path:
    """A trained 3-class run in ``root/run``, fitted through the CLI, for module fixtures.

    Module fixtures run outside the per-test offline fixture, so this sets it up itself.
    """
    from conftest import SHARED_DATA

    from llmclf.cli import main

    data = write_topic_csv(root / "tickets.csv", rows_per_class=rows_per_class)
    run = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCLF_HOME", str(SHARED_DATA))
        mp.setenv("LLMCLF_OFFLINE", "1")
        result = CliRunner().invoke(main, tiny_fit_args(data, run, *extra))
    assert result.exit_code == 0, result.output
    return run


class Collect(Reporter):
    """A reporter that keeps every training event, for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def event(self, name: str, **data) -> None:
        self.events.append((name, data))

    def messages(self) -> list[str]:
        return [d["text"] for e, d in self.events if e == "message"]


@contextmanager
def serve_directory(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """A static web server for ``directory`` on a free local port: (base URL, paths requested)."""
    requested: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet; record instead
            requested.append(self.path)

    handler = functools.partial(Handler, directory=str(directory))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", requested
        finally:
            server.shutdown()
            thread.join()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sigterm_once(args: list[str], marker: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``llmclf ARGS`` in a child process, send it SIGTERM as soon as ``marker`` exists,
    and return its exit status and standard error."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmclf", *args],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not marker.is_file():
        time.sleep(0.02)
    assert proc.poll() is None, f"llmclf ended before SIGTERM: {proc.stderr.read()}"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr
