"""The built-in backbones: GPT-2 in its four released sizes, and a tiny size for tests.

A backbone registry entry is a builder (timm style): calling it builds the model, and its
attributes describe it without building::

    builder = llmclf.backbones.get("gpt2-small")
    builder.config            # GPT2Config: the size
    builder.architecture      # "gpt2": the module class, in llmclf.models.spec.ARCHITECTURES
    builder.tokenizer         # "gpt2": the tokenizer its token ids come from
    builder.url               # where the pretrained weights come from (None: random only)
    builder.assets            # the files `llmclf download gpt2-small` fetches
    model = builder(weights="pretrained")   # or "random", or a path to model.safetensors

Built-ins register as a plugin registers its own size (they add ``builtin=True``, so
``llmclf list`` tells them apart)::

    mini = GPT2Builder("gpt2-mini", n_layer=4, n_embd=256, n_head=4)
    llmclf.backbones.register("gpt2-mini", mini, description="GPT-2, 4 layers, 256 wide")

A plugin may also register a plain function with the builder's signature
``(weights="random", *, dropout=0.0, seed=123) -> GPT2``; `build_gpt2` does the work. (Without
``architecture`` and ``tokenizer`` attributes an entry is GPT-2 with GPT-2's BPE.)

The Trainer reads an entry through `llmclf.models.spec.backbone_entry` and makes the classifier
with `llmclf.models.spec.build_classifier`, the one factory.

The size metadata stays apart from the architecture (`.gpt2`), and torch is imported only
when a model is built, so listing the registry stays fast.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..assets import Asset
from ..errors import UsageError
from ..registry import backbones

if TYPE_CHECKING:
    from .gpt2 import GPT2, GPT2Config

HF_URL = "https://huggingface.co/openai-community/{repo}/resolve/main/model.safetensors"


def weights_asset(name: str, url: str, sha256: str | None = None, size: int | None = None) -> Asset:
    """The pretrained weights of backbone ``name``: ``backbones/<name>/model.safetensors``."""
    return Asset(
        f"backbones/{name}/model.safetensors", url, sha256, size, what=f"{name} pretrained weights"
    )


class GPT2Builder:
    """Builds GPT-2 of one size: ``builder(weights="random" | "pretrained" | path)``.

    Args:
        name: the registry name, used for the weights cache ``$LLMCLF_HOME/backbones/<name>``.
        url: where ``weights="pretrained"`` downloads from; ``None`` for random-only sizes.
        sha256: the downloaded file's pinned hash, if known.
        size: the downloaded file's size in bytes, if known.
        **sizes: `llmclf.models.gpt2.GPT2Config` fields that differ from GPT-2 small.
    """

    architecture = "gpt2"  # the module class it builds (llmclf.models.spec.ARCHITECTURES)
    tokenizer = "gpt2"  # the tokenizer its vocabulary belongs to

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        **sizes: Any,
    ) -> None:
        self.name = name
        self.url = url
        self.sha256 = sha256
        self.size = size
        self.sizes = sizes

    @property
    def assets(self) -> tuple[Asset, ...]:
        """The files ``weights="pretrained"`` needs (none for a random-only size)."""
        if self.url is None:
            return ()
        return (weights_asset(self.name, self.url, self.sha256, self.size),)

    @property
    def config(self) -> GPT2Config:
        """The size this builder builds, without building it."""
        from .gpt2 import GPT2Config

        return GPT2Config(**self.sizes)

    def __call__(
        self, weights: str | Path = "random", *, dropout: float = 0.0, seed: int = 123
    ) -> GPT2:
        """Build the model; see `build_gpt2`."""
        return build_gpt2(
            self.config,
            weights,
            dropout=dropout,
            seed=seed,
            name=self.name,
            url=self.url,
            sha256=self.sha256,
        )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v!r}" for k, v in self.sizes.items())
        return f"GPT2Builder({self.name!r}, url={self.url!r}{', ' if sizes else ''}{sizes})"


def build_gpt2(
    config: GPT2Config,
    weights: str | Path = "random",
    *,
    dropout: float = 0.0,
    seed: int = 123,
    name: str = "gpt2",
    url: str | None = None,
    sha256: str | None = None,
) -> GPT2:
    """Build a `llmclf.models.gpt2.GPT2` of size ``config`` on the CPU.

    Args:
        config: the size; its ``dropout`` is replaced by ``dropout``.
        weights: ``"random"`` (GPT-2's initialisation from a local generator seeded with
            ``seed``; the global RNG is left alone), ``"pretrained"`` (from ``url``, see
            `llmclf.models.weights.resolve_pretrained`), or a path to a
            ``model.safetensors`` file in Hugging Face's layout or a directory holding one.
        name: the backbone's name, for the weights cache and for messages.
        sha256: the pinned hash a download of ``url`` must have, if known.

    Under ``with torch.device("meta")``, ``weights="random"`` returns the structure only (no
    memory): enough to count parameters or check shapes of the largest sizes.
    """
    import torch

    from .gpt2 import GPT2
    from .weights import load_hf_weights, local_weights_path, resolve_pretrained

    config = dataclasses.replace(config, dropout=dropout)
    with torch.device("meta"):
        model = GPT2(config)  # structure only: no memory, no RNG; the weights come next
    if isinstance(weights, str) and weights == "random":
        if torch.get_default_device().type != "meta":
            model.to_empty(device="cpu")
            model.init_weights(torch.Generator().manual_seed(seed))
        return model
    if isinstance(weights, str) and weights == "pretrained":
        if url is None:
            raise UsageError(
                f"backbone {name!r} has no pretrained weights; use --weights random "
                "(weights='random' in Python) or a path to a model.safetensors file"
            )
        path = resolve_pretrained(name, url, sha256=sha256)
    else:
        path = local_weights_path(weights, "a model.safetensors file (or of its directory)")
    load_hf_weights(model, path)
    return model


def _register(
    name: str,
    description: str,
    *,
    url: str | None,
    sha256: str | None = None,
    size: int | None = None,
    **sizes: Any,
) -> None:
    builder = GPT2Builder(name, url=url, sha256=sha256, size=size, **sizes)
    backbones.register(name, builder, description=description, builtin=True)


_register(
    "gpt2-small",
    "GPT-2 small: 124M parameters, 12 layers, 768 wide (OpenAI, 2019)",
    url=HF_URL.format(repo="gpt2"),
    sha256="248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
    size=548_105_171,
)
_register(
    "gpt2-medium",
    "GPT-2 medium: 355M parameters, 24 layers, 1024 wide",
    url=HF_URL.format(repo="gpt2-medium"),
    n_layer=24,
    n_embd=1024,
    n_head=16,
)
_register(
    "gpt2-large",
    "GPT-2 large: 774M parameters, 36 layers, 1280 wide",
    url=HF_URL.format(repo="gpt2-large"),
    n_layer=36,
    n_embd=1280,
    n_head=20,
)
_register(
    "gpt2-xl",
    "GPT-2 XL: 1558M parameters, 48 layers, 1600 wide",
    url=HF_URL.format(repo="gpt2-xl"),
    n_layer=48,
    n_embd=1600,
    n_head=25,
)
_register(
    "gpt2-tiny",
    "GPT-2 architecture, 7M parameters (2 layers, 128 wide), random weights: tests, quick runs",
    url=None,
    n_layer=2,
    n_embd=128,
    n_head=4,
)
