"""Which directories are llmclf runs, which files in them are llmclf's, and replacing a run.

An *llmclf run* is a directory whose ``llmclf.json`` is a JSON object with a ``schema_version``
(fit writes it first, before any other file), or one that holds an ``--overwrite`` in progress
(``.llmclf-overwrite/`` with such a manifest). ``fit`` writes a new run only into a missing or
empty directory, or, with ``--overwrite``, over a run. llmclf owns these names in a run and
deletes nothing else, and never a whole directory:

```
model.safetensors  llmclf.json  metrics.json  history.csv  curves.png  encoder.json  vocab.bpe
resume/state.json  resume/trainable-N.safetensors  resume/optimizer-N.safetensors
.llmclf-overwrite/ (the same names inside)
```

plus the temporary files its atomic writes leave when killed (``.NAME.*.tmp``). A directory
llmclf made (``resume/``, ``.llmclf-overwrite/``) is removed only once it is empty.

``--overwrite`` trains the new run in ``RUN/.llmclf-overwrite/``; RUN stays the old run, whole
and loadable, until the new one has finished. Then `promote` deletes the old manifest, moves
the new files over the old ones (removing old files the new run does not have) and moves the new
manifest in last; if that is cut short, `Trainer.resume` (``fit --resume RUN``) finishes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

from ..data.tokenizer import FILES as TOKENIZER_FILES
from ..errors import UsageError
from ..options import default_of
from ..options import flag as option_flag
from . import checkpoint as ckpt
from .config import TrainConfig, config_fields

STAGING_DIR = ".llmclf-overwrite"
RUN_FILES = (
    ckpt.MODEL_FILE,
    ckpt.METRICS_FILE,
    ckpt.HISTORY_FILE,
    ckpt.CURVES_FILE,
    *TOKENIZER_FILES,
    ckpt.MANIFEST_FILE,  # last: moving it in commits a run
)
RESUME_PATTERNS = (ckpt.RESUME_STATE, "trainable-*.safetensors", "optimizer-*.safetensors")


def has_manifest(directory: Path) -> bool:
    """Whether ``directory/llmclf.json`` is a manifest llmclf wrote (it has a schema_version)."""
    try:
        manifest = json.loads((directory / ckpt.MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "schema_version" in manifest


def is_run(directory: Path) -> bool:
    """Whether ``directory`` is an llmclf run (or a run being replaced by ``--overwrite``)."""
    return has_manifest(directory) or has_manifest(directory / STAGING_DIR)


def check_new_output(out: Path) -> None:
    """Refuse an ``--output`` that exists and is neither empty nor an llmclf run."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--output {out} is a file; choose a directory for the run")
    if any(out.iterdir()) and not is_run(out):
        raise UsageError(
            f"--output {out} is not empty and is not an llmclf run (no llmclf.json), so llmclf "
            "will not write into it, even with --overwrite; choose a new or empty directory"
        )


def remove_run_files(directory: Path) -> None:
    """Delete, by name, what llmclf writes in a run directory; leave everything else."""
    _remove_resume_files(directory / ckpt.RESUME_DIR)
    for name in RUN_FILES:
        _unlink(directory / name)
    _remove_temporary_files(directory, RUN_FILES)


def remove_resume_files(directory: Path) -> None:
    """Delete ``directory/resume``'s own files, and the folder when nothing else is in it."""
    _remove_resume_files(directory / ckpt.RESUME_DIR)


def clear_staging(out: Path) -> Path:
    """An empty ``out/.llmclf-overwrite`` for a new run (an earlier attempt's files removed)."""
    staging = out / STAGING_DIR
    remove_run_files(staging)
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def promote(staging: Path, out: Path) -> None:
    """Replace the run in ``out`` with the finished run in ``staging``.

    The old manifest goes first and the new one comes last, so ``out`` never passes for the old
    run with new files in it. A process killed in between (a few renames) leaves ``out`` without
    a manifest and the rest of the new run in ``staging``; calling this again finishes the move.
    """
    if (out / ckpt.MANIFEST_FILE).exists():  # not started: clear what the new run will not replace
        for name in RUN_FILES:
            if not (staging / name).is_file():  # e.g. curves.png, without matplotlib
                _unlink(out / name)
        remove_resume_files(out)
        _remove_temporary_files(out, RUN_FILES)
        _unlink(out / ckpt.MANIFEST_FILE)
    for name in RUN_FILES:  # the manifest last
        if (staging / name).is_file():
            os.replace(staging / name, out / name)
    remove_run_files(staging)
    _rmdir_if_empty(staging)


def finished_staging(out: Path) -> Path | None:
    """``out``'s staging dir when it holds a finished run that was not moved in yet."""
    staging = out / STAGING_DIR
    if not has_manifest(staging):
        return None
    manifest = json.loads((staging / ckpt.MANIFEST_FILE).read_text(encoding="utf-8"))
    return staging if manifest.get("complete") else None


def repeat_command(config: TrainConfig, out: Path) -> str:
    """The ``llmclf fit`` command line that starts ``config``'s run again in ``out``.

    Fields at their default are left out; a value no flag can express (``eval_batches: null``)
    is named as a ``--config`` file field.
    """
    args, config_only = ["llmclf", "fit"], []
    for f in config_fields():  # each field is the option of the same name
        value = getattr(config, f.name)
        if f.name == "output" or value == default_of(f):
            continue
        flag = option_flag(f.name)
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is None:
            config_only.append(f"{f.name} = null")
        else:
            args += [flag, _flag_value(value)]
    args += ["--output", str(out), "--overwrite"]
    command = shlex.join(args)
    if config_only:
        command += f" (with {', '.join(config_only)} in a --config file)"
    return command


def _flag_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def _remove_resume_files(resume: Path) -> None:
    if not resume.is_dir():
        return
    for pattern in RESUME_PATTERNS:
        for path in resume.glob(pattern):
            _unlink(path)
        for path in resume.glob(f".{pattern}.*.tmp"):
            _unlink(path)
    _rmdir_if_empty(resume)


def _remove_temporary_files(directory: Path, names: tuple[str, ...]) -> None:
    if not directory.is_dir():
        return
    for name in names:
        for path in directory.glob(f".{name}.*.tmp"):
            _unlink(path)


def _unlink(path: Path) -> None:
    if path.is_file() or path.is_symlink():
        path.unlink(missing_ok=True)


def _rmdir_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # missing, or holds something that is not ours
        directory.rmdir()
