"""The training loop hands freed heap memory back to the system as it goes (issue 14: a long
``--pack`` fit's resident memory crept up with the many batch shapes it frees)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import tiny_config, write_topic_csv

import llmclf.training.loop as loop
from llmclf import Trainer
from llmclf.memory import RELEASE_EVERY, release_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_is_released_on_linux() -> None:
    assert release_freed_memory() is True


def test_the_loop_releases_freed_memory_every_few_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(loop, "release_freed_memory", lambda: calls.append(1) or True)
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=60)
    config = tiny_config(data, tmp_path / "run", batch_size=4, epochs=1, pack=True)
    trainer = Trainer(config)
    batches: list[int] = []
    original = loop.TrainingLoop._logits

    def counted(self, *args):
        batches.append(1)
        return original(self, *args)

    monkeypatch.setattr(loop.TrainingLoop, "_logits", counted)
    trainer.fit()
    assert len(batches) >= 2 * RELEASE_EVERY  # training and evaluation batches both count
    assert len(calls) == len(batches) // RELEASE_EVERY
