"""Resume saves and restores every random generator training draws from (CPU, CUDA, MPS)."""

from __future__ import annotations

import torch

from llmclf.training import loop


def test_the_cpu_generator_round_trips() -> None:
    torch.manual_seed(1)
    saved = loop.rng_state()
    expected = torch.rand(3)
    torch.manual_seed(2)
    loop.set_rng_state(dict(saved))
    assert torch.equal(torch.rand(3), expected)


def test_cuda_generators_are_saved_and_restored_per_device(monkeypatch) -> None:
    states = [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)]
    restored: dict[int, torch.Tensor] = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.__setitem__(i, s))
    monkeypatch.setattr(loop, "_mps_available", lambda: False)
    saved = loop.rng_state()
    assert set(saved) == {"rng.cpu", "rng.cuda.0", "rng.cuda.1"}
    tensors = {**saved, "state.0.exp_avg": torch.zeros(1)}
    loop.set_rng_state(tensors)
    assert restored == {0: states[0], 1: states[1]}
    assert set(tensors) == {"state.0.exp_avg"}  # the optimizer's tensors are left


def test_the_mps_generator_is_saved(monkeypatch) -> None:
    state = torch.tensor([3], dtype=torch.uint8)
    restored: list[torch.Tensor] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(loop, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: state)
    monkeypatch.setattr(torch.mps, "set_rng_state", restored.append)
    saved = loop.rng_state()
    assert set(saved) == {"rng.cpu", "rng.mps"}
    loop.set_rng_state(dict(saved))
    assert restored == [state]


def test_a_resume_file_from_an_older_version_holds_only_the_cpu_generator(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    called: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: called.append(i))
    loop.set_rng_state({"rng.cpu": torch.get_rng_state()})
    assert called == []  # the CUDA generator keeps its seed
