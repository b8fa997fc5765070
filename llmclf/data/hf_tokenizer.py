"""The tokenizer of a Hugging Face model: its ``tokenizer.json``, run by the `tokenizers` library.

Modern backbones (SmolLM2, Llama 3, Qwen3) ship one ``tokenizer.json`` that holds the whole
pipeline (normalizer, pre-tokenizer, BPE, post-processor); Hugging Face's own Rust library runs
it exactly as ``transformers`` does. `HFTokenizer` gives it the interface of GPT-2's
`llmclf.data.tokenizer.Tokenizer` (``encode_batch``, ``pad_id``, ``name``, ``save``,
``from_dir``), so the data pipeline and the classifier need not know which one they hold.

Special tokens, chosen so that a text's last real token is always its own:

- **Leading** special tokens the model's post-processor adds (Llama 3's ``<|begin_of_text|>``)
  are kept: the model was trained with them and they only precede the text.
- **Trailing** ones (an ``</s>`` or EOS some post-processors append) are never added: last-token
  pooling must read the text's last token, not a marker that is the same for every text.
- Special-token strings inside a text (``"<|im_end|>"`` typed by a user) are encoded as plain
  text, as GPT-2's tokenizer does here, never as control tokens.
- Padding uses the model's pad token; when it has none, its end-of-text token (see
  `find_pad_token`). Padding comes after the last real token, so with causal attention and
  last-token pooling its id changes nothing.

A run directory gets ``tokenizer.json`` (copied byte for byte) and a small
``tokenizer_config.json`` naming the pad token, so a trained model tokenizes offline exactly as
it did in training, and ``transformers`` can read the same directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import assets
from ..errors import AssetError

if TYPE_CHECKING:
    import tokenizers

    from .tokenizer import Tokenizer

FILE_NAME = "tokenizer.json"
CONFIG_NAME = "tokenizer_config.json"  # Hugging Face's: pad_token, eos_token, ...
MODEL_CONFIG_NAME = "config.json"  # the model's: pad_token_id, eos_token_id
# End-of-text tokens of common vocabularies, tried in order when nothing names the pad token.
END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>")


class HFTokenizer:
    """Text -> token ids with a ``tokenizer.json``; special tokens as the module docstring says.

    Args:
        tokenizer: the loaded `tokenizers.Tokenizer`.
        directory: where ``tokenizer.json`` came from (what `save` copies).
        pad_id: the id padding uses.
    """

    name: str = FILE_NAME  # the kind of tokenizer, as the run's manifest records it

    def __init__(self, tokenizer: tokenizers.Tokenizer, directory: Path, *, pad_id: int) -> None:
        tokenizer.no_truncation()  # a tokenizer.json may carry its own; llmclf truncates itself
        tokenizer.no_padding()
        tokenizer.encode_special_tokens = True  # "<|endoftext|>" in a text is plain text
        self._tokenizer = tokenizer
        self.directory = Path(directory)
        self.pad_id = pad_id
        self.vocab_size: int = tokenizer.get_vocab_size(with_added_tokens=True)
        self.prefix: list[int] = _leading_special_ids(tokenizer)  # e.g. [<|begin_of_text|>]

    @property
    def pad_token(self) -> str:
        """The pad token's text."""
        return self._tokenizer.id_to_token(self.pad_id)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: the leading special tokens, then the text's own tokens."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts at once (the Rust library encodes them in parallel)."""
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [self.prefix + e.ids for e in encoded]

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``, special tokens included."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def save(self, directory: Path) -> list[str]:
        """Copy ``tokenizer.json`` and write ``tokenizer_config.json`` (the pad token) into
        ``directory``, atomically; return their file names."""
        directory = Path(directory)
        with assets.atomic_path(directory / FILE_NAME) as tmp:
            shutil.copyfile(self.directory / FILE_NAME, tmp)
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": self.pad_token}
        assets.atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        return [FILE_NAME, CONFIG_NAME]

    @classmethod
    def from_dir(cls, directory: Path, *, pad_token: str | None = None) -> HFTokenizer:
        """Load ``directory/tokenizer.json``; no network. ``pad_token`` overrides the choice of
        `find_pad_token`. A missing or unreadable file raises `AssetError`."""
        from tokenizers import Tokenizer as RustTokenizer

        directory = Path(directory)
        path = directory / FILE_NAME
        if not path.is_file():
            raise AssetError(
                f"tokenizer file {path} is missing; copy the model's tokenizer.json there "
                "(from its Hugging Face repository)"
            )
        try:
            tokenizer = RustTokenizer.from_file(str(path))
        except Exception as exc:  # the Rust library raises a bare Exception
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AssetError(
                f"cannot read {path} as a tokenizer.json ({reason}); download it again"
            ) from exc
        pad = pad_token if pad_token is not None else find_pad_token(tokenizer, directory)
        pad_id = tokenizer.token_to_id(pad)
        if pad_id is None:
            raise AssetError(f"the pad token {pad!r} is not in the vocabulary of {path}")
        return cls(tokenizer, directory, pad_id=pad_id)

    def __repr__(self) -> str:
        return f"HFTokenizer(directory={str(self.directory)!r}, pad_token={self.pad_token!r})"


def find_pad_token(tokenizer: tokenizers.Tokenizer, directory: Path) -> str:
    """The token padding uses, from the files beside ``tokenizer.json``.

    In order: ``tokenizer_config.json``'s ``pad_token``; ``config.json``'s ``pad_token_id``;
    then the end-of-text token: ``tokenizer_config.json``'s ``eos_token``, ``config.json``'s
    ``eos_token_id`` (the first, if a list), or the first of `END_OF_TEXT` in the vocabulary.
    """
    tok_config = _read_json(directory / CONFIG_NAME)
    model_config = _read_json(directory / MODEL_CONFIG_NAME)
    candidates = (
        _token_text(tok_config.get("pad_token")),
        _id_text(tokenizer, model_config.get("pad_token_id")),
        _token_text(tok_config.get("eos_token")),
        _id_text(tokenizer, model_config.get("eos_token_id")),
        *(t for t in END_OF_TEXT if tokenizer.token_to_id(t) is not None),
    )
    for candidate in candidates:
        if candidate is not None:
            return candidate
    raise AssetError(
        f"the tokenizer in {directory} names no pad or end-of-text token; add a "
        f'"pad_token" to {directory / CONFIG_NAME}'
    )


def _leading_special_ids(tokenizer: tokenizers.Tokenizer) -> list[int]:
    """The ids the post-processor puts before a text (not after it)."""
    probe = "a"
    plain = tokenizer.encode(probe, add_special_tokens=False).ids
    full = tokenizer.encode(probe, add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # an AddedToken as older tokenizer_config.json files store it
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _id_text(tokenizer: tokenizers.Tokenizer, value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return tokenizer.id_to_token(value)
    return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AssetError(f"cannot read {path} ({exc}); download it again") from exc
    return data if isinstance(data, dict) else {}


def tokenizer_from_dir(directory: Path) -> HFTokenizer | Tokenizer:
    """The tokenizer a directory holds: its ``tokenizer.json`` if there is one, otherwise
    GPT-2's BPE files (`llmclf.data.tokenizer.Tokenizer`)."""
    from .tokenizer import Tokenizer

    if (Path(directory) / FILE_NAME).is_file():
        return HFTokenizer.from_dir(directory)
    return Tokenizer.from_dir(directory)
