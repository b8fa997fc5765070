"""GPT-2's byte-pair encoding (tiktoken ``gpt2``), built from local files, never a hidden download.

The two BPE files (``encoder.json``, ``vocab.bpe``) live in ``$LLMCLF_HOME/gpt2/``, are checked
against the sha256 that tiktoken itself pins, and are copied into every run directory, so a
trained model encodes text with no network at all.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import assets, settings
from ..errors import AssetError, UsageError

if TYPE_CHECKING:
    import tiktoken

    from .hf_tokenizer import HFTokenizer

BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main"
FILES: dict[str, str] = {  # file name -> sha256 (the hashes tiktoken checks)
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
SIZES = {"encoder.json": 1_042_301, "vocab.bpe": 456_318}
ASSETS = tuple(  # what `llmclf download gpt2-bpe` fetches, into $LLMCLF_HOME/gpt2/
    assets.Asset(f"gpt2/{name}", f"{BASE_URL}/{name}", sha256, SIZES[name], what=f"GPT-2 {name}")
    for name, sha256 in FILES.items()
)
ENDOFTEXT = "<|endoftext|>"
PAD_ID = 50256  # <|endoftext|>, GPT-2's only special token
VOCAB_SIZE = 50257

# GPT-2's pre-tokenisation regex as released by OpenAI; tiktoken's faster equivalent is used
# when the installed tiktoken has it.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

_lock = threading.Lock()
_encoding: tiktoken.Encoding | None = None  # every valid file pair is the same pair: build once
_by_directory: dict[Path, Tokenizer] = {}


class Tokenizer:
    """Text -> GPT-2 token ids. Special-token strings in a text are encoded as plain text."""

    name: str = "gpt2"
    pad_id: int = PAD_ID
    vocab_size: int = VOCAB_SIZE

    def __init__(self, encoding: tiktoken.Encoding, directory: Path) -> None:
        self._encoding = encoding
        self.directory = Path(directory)  # where the BPE files came from (what save() copies)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; ``"<|endoftext|>"`` inside it is ordinary text."""
        return self._encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts at once (tiktoken encodes them in parallel threads)."""
        return self._encoding.encode_ordinary_batch(list(texts))

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` (bytes that do not form UTF-8 become U+FFFD)."""
        return self._encoding.decode(list(ids))

    def save(self, directory: Path) -> list[str]:
        """Copy the BPE files into ``directory`` (atomically); return their file names."""
        directory = Path(directory)
        for file_name in FILES:
            with assets.atomic_path(directory / file_name) as tmp:
                shutil.copyfile(self.directory / file_name, tmp)
        return list(FILES)

    @classmethod
    def from_dir(cls, directory: Path) -> Tokenizer:
        """Load from a directory holding ``encoder.json`` and ``vocab.bpe``; no network.

        Raises `AssetError` when a file is missing or is not GPT-2's (sha256 check).
        """
        directory = Path(directory)
        for file_name, sha256 in FILES.items():
            path = directory / file_name
            if not path.is_file():
                raise AssetError(
                    f"tokenizer file {path} is missing; copy GPT-2's {file_name} there "
                    f"(from {BASE_URL}/{file_name} or {settings.gpt2_bpe_dir()})"
                )
            if (actual := assets.sha256_of(path)) != sha256:
                raise AssetError(
                    f"tokenizer file {path} has sha256 {actual}, expected GPT-2's {sha256}; "
                    f"replace it with {BASE_URL}/{file_name}"
                )
        return cls(_gpt2_encoding(directory), directory)

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, directory={str(self.directory)!r})"


def get_tokenizer(name: str = "gpt2", directory: Path | None = None) -> Tokenizer | HFTokenizer:
    """The tokenizer ``name`` (a backbone registry entry's ``tokenizer``): ``"gpt2"``, GPT-2's
    BPE from ``$LLMCLF_HOME/gpt2/``, downloading its files if needed; ``"tokenizer.json"``, the
    model's own from ``directory`` (`llmclf.data.hf_tokenizer.HFTokenizer`).

    Present files are hash-checked. With ``LLMCLF_OFFLINE=1`` a missing file is an
    `AssetError` naming its URL and where to put it. One instance per directory. Another name
    is a `UsageError`.
    """
    from .hf_tokenizer import FILE_NAME, HFTokenizer

    if name == FILE_NAME and directory is not None:
        return HFTokenizer.from_dir(Path(directory))
    if name != Tokenizer.name:
        raise UsageError(
            f"unknown tokenizer {name!r}; llmclf builds {Tokenizer.name!r} and "
            f"{FILE_NAME!r} (with the directory holding it)"
        )
    directory = settings.gpt2_bpe_dir()
    key = directory.expanduser().resolve()
    with _lock:
        if key in _by_directory:
            return _by_directory[key]
    for asset in ASSETS:
        assets.fetch(asset)
    tokenizer = Tokenizer.from_dir(directory)
    with _lock:
        return _by_directory.setdefault(key, tokenizer)


def _gpt2_encoding(directory: Path) -> tiktoken.Encoding:
    """Build tiktoken's ``gpt2`` Encoding from hash-checked local files (once per process)."""
    global _encoding
    with _lock:
        if _encoding is None:
            import tiktoken
            from tiktoken.load import data_gym_to_mergeable_bpe_ranks

            try:
                ranks = data_gym_to_mergeable_bpe_ranks(
                    vocab_bpe_file=str(directory / "vocab.bpe"),
                    encoder_json_file=str(directory / "encoder.json"),
                    vocab_bpe_hash=FILES["vocab.bpe"],
                    encoder_json_hash=FILES["encoder.json"],
                )
            except (OSError, ValueError, AssertionError) as exc:
                raise AssetError(
                    f"cannot build the GPT-2 tokenizer from {directory}: {exc}; "
                    f"replace its files with {BASE_URL}/encoder.json and {BASE_URL}/vocab.bpe"
                ) from exc
            _encoding = tiktoken.Encoding(
                name="gpt2",
                pat_str=_pattern(),
                mergeable_ranks=ranks,
                special_tokens={ENDOFTEXT: PAD_ID},
                explicit_n_vocab=VOCAB_SIZE,
            )
        return _encoding


def _pattern() -> str:
    try:
        from tiktoken_ext.openai_public import r50k_pat_str
    except ImportError:  # older tiktoken
        return GPT2_PATTERN
    return r50k_pat_str
