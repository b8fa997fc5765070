"""Checkpoint files: safetensors written from the model's own memory, tied weights included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import torch

from llmclf.assets import atomic_write_text
from llmclf.runs.checkpoint import load_tensors, save_tensors


def test_tied_weights_save_and_load_with_their_values(tmp_path: Path) -> None:
    embedding = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied, as a language-model head often is
    tensors = {"wte.weight": embedding.weight, "head.weight": head.weight, "other": torch.ones(3)}
    save_tensors(tmp_path / "m.safetensors", tensors)
    loaded = load_tensors(tmp_path / "m.safetensors")
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor.detach()), name


def test_untied_weights_are_written_without_a_copy(tmp_path: Path, monkeypatch) -> None:
    clones = []
    original = torch.Tensor.clone

    def counting_clone(self, *args, **kwargs):
        clones.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "clone", counting_clone)
    weights = {"a": torch.randn(3, 2), "b": torch.randn(5)}
    save_tensors(tmp_path / "m.safetensors", weights)
    assert clones == []
    assert torch.equal(load_tensors(tmp_path / "m.safetensors")["a"], weights["a"])


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "llmclf.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "llmclf.json").stat().st_mode) == 0o644


def test_model_weights_get_the_usual_permissions(tmp_path: Path) -> None:
    """safetensors re-creates the file it writes; the mode must still follow the umask."""
    old = os.umask(0o022)
    try:
        save_tensors(tmp_path / "model.safetensors", {"w": torch.ones(2)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o644
