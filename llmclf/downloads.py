"""Fetch assets ahead of time, by name: ``llmclf download sms gpt2-bpe gpt2-small``.

A name is a registered dataset or backbone, or a tokenizer (``gpt2-bpe``). A registry entry
takes part by declaring its files in an ``assets`` attribute, a sequence of
`llmclf.assets.Asset` (the built-in ``sms`` dataset and the GPT-2 builders do; a plugin's
dataset function or backbone builder can too). Files go to ``$LLMCLF_HOME`` (or ``home``),
atomically and hash-checked, from the mirror when one is set (see `llmclf.assets.Asset.source`).
Neither torch nor pandas is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import settings
from .assets import Asset, fetch
from .errors import AssetError, UsageError
from .registry import Registry, backbones, datasets

Report = Callable[[Asset, Path], None]


@dataclass(frozen=True)
class Downloadable:
    """A name `download` accepts and the files it stands for (none: nothing to download)."""

    name: str
    kind: str  # "dataset", "backbone" or "tokenizer"
    assets: tuple[Asset, ...]


@dataclass(frozen=True)
class CachedFile:
    """One declared file and its state under a home directory."""

    name: str
    kind: str
    asset: Asset
    path: Path
    size: int | None  # bytes on disk; None when the file is not there

    @property
    def state(self) -> str:
        """``"cached"``, ``"missing"``, or ``"wrong size"`` (not the size declared)."""
        if self.size is None:
            return "missing"
        if self.asset.size is not None and self.size != self.asset.size:
            return "wrong size"
        return "cached"


def downloadables() -> list[Downloadable]:
    """Every name `download` accepts: tokenizers, registered datasets and backbones."""
    from .data.tokenizer import ASSETS as GPT2_BPE

    found = [Downloadable("gpt2-bpe", "tokenizer", GPT2_BPE)]
    for kind, registry in (("dataset", datasets), ("backbone", backbones)):
        for entry in registry.entries():
            found.append(Downloadable(entry.name, kind, _declared(kind, entry.name, entry.obj)))
    return found


def _declared(kind: str, name: str, obj: object) -> tuple[Asset, ...]:
    declared = tuple(getattr(obj, "assets", None) or ())
    wrong = [a for a in declared if not isinstance(a, Asset)]
    if wrong:
        raise UsageError(
            f"{kind} {name!r} declares assets that are not llmclf.assets.Asset: {wrong[0]!r}; "
            "fix the plugin that registers it"
        )
    return declared


def resolve(names: Iterable[str]) -> list[Downloadable]:
    """The `Downloadable` of each name; an unknown name lists the known ones and suggests one."""
    known: Registry[list[Downloadable]] = Registry("name to download", "llmclf.downloads")
    for item in downloadables():
        if item.name in known:  # a dataset and a backbone of the same name: both
            known.get(item.name).append(item)
        else:
            known.register(item.name, [item], description=item.kind)
    return [item for name in names for item in known.get(name)]


def download(
    names: str | Iterable[str], home: str | Path | None = None, *, report: Report | None = None
) -> list[Path]:
    """Download the files of each name (a dataset, backbone or tokenizer) into ``home``.

    Args:
        names: e.g. ``["sms", "gpt2-bpe", "gpt2-small"]``; every name is checked before
            anything is downloaded.
        home: the cache to fill; default ``$LLMCLF_HOME`` (``~/.cache/llmclf``).
        report: called with each asset and its local path once it is in place.

    Files already present are checked against their pinned hash instead. Returns the local
    paths. Raises `llmclf.errors.UnknownNameError` for an unknown name and
    `llmclf.errors.AssetError` for failed, refused (offline) or corrupt downloads: every file
    is tried, and one error names each that failed. A file that fails its hash check is never
    left behind.
    """
    items = resolve([names] if isinstance(names, str) else names)
    root = settings.home() if home is None else Path(home).expanduser()
    paths, failed = [], []
    for item in items:
        for asset in item.assets:
            try:
                paths.append(fetch(asset, root))
            except AssetError as exc:
                failed.append(exc)
                continue
            if report is not None:
                report(asset, paths[-1])
    if len(failed) == 1:
        raise failed[0]
    if failed:
        raise AssetError(
            f"{len(failed)} files could not be downloaded: " + "; ".join(map(str, failed))
        )
    return paths


def cached(names: Iterable[str] | None = None, home: str | Path | None = None) -> list[CachedFile]:
    """Every declared file (of ``names``, default all) and whether ``home`` holds it."""
    items = downloadables() if names is None else resolve(names)
    root = settings.home() if home is None else Path(home).expanduser()
    rows = []
    for item in items:
        for asset in item.assets:
            path = asset.path(root)
            size = path.stat().st_size if path.is_file() else None
            rows.append(CachedFile(item.name, item.kind, asset, path, size))
    return rows
