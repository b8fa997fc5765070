"""GPT-2 weights in Hugging Face's layout: find them, read them (safetensors only), load them.

Hugging Face stores GPT-2 under the names our modules carry (``wte``, ``h.{i}.attn.c_attn``, ...),
sometimes behind a ``transformer.`` prefix (``GPT2LMHeadModel``). Its linear layers are
``Conv1D`` modules whose weights are stored (in, out), the transpose of ``nn.Linear``'s
(out, in). The causal-mask buffers (``attn.bias``, ``attn.masked_bias``) and the language-model
head (``lm_head``) have no counterpart here and are skipped.

Loading never unpickles: only ``.safetensors`` files are read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file

from .. import assets
from ..errors import UsageError, WeightsError
from .gpt2 import GPT2

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"  # sharded checkpoints: which tensor is in which file
# Hugging Face's Conv1D layers: weights stored (in, out), the transpose of nn.Linear's (out, in)
CONV1D_WEIGHTS = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
LISTED = 20  # at most this many names of each kind of mismatch in an error message


def weights_files(path: Path) -> list[Path]:
    """The safetensors file(s) behind ``path``: a ``.safetensors`` file, a directory holding
    ``model.safetensors``, or a sharded checkpoint's ``model.safetensors.index.json``."""
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return [path / WEIGHTS_NAME]
        if (path / INDEX_NAME).is_file():
            return weights_files(path / INDEX_NAME)
        if any(p.suffix in PICKLE_SUFFIXES for p in path.iterdir()):
            raise WeightsError(
                f"{path} holds pickled weights only; llmclf reads safetensors only (it never "
                "unpickles): re-save them with safetensors as model.safetensors"
            )
        raise WeightsError(f"no {WEIGHTS_NAME} in {path}; pass the weights file itself")
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}; check the path")
    if path.name.endswith(".index.json"):
        try:
            weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WeightsError(f"cannot read the shard index {path} ({exc}); re-save it") from exc
        return [path.parent / name for name in sorted(set(weight_map.values()))]
    if path.suffix in PICKLE_SUFFIXES:
        raise WeightsError(
            f"{path} is a pickle; llmclf reads safetensors only (it never unpickles): re-save the "
            "weights with safetensors"
        )
    return [path]


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read one safetensors file into CPU tensors. A corrupt or truncated file raises
    `WeightsError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}; check the path")
    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(
            f"cannot read {path} as safetensors ({reason}): the file is corrupt or truncated; "
            "delete it and download or save it again"
        ) from exc


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors behind ``path`` (see `weights_files`), merged into one dict."""
    state: dict[str, torch.Tensor] = {}
    for file in weights_files(path):
        state.update(load_state_dict_file(file))
    return state


def load_hf_weights(model: GPT2, source: Path | str | Mapping[str, torch.Tensor]) -> None:
    """Copy GPT-2 weights in Hugging Face's layout into ``model``, in place.

    ``source`` is a state dict or a path (see `weights_files`). Missing, unexpected and
    mis-shaped tensors are all reported in one `WeightsError`. A model built on the meta
    device takes the loaded tensors as its parameters (no copy).
    """
    where = "" if isinstance(source, Mapping) else f" in {source}"
    state = source if isinstance(source, Mapping) else read_weights(Path(source))
    expected = model.state_dict()
    found: set[str] = set()
    tensors: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    for key, tensor in state.items():
        name = key.removeprefix("transformer.")
        if name.startswith("lm_head.") or name.endswith(IGNORED_SUFFIXES):
            continue
        if name not in expected:
            unexpected.append(key)
            continue
        found.add(name)
        want = expected[name].shape
        if name.endswith(CONV1D_WEIGHTS):  # Conv1D: (in, out) in the file, (out, in) here
            want = want[::-1]
            tensor = tensor.t() if tensor.dim() == 2 else tensor
        if tuple(tensor.shape) != tuple(expected[name].shape):
            wrong_shape.append(f"{key} {tuple(state[key].shape)} (expected {tuple(want)})")
            continue
        tensors[name] = tensor
    missing = [name for name in expected if name not in found]
    if missing or unexpected or wrong_shape:
        c = model.config
        problems = mismatch_problems(missing, unexpected, wrong_shape)
        raise WeightsError(
            f"the weights{where} do not fit this GPT-2 (n_layer={c.n_layer}, n_embd={c.n_embd}, "
            f"vocab_size={c.vocab_size}, context_length={c.context_length}): {problems}; "
            "use a GPT-2 checkpoint of the same size as the backbone"
        )
    on_meta = any(p.is_meta for p in model.parameters())
    for name, tensor in tensors.items():
        tensors[name] = tensor.to(expected[name].dtype).contiguous()
    model.load_state_dict(tensors, strict=True, assign=on_meta)


def hf_state_dict(model: GPT2, prefix: str = "") -> dict[str, torch.Tensor]:
    """``model``'s weights in Hugging Face's layout (Conv1D weights transposed), ready for
    ``safetensors.torch.save_file``: the inverse of `load_hf_weights`."""
    return {
        prefix + name: (t.t() if name.endswith(CONV1D_WEIGHTS) else t).detach().contiguous()
        for name, t in model.state_dict().items()
    }


def local_weights_path(weights: str | Path, takes: str) -> Path:
    """``weights`` as an existing path, or a one-line `UsageError` ending in what it ``takes``."""
    path = Path(weights).expanduser()
    if not path.exists():
        raise UsageError(
            f"weights {str(weights)!r}: no such file or directory; pass 'random', "
            f"'pretrained' or the path of {takes}"
        )
    return path


def mismatch_problems(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    """``"2 missing: a, b; 1 unexpected: c"``: what a checkpoint lacks or has too much of."""
    return "; ".join(
        f"{len(items)} {kind}: {_listing(items)}"
        for kind, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("with the wrong shape", wrong_shape),
        )
        if items
    )


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f", ... (+{len(items) - LISTED} more)" if len(items) > LISTED else "")


# ----- pretrained weights ----------------------------------------------------------------------
def resolve_pretrained(name: str, url: str, *, sha256: str | None = None) -> Path:
    """A local copy of the pretrained weights of backbone ``name``, downloading only if needed.

    Looks in ``$LLMCLF_HOME/backbones/<name>/model.safetensors``, then in the user's Hugging
    Face cache (the file ``url`` points at, if the hub already downloaded it), and otherwise
    downloads ``url`` there (atomically, with a progress bar, checked against ``sha256`` when
    one is pinned; from ``$HF_ENDPOINT`` or ``$LLMCLF_MIRROR`` when set, see
    `llmclf.assets.Asset.source`). Offline, or when the download fails, `llmclf.errors.AssetError`
    names the URL and where to put the file. Files already present are not hashed again (a
    gpt2-xl file is 6 GB); reading them checks their structure and every tensor's shape.
    """
    from .backbones import weights_asset

    asset = weights_asset(name, url, sha256)
    dest = asset.path()
    if dest.is_file():
        return dest
    cached = find_in_hf_cache(url)
    if cached is not None:
        return cached
    return assets.fetch(asset, alternative="or pass a local model.safetensors with --weights PATH")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, found as ``huggingface_hub`` finds it."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def find_in_hf_cache(url: str) -> Path | None:
    """The file a ``https://huggingface.co/<repo>/resolve/<revision>/<file>`` URL names, if the
    Hugging Face cache holds it (the revision's snapshot first, then any snapshot)."""
    parts = urlparse(url).path.strip("/").split("/")
    at = parts.index("resolve") if "resolve" in parts else 0
    if urlparse(url).netloc != "huggingface.co" or at < 1 or len(parts) < at + 3:
        return None
    repo, revision, filename = parts[:at], parts[at + 1], "/".join(parts[at + 2 :])
    folders = ["models--" + "--".join(repo)]
    if repo[0] == "openai-community":  # the same repositories under their old names ("gpt2")
        folders.append("models--" + "--".join(repo[1:]))
    for folder in (hf_hub_cache() / f for f in folders):
        for snapshot in _snapshots(folder, revision):
            if (snapshot / filename).is_file():  # follows the link into blobs/
                return snapshot / filename
    return None


def _snapshots(folder: Path, revision: str) -> Iterable[Path]:
    ref = folder / "refs" / revision
    if ref.is_file():
        yield folder / "snapshots" / ref.read_text(encoding="utf-8").strip()
    yield folder / "snapshots" / revision  # a commit hash given as the revision
    if (folder / "snapshots").is_dir():
        yield from sorted((folder / "snapshots").iterdir(), key=lambda p: -p.stat().st_mtime)
