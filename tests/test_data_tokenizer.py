"""The GPT-2 tokenizer from local, hash-checked files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from llmclf import assets, settings
from llmclf.data import tokenizer as tokenizer_module
from llmclf.data.tokenizer import BASE_URL, Tokenizer, get_tokenizer
from llmclf.errors import AssetError


@pytest.fixture
def tokenizer() -> Tokenizer:
    return get_tokenizer()


def test_encodes_like_gpt2(tokenizer: Tokenizer) -> None:
    assert tokenizer.name == "gpt2" and tokenizer.pad_id == 50256
    assert tokenizer.encode("Hello, world") == [15496, 11, 995]
    assert tokenizer.decode(tokenizer.encode("naïve café 🙂")) == "naïve café 🙂"


def test_endoftext_in_a_text_is_plain_text(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("a <|endoftext|> b")
    assert tokenizer.pad_id not in ids
    assert tokenizer.decode(ids) == "a <|endoftext|> b"
    assert tokenizer.encode_batch(["<|endoftext|>", ""]) == [tokenizer.encode("<|endoftext|>"), []]


def test_same_ids_as_tiktokens_own_gpt2(
    tokenizer: Tokenizer, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktoken

    # tiktoken's cache: file name = sha1 of the URL; no network needed
    for name in ("encoder.json", "vocab.bpe"):
        key = hashlib.sha1(f"{BASE_URL}/{name}".encode()).hexdigest()
        shutil.copyfile(shared_data / "gpt2" / name, tmp_path / key)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    reference = tiktoken.get_encoding("gpt2")
    texts = ["Hello world", "  spaces\tand\ttabs\n", "It's 2024! ¿Qué tal? 東京 🙂", "x" * 300]
    assert tokenizer.encode_batch(texts) == reference.encode_ordinary_batch(texts)


def test_get_tokenizer_is_cached_per_directory(tokenizer: Tokenizer) -> None:
    assert get_tokenizer() is tokenizer
    assert tokenizer.directory == settings.gpt2_bpe_dir()


def test_save_and_from_dir_round_trip(tokenizer: Tokenizer, tmp_path: Path) -> None:
    names = tokenizer.save(tmp_path)
    assert sorted(names) == ["encoder.json", "vocab.bpe"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary files left
    loaded = Tokenizer.from_dir(tmp_path)
    assert loaded.encode("same ids") == tokenizer.encode("same ids")
    assert loaded.directory == tmp_path


def test_from_dir_checks_files(tokenizer: Tokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path)
    (tmp_path / "vocab.bpe").unlink()
    with pytest.raises(AssetError, match=r"vocab\.bpe is missing"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n", "utf-8")
    with pytest.raises(AssetError, match="expected GPT-2's"):
        Tokenizer.from_dir(tmp_path)


def test_offline_with_a_missing_file_names_url_and_path(writable_home: Path) -> None:
    with pytest.raises(AssetError) as info:
        get_tokenizer()
    message = str(info.value)
    assert f"{BASE_URL}/encoder.json" in message
    assert str(writable_home / "gpt2" / "encoder.json") in message
    assert "LLMCLF_OFFLINE" in message


def test_online_downloads_into_the_home(
    writable_home: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCLF_OFFLINE", "0")
    fetched = []

    def fake_fetch(url: str, dest: Path, what: str) -> None:
        fetched.append(url)
        shutil.copyfile(shared_data / "gpt2" / url.rsplit("/", 1)[-1], dest)

    monkeypatch.setattr(assets, "_fetch", fake_fetch)
    monkeypatch.setattr(tokenizer_module, "_by_directory", {})
    tokenizer = get_tokenizer()
    assert fetched == [f"{BASE_URL}/encoder.json", f"{BASE_URL}/vocab.bpe"]
    assert tokenizer.directory == writable_home / "gpt2"
    assert tokenizer.encode("Hello, world") == [15496, 11, 995]
