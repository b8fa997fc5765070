"""The built-in Llama-family and Qwen3 backbones, and backbones from a local Hugging Face directory.

Every size of `llmclf.models.hf_sizes.SIZES` is registered as an `HFBuilder`, exactly as a
plugin would register one::

    builder = HFBuilder("my-smollm", hf_config, repo="me/my-smollm")
    llmclf.backbones.register("my-smollm", builder, description="...")

A builder describes its backbone without building it (``architecture``, ``tokenizer``,
``config``, ``assets``) and builds it when called:
``builder(weights="random" | "pretrained" | path, dropout=0.0, seed=123)``.

``--backbone DIR`` with a directory holding a ``config.json`` of a supported ``model_type``,
its safetensors weights and ``tokenizer.json`` is `local_builder(DIR)`: any checkpoint of these
families fine-tunes, not only the registered ones.

Downloads (``pretrained`` weights, ``config.json``, ``tokenizer.json``) go to
``$LLMCLF_HOME/backbones/<name>/`` (`llmclf.assets`), or come from the user's Hugging Face
cache when it already holds them. torch is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import assets
from ..assets import Asset
from ..errors import ConfigError, UsageError
from ..registry import backbones
from .hf_sizes import SIZES, PublishedSize

if TYPE_CHECKING:
    from .llama import Llama, LlamaConfig

HF_TOKENIZER = "tokenizer.json"  # a builder's ``tokenizer``: the model's own tokenizer.json


class HFBuilder:
    """Builds one size of a Llama-family or Qwen3 model (the family is the config's
    ``model_type``).

    Args:
        name: the registry name; downloads go to ``$LLMCLF_HOME/backbones/<name>/``.
        hf_config: the fields of the model's ``config.json`` (``model_type`` included).
        published: where its files are published (`PublishedSize`), or None.
        directory: a local Hugging Face model directory holding its files, or None.
        tokenizer: ``"tokenizer.json"`` (the model's) or ``"gpt2"`` (tiktoken's GPT-2 BPE).
    """

    def __init__(
        self,
        name: str,
        hf_config: dict[str, Any],
        *,
        published: PublishedSize | None = None,
        directory: Path | None = None,
        tokenizer: str = HF_TOKENIZER,
    ) -> None:
        self.name = name
        self.hf_config = dict(hf_config)
        self.published = published
        self.directory = directory
        self.tokenizer = tokenizer
        self.architecture = str(hf_config.get("model_type"))

    @functools.cached_property
    def config(self) -> LlamaConfig:
        """The architecture config (a `LlamaConfig` or `Qwen3Config`); imports torch."""
        from .hf_checkpoint import config_from_hf

        return config_from_hf(self.hf_config)

    @property
    def assets(self) -> tuple[Asset, ...]:
        """The files `llmclf download NAME` fetches: weights, config.json, tokenizer.json."""
        if self.published is None:
            return ()
        refused = ""
        if self.published.gated:
            refused = (
                f"accept the licence on https://huggingface.co/{self.published.repo} "
                "and set HF_TOKEN to a token of that account"
            )
        return tuple(
            Asset(f"backbones/{self.name}/{file}", url, what=f"{self.name} {file}", refused=refused)
            for file, url in self.published.urls().items()
        )

    def tokenizer_dir(self) -> Path:
        """The directory holding the model's ``tokenizer.json`` (downloaded if needed)."""
        if self.directory is not None:
            return self.directory
        wanted = [a for a in self.assets if a.relpath.endswith(("/tokenizer.json", "/config.json"))]
        if not wanted:
            raise UsageError(f"backbone {self.name!r} has no tokenizer.json to download")
        for asset in wanted:
            assets.fetch(asset)
        return wanted[0].path().parent

    def __call__(
        self, weights: str | Path = "random", *, dropout: float = 0.0, seed: int = 123
    ) -> Llama:
        """The backbone with ``weights``: "random" (seeded), "pretrained", or a path."""
        return build_hf(self, weights, dropout=dropout, seed=seed)

    def weights_path(self) -> Path:
        """Where the pretrained weights are: the local directory, the Hugging Face cache, or
        ``$LLMCLF_HOME/backbones/<name>/`` (downloaded there if absent)."""
        if self.directory is not None:
            return self.directory
        if self.published is None or self.published.repo is None:
            raise UsageError(
                f"backbone {self.name!r} has no pretrained weights; use --weights random or a "
                "path to a model.safetensors (or its directory)"
            )
        from .weights import find_in_hf_cache

        files = [a for a in self.assets if not a.relpath.endswith("/tokenizer.json")]
        first = files[0]  # the single file, or the shards' index
        if not first.path().is_file() and (cached := find_in_hf_cache(first.url)) is not None:
            return cached
        for asset in files:
            assets.fetch(asset, alternative="or pass a local checkpoint with --weights PATH")
        return first.path()

    def __repr__(self) -> str:
        where = f", directory={str(self.directory)!r}" if self.directory else ""
        return f"HFBuilder({self.name!r}, model_type={self.architecture!r}{where})"


def build_hf(
    builder: HFBuilder, weights: str | Path = "random", *, dropout: float = 0.0, seed: int = 123
) -> Llama:
    """Build ``builder``'s model on the CPU: Hugging Face's initialisation from a local
    generator seeded with ``seed`` (``"random"``), or a checkpoint's weights (``"pretrained"``
    or a path: a ``.safetensors`` file, a shards' index, or a directory). Under
    ``with torch.device("meta")`` a random model is structure only."""
    import torch

    from .hf_checkpoint import load_hf_checkpoint, model_class
    from .weights import local_weights_path

    config = dataclasses.replace(builder.config, dropout=dropout)
    with torch.device("meta"):
        model = model_class(config)(config)  # structure only; the weights come next
    if isinstance(weights, str) and weights == "random":
        if torch.get_default_device().type != "meta":
            model.to_empty(device="cpu")
            model.init_weights(torch.Generator().manual_seed(seed))
        return model
    if isinstance(weights, str) and weights == "pretrained":
        path = builder.weights_path()
    else:
        path = local_weights_path(weights, "a checkpoint (.safetensors, its index or directory)")
    load_hf_checkpoint(model, path)
    return model


def local_builder(directory: str | Path) -> HFBuilder:
    """A builder for a local Hugging Face model directory (``config.json`` of a supported
    ``model_type``, safetensors weights, ``tokenizer.json``)."""
    from .hf_checkpoint import FAMILIES
    from .llama import _read_hf_config

    path = Path(directory).expanduser()
    hf = dict(_read_hf_config(path))
    if hf.get("model_type") not in FAMILIES:
        raise ConfigError(
            f"{path / 'config.json'} has model_type {hf.get('model_type')!r}; a backbone "
            f"directory must hold a {' or '.join(FAMILIES)} model"
        )
    return HFBuilder(str(path), hf, directory=path.resolve())


def is_model_directory(name: str) -> bool:
    """Whether ``name`` is a directory holding a ``config.json``."""
    return (Path(name).expanduser() / "config.json").is_file()


def _register(size: PublishedSize) -> None:
    tokenizer = "gpt2" if size.tokenizer == "gpt2" else HF_TOKENIZER
    published = size if size.repo is not None else None
    builder = HFBuilder(size.name, size.config, published=published, tokenizer=tokenizer)
    backbones.register(size.name, builder, description=size.description, builtin=True)


for _size in SIZES.values():
    _register(_size)
