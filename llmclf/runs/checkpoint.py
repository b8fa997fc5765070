"""The run directory: safetensors + JSON + CSV, every file written atomically.

```
RUN/
  model.safetensors   classifier weights (backbone + head; LoRA adapters unmerged)
  llmclf.json         everything Classifier.load needs, plus the config, data report and split
  metrics.json        {"train": {...}, "validation": {...}, "test": {...}}
  history.csv         losses and accuracies at each evaluation step
  encoder.json, vocab.bpe   the tokenizer's files
  curves.png          loss / accuracy curves (when matplotlib is installed)
  resume/             optimizer and trainer state while a run is unfinished (removed at the end)
  .llmclf-overwrite/  the run that replaces this one, while ``fit --overwrite`` trains it
```

Which directories are runs and which files llmclf owns (and may delete): see ``rundir``.

Nothing here unpickles: weights are read with ``safetensors`` and everything else is JSON/CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..assets import atomic_path, atomic_write_text
from ..errors import CheckpointError

SCHEMA_VERSION = 2  # 1: the model in backbone/head/pooling; 2: a ModelSpec under "model"
MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "llmclf.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
RESUME_DIR = "resume"
RESUME_STATE = "state.json"


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is missing; is {path.parent} a complete llmclf run?"
        ) from None
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the run may be corrupt") from None


def write_history(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def read_history(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Save tensors as safetensors, atomically.

    Tensors are written from their own memory (no copy of the model); only tensors that share
    storage with one already taken (tied weights), which safetensors refuses, are cloned.
    """
    plain: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        t = tensor.detach().to("cpu").contiguous()
        storage = t.untyped_storage().data_ptr()
        if storage in seen and t.numel():
            t = t.clone()
        seen.add(storage)
        plain[name] = t
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=metadata)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing or corrupt file is a `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; is {path.parent} a complete llmclf run?")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None


# ----- optimizer state without pickle --------------------------------------------------------
def optimizer_to_tensors(
    state: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"state.{index}.{key}"] = torch.as_tensor(value)
    return tensors, {"param_groups": state["param_groups"]}


def optimizer_from_tensors(
    tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any]
) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def _number(value: str) -> Any:
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
