"""The backbone registry: every entry builds and runs; weights come from where they should."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import llmclf
from llmclf import assets
from llmclf.errors import AssetError, UnknownNameError, UsageError
from llmclf.models.backbones import HF_URL, GPT2Builder
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.models.spec import backbone_entry
from llmclf.models.weights import hf_state_dict, resolve_pretrained


def build_backbone(name: str, weights="random", **kwargs):
    """The registered backbone ``name``, built by its registry entry."""
    return llmclf.backbones.get(name)(weights, **kwargs)


BIG = 50_000_000  # above this many parameters a backbone is checked on the meta device
PARAMETERS = {
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, so the user's real one never leaks into a test."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("name", llmclf.backbones.names())  # plugins included
def test_every_registered_backbone_builds_and_runs(name: str) -> None:
    builder = llmclf.backbones.get(name)
    ids = torch.tensor([[464, 3290, 318, 257], [40, 588, 0, 0]])
    with torch.device("meta"):  # structure only: shapes, no memory
        size = count(builder(weights="random"))
    if size > BIG:
        with torch.device("meta"):
            model = builder(weights="random")
            hidden = model(ids.to("meta"))
    else:
        model = builder(weights="random").eval()
        with torch.no_grad():
            hidden = model(ids)
        assert torch.isfinite(hidden).all()
    assert isinstance(model, backbone_entry(name).architecture.model_class)
    assert hidden.shape == (2, 4, model.config.n_embd)


@pytest.mark.parametrize(("name", "expected"), PARAMETERS.items())
def test_parameter_counts_without_a_head(name: str, expected: int) -> None:
    builder = llmclf.backbones.get(name)
    assert builder.url == HF_URL.format(repo=name.replace("gpt2-small", "gpt2"))
    with torch.device("meta"):
        assert count(builder(weights="random")) == expected


def test_builder_describes_its_size_without_building() -> None:
    tiny = llmclf.backbones.get("gpt2-tiny")
    assert tiny.config == GPT2Config(n_layer=2, n_embd=128, n_head=4)
    assert tiny.url is None
    assert llmclf.backbones.get("gpt2-xl").config.n_layer == 48
    assert "gpt2-tiny" in repr(tiny)


def test_random_weights_are_seeded_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = build_backbone("gpt2-tiny", seed=1), build_backbone("gpt2-tiny", seed=1)
    c = build_backbone("gpt2-tiny", seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.wte.weight, b.wte.weight)
    assert not torch.equal(a.wte.weight, c.wte.weight)
    # GPT-2's init: std 0.02, residual projections 0.02 / sqrt(2 * n_layer) = 0.01 here
    assert a.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert a.h[1].mlp.c_proj.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(a.h[0].ln_1.weight, torch.ones(128))
    assert torch.equal(a.h[0].attn.c_attn.bias, torch.zeros(384))


def test_an_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean 'gpt2-small'.*gpt2-tiny"):
        build_backbone("gpt2-smal")


def test_tiny_has_no_pretrained_weights() -> None:
    with pytest.raises(UsageError, match="'gpt2-tiny' has no pretrained weights; use --weights"):
        build_backbone("gpt2-tiny", "pretrained")


def test_a_bad_weights_argument_says_what_is_accepted(tmp_path: Path) -> None:
    accepted = "no such file or directory; pass 'random', 'pretrained' or the path"
    with pytest.raises(UsageError, match=f"weights 'pretrianed': {accepted}"):
        build_backbone("gpt2-tiny", "pretrianed")
    with pytest.raises(UsageError, match=accepted):
        build_backbone("gpt2-tiny", str(tmp_path / "nope" / "model.safetensors"))


@pytest.mark.parametrize("as_directory", [False, True])
def test_a_local_file_or_directory_loads(tmp_path: Path, as_directory: bool) -> None:
    source = build_backbone("gpt2-tiny", seed=5)
    save_file(hf_state_dict(source), tmp_path / "model.safetensors")
    loaded = build_backbone(
        "gpt2-tiny", tmp_path if as_directory else tmp_path / "model.safetensors"
    )
    expected, actual = source.state_dict(), loaded.state_dict()
    assert list(actual) == list(expected)
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name


def test_offline_pretrained_without_a_file_names_the_url_and_the_path(
    writable_home: Path, hf_cache: Path
) -> None:
    url = HF_URL.format(repo="gpt2")
    dest = writable_home / "backbones" / "gpt2-small" / "model.safetensors"
    with pytest.raises(AssetError) as info:
        build_backbone("gpt2-small", "pretrained")
    assert url in str(info.value)
    assert str(dest) in str(info.value)
    assert "LLMCLF_OFFLINE" in str(info.value)
    assert str(info.value).endswith("or pass a local model.safetensors with --weights PATH")
    assert not dest.exists()


def test_the_llmclf_cache_comes_first(writable_home: Path, hf_cache: Path) -> None:
    dest = writable_home / "backbones" / "gpt2-small" / "model.safetensors"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"placeholder")
    assert resolve_pretrained("gpt2-small", HF_URL.format(repo="gpt2")) == dest


def fake_hub_file(cache: Path, repo: str, commit: str = "0123abcd") -> Path:
    """The layout huggingface_hub leaves: refs/main -> snapshots/<commit>/file -> blobs/."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "blobs").mkdir()
    (folder / "snapshots" / commit).mkdir(parents=True)
    link = folder / "snapshots" / commit / "model.safetensors"
    link.symlink_to(folder / "blobs" / "e3b0c442")
    return folder / "blobs" / "e3b0c442"


def test_a_hugging_face_cache_holding_the_file_is_used(writable_home: Path, hf_cache: Path) -> None:
    blob = fake_hub_file(hf_cache, "openai-community/gpt2")
    blob.write_bytes(b"placeholder")
    found = resolve_pretrained("gpt2-small", HF_URL.format(repo="gpt2"))
    assert found.resolve() == blob.resolve()
    # another size's repository is not mistaken for it
    with pytest.raises(AssetError):
        resolve_pretrained("gpt2-medium", HF_URL.format(repo="gpt2-medium"))


def test_pretrained_weights_load_from_the_hugging_face_cache(
    writable_home: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://huggingface.co/someone/gpt2-mini/resolve/main/model.safetensors"
    mini = GPT2Builder("gpt2-mini", url=url, n_layer=1, n_embd=32, n_head=2, context_length=16)
    monkeypatch.setattr(llmclf.backbones, "_entries", dict(llmclf.backbones._entries))
    llmclf.backbones.register("gpt2-mini", mini, description="a plugin's size")
    source = build_backbone("gpt2-mini", seed=9)
    save_file(
        hf_state_dict(source, prefix="transformer."), fake_hub_file(hf_cache, "someone/gpt2-mini")
    )
    loaded = build_backbone("gpt2-mini", "pretrained")
    assert torch.equal(loaded.h[0].mlp.c_fc.weight, source.h[0].mlp.c_fc.weight)
    assert not (writable_home / "backbones").exists()  # nothing downloaded or copied


def test_a_download_lands_in_the_llmclf_cache_and_is_checked(
    writable_home: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served = tmp_path / "served.safetensors"
    source = GPT2(GPT2Config(vocab_size=30, context_length=8, n_embd=16, n_layer=1, n_head=2))
    save_file(hf_state_dict(source), served)
    fetched: list[str] = []

    def fake_fetch(url: str, dest: Path, what: str) -> None:
        fetched.append(url)
        dest.write_bytes(served.read_bytes())

    monkeypatch.setattr(assets, "_fetch", fake_fetch)
    monkeypatch.setenv("LLMCLF_OFFLINE", "0")
    url = "https://huggingface.co/someone/gpt2-mini/resolve/main/model.safetensors"
    sizes = {"vocab_size": 30, "context_length": 8, "n_embd": 16, "n_layer": 1, "n_head": 2}
    wrong = GPT2Builder("gpt2-mini", url=url, sha256="0" * 64, **sizes)
    with pytest.raises(AssetError, match="sha256"):
        wrong(weights="pretrained")
    dest = writable_home / "backbones" / "gpt2-mini" / "model.safetensors"
    assert not dest.exists()  # a bad download leaves nothing behind

    sha = hashlib.sha256(served.read_bytes()).hexdigest()
    model = GPT2Builder("gpt2-mini", url=url, sha256=sha, **sizes)(weights="pretrained")
    assert dest.is_file() and fetched == [url, url]
    assert torch.equal(model.wte.weight, source.wte.weight)
    GPT2Builder("gpt2-mini", url=url, sha256=sha, **sizes)(weights="pretrained")
    assert len(fetched) == 2  # the second build reads the cached file


def test_gpt2_small_pins_the_hash_of_the_hub_file() -> None:
    small = llmclf.backbones.get("gpt2-small")
    assert small.sha256 == "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707"
