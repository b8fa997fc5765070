"""What the rows of one sweep share: prepared data and frozen-trunk caches, built once.

Rows that read the same dataset the same way with the same tokenizer get the same
`PreparedData`; rows that also share the frozen part of the model (same backbone and weights,
same first trainable layer, same precision and device, same attention, no dropout) and lay
texts out the same way get the same frozen-trunk cache. Both are keyed by everything they
depend on (`data_key`, `trunk_key`), so a reused object is exactly what the row would have
built itself. They live in this process's memory only; the store keeps the last few data sets
and the most recent caches up to a memory budget (2 GiB by default; the newest is always kept).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..training.config import TrainConfig

__all__ = ["PreparedStore", "data_key", "trunk_key"]


def _file_identity(path: str) -> Any:
    """A local file's resolved path, size and modification time (a changed file is a new key);
    a name that is not a file stays a name."""
    candidate = Path(path)
    target = candidate / "model.safetensors" if candidate.is_dir() else candidate
    if not target.is_file():
        return path
    stat = target.stat()
    return [str(target.resolve()), stat.st_size, stat.st_mtime_ns]


def data_key(cfg: TrainConfig, tokenizer: Any) -> str:
    """Everything `prepare_data` reads: the data spec, the dataset file and the tokenizer."""
    spec = dataclasses.asdict(cfg.data)
    spec["dataset"] = _file_identity(cfg.dataset)
    tokenizer_id = [getattr(tokenizer, "name", type(tokenizer).__name__), tokenizer.pad_id]
    return json.dumps([spec, tokenizer_id, cfg.backbone], sort_keys=True, default=str)


def trunk_key(
    cfg: TrainConfig,
    data: Any,
    policy: Any,
    end_layer: int,
    amp_dtype: Any,
    multiple: int,
    *,
    pooled: bool = False,
) -> str:
    """Everything a frozen-trunk cache depends on: the texts (data fingerprint and split), how
    they are laid out (the padding policy's state), the frozen weights (backbone, weights and,
    for random weights, the seed), where the trunk ends, attention, dropout, precision, device,
    the width multiple, and for a pooled cache (only the head trains) the pooling it applied."""
    weights = _file_identity(cfg.weights)
    seed = cfg.seed if cfg.weights == "random" else None
    parts = {
        "data": [data.fingerprint, data.split_ids()],
        "layout": policy.state(),
        "backbone": [_file_identity(cfg.backbone), weights, seed],
        "end_layer": end_layer,
        "attention": cfg.attention,
        "dropout": cfg.dropout,
        "precision": str(amp_dtype),
        "device": cfg.device,
        "width_multiple": multiple,
        "pooled": cfg.pooling if pooled else None,
    }
    return json.dumps(parts, sort_keys=True, default=str)


class PreparedStore:
    """Prepared data and frozen-trunk caches kept across the runs of one process.

    Pass one to every `llmclf.training.trainer.Trainer` of a sweep (``reuse=store``).
    ``hits`` counts what was reused, by kind (``"data"``, ``"trunk cache"``).
    """

    def __init__(self, *, max_data: int = 2, max_cache_bytes: int = 2 << 30) -> None:
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._caches: OrderedDict[str, Any] = OrderedDict()
        self._max_data = max_data
        self._max_cache_bytes = max_cache_bytes
        self.hits = {"data": 0, "trunk cache": 0}

    def data(self, cfg: TrainConfig, tokenizer: Any, build: Callable[[], Any]) -> Any:
        """The prepared data for ``cfg``: an earlier run's, or ``build()``'s.

        Each run gets its own copy of the data report (the Trainer records its cuts in it)."""
        found = self._get(self._data, "data", data_key(cfg, tokenizer), build)
        return dataclasses.replace(found, report=copy.deepcopy(found.report))

    def caches(
        self,
        cfg: TrainConfig,
        data: Any,
        policy: Any,
        end_layer: int,
        amp_dtype: Any,
        build: Callable[[], Any],
        *,
        pooled: bool = False,
    ) -> Any:
        """The frozen-trunk caches of every split: an earlier run's, or ``build()``'s.
        ``pooled``: the caches hold pooled vectors (they depend on the pooling too)."""
        from ..training.trainer import cache_width_multiple

        multiple = cache_width_multiple(cfg, amp_dtype)
        key = trunk_key(cfg, data, policy, end_layer, amp_dtype, multiple, pooled=pooled)
        if key in self._caches:
            self._caches.move_to_end(key)
            self.hits["trunk cache"] += 1
            return dict(self._caches[key])
        self._caches[key] = caches = build()
        sizes = {k: _cache_bytes(v) for k, v in self._caches.items()}
        while len(self._caches) > 1 and sum(sizes.values()) > self._max_cache_bytes:
            key, evicted = self._caches.popitem(last=False)  # the oldest goes first
            sizes.pop(key)
            _release(evicted)
        return dict(caches)

    def clear(self) -> None:
        """Forget everything (frees the memory the caches hold)."""
        self._data.clear()
        for caches in self._caches.values():
            _release(caches)
        self._caches.clear()

    def _get(self, store: OrderedDict[str, Any], kind: str, key: str, build: Callable) -> Any:
        if key in store:
            store.move_to_end(key)
            self.hits[kind] += 1
            return store[key]
        while len(store) >= self._max_data:  # free the oldest before building the new one
            store.popitem(last=False)
        store[key] = value = build()
        return value


def _release(caches: dict[str, Any]) -> None:
    """Free a run's caches (and a spill file the system kept while it was mapped)."""
    for cache in caches.values():
        if cache is not None:
            cache.release()


def _cache_bytes(caches: dict[str, Any]) -> int:
    """The memory the frozen-trunk caches of a run's splits hold."""
    total = 0
    for cache in caches.values():
        if cache is None:
            continue
        size = getattr(cache, "nbytes", None)
        if size is None:
            size = sum(t.numel() * t.element_size() for t in getattr(cache, "states", ()))
        total += int(size)
    return total
