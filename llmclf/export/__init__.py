"""``llmclf export``: a run directory as a Hugging Face model or an ONNX model.

Both formats load without llmclf's Python code (``transformers`` or ``onnxruntime`` is enough)
and record where they came from in ``llmclf_export.json``: the llmclf version, the run's path,
the sha256 of its weights and its whole ``llmclf.json``.

```
hf/                                     onnx/
  config.json                             model.onnx
  model.safetensors                       labels.json
  vocab.json, merges.txt, tokenizer.json  encoder.json, vocab.bpe
  tokenizer_config.json                   llmclf_export.json
  special_tokens_map.json
  llmclf_export.json
```

The directory is written beside ``output`` first and moved into place only when every file is
there, so an export that fails leaves ``output`` as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..assets import _umask
from ..errors import ExportError, LlmclfError, UsageError

if TYPE_CHECKING:
    from ..inference import Classifier

FORMATS = ("hf", "onnx")
RECORD_FILE = "llmclf_export.json"
EXTRA_HINT = "pip install 'llmclf[export]'"


def export_run(
    run_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    format: str = "hf",
    overwrite: bool = False,
) -> Path:
    """Export the run in ``run_dir`` into the directory ``output``; return ``output``.

    Args:
        format: ``"hf"``: a directory ``transformers.pipeline("text-classification",
            model=output)`` loads (GPT-2 runs with ``last-token`` pooling only; see
            `llmclf.export.hf.check_hf`). ``"onnx"``: ``model.onnx`` with the pooling inside
            the graph, which ``Classifier.load(output, engine="onnxruntime")`` runs.
        overwrite: replace an earlier export in ``output`` (a directory holding anything else
            is never touched).

    Raises `ExportError` for a run the format cannot reproduce exactly (the message says why),
    `UsageError` for a bad argument or an ``output`` that is in the way, and
    `llmclf.errors.CheckpointError` for a run directory that does not load.
    """
    if format not in FORMATS:
        raise UsageError(f"format: must be one of {', '.join(FORMATS)}, got {format!r}")
    output = Path(output)
    _check_output(output, overwrite)
    if format == "onnx":
        from .onnx_graph import require_onnx

        require_onnx()
    from ..inference import Classifier

    classifier = Classifier.load(run_dir, device="cpu")  # fp32; LoRA adapters merged
    if format == "hf":
        from .hf import check_hf, write_hf

        check_hf(classifier)
        writer = write_hf
    else:
        from .onnx_graph import write_onnx

        writer = write_onnx
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".export", dir=output.parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; an export is not
        extra = writer(classifier, staging)
        files = sorted(p.name for p in staging.iterdir())
        record = export_record(classifier, Path(run_dir), format, [*files, RECORD_FILE], extra)
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def export_record(
    classifier: Classifier,
    run_dir: Path,
    format: str,
    files: list[str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """``llmclf_export.json``: what was exported, from which run, by which llmclf."""
    import torch

    from ..assets import sha256_of
    from ..runs import checkpoint as ckpt

    return {
        "format": format,
        "llmclf_version": __version__,
        "torch_version": torch.__version__,
        "source": {
            "run": str(run_dir.resolve()),
            "model_sha256": sha256_of(run_dir / ckpt.MODEL_FILE),
        },
        "labels": list(classifier.labels),
        "max_tokens": classifier.max_tokens,
        "files": files,
        **extra,
        "run": classifier.manifest,
    }


def read_record(directory: Path) -> dict[str, Any] | None:
    """The ``llmclf_export.json`` of ``directory`` as a dict, or None when it has none."""
    try:
        record = json.loads((Path(directory) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "format" in record else None


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an ``output`` that is a file, or a directory holding anything but (with
    ``overwrite``) an earlier export."""
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; name a new directory")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if read_record(output) is None:
        raise UsageError(
            f"--output {output} is a directory that holds other files; name a new or empty "
            "directory"
        )
    if not overwrite:
        raise UsageError(
            f"--output {output} holds an earlier export; pass --overwrite to replace it, or "
            "name a new directory"
        )


def _move_into_place(staging: Path, output: Path) -> None:
    """Replace ``output`` (missing, empty, or an earlier export) by the finished ``staging``.

    Only the files an earlier export lists in its record are deleted; the record goes last,
    so a cut-short replacement is still recognised as an export and can be overwritten again.
    """
    if not output.exists():
        os.replace(staging, output)
        return
    old = read_record(output) or {}
    with contextlib.suppress(OSError):
        (output / RECORD_FILE).unlink()
    for name in old.get("files", []):
        if isinstance(name, str) and "/" not in name and name not in (".", ".."):
            with contextlib.suppress(FileNotFoundError):
                (output / name).unlink()
    for path in sorted(staging.iterdir(), key=lambda p: p.name == RECORD_FILE):
        os.replace(path, output / path.name)


def missing_extra(module: str, what: str) -> LlmclfError:
    """The one-line error for an optional dependency of exporting that is not installed."""
    return LlmclfError(f"{what} needs {module}, not installed here; run: {EXTRA_HINT}")


__all__ = ["FORMATS", "RECORD_FILE", "ExportError", "export_run", "read_record"]
