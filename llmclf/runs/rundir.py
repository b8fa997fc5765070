"""The run directory: its layout, every write of its manifest, and which directories are runs.

`RunDirectory` is the one owner of a run's files: the Trainer, the loop and the CLI ask it
where a file goes and have it write ``llmclf.json`` (`RunDirectory.start`, `save_model`,
`record_progress`, `finish` are the only writers). `read_manifest` reads any schema this llmclf
knows and returns the current one (`llmclf.runs.manifest.upgrade_manifest`).

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.hf_tokenizer import CONFIG_NAME as HF_TOKENIZER_CONFIG
from ..data.hf_tokenizer import FILE_NAME as HF_TOKENIZER_FILE
from ..data.tokenizer import FILES as TOKENIZER_FILES
from ..data.tokenizer import Tokenizer
from ..errors import CheckpointError, UsageError
from ..options import default_of
from ..options import flag as option_flag
from ..training.config import TrainConfig, config_fields
from . import checkpoint as ckpt
from .manifest import new_manifest, upgrade_manifest

STAGING_DIR = ".llmclf-overwrite"
RUN_FILES = (
    ckpt.MODEL_FILE,
    ckpt.METRICS_FILE,
    ckpt.HISTORY_FILE,
    ckpt.CURVES_FILE,
    *TOKENIZER_FILES,  # GPT-2's BPE files, or:
    HF_TOKENIZER_FILE,  # a Hugging Face model's tokenizer.json
    HF_TOKENIZER_CONFIG,  # and its pad token
    ckpt.MANIFEST_FILE,  # last: moving it in commits a run
)
RESUME_PATTERNS = (ckpt.RESUME_STATE, "trainable-*.safetensors", "optimizer-*.safetensors")
PROGRESS_FIELDS = ("epochs_completed", "model_epoch")  # a resumed run keeps these


class RunDirectory:
    """One run directory: where each file goes, and every write of its ``llmclf.json``.

    ``writes=False`` (the other ranks under DDP) makes every write a no-op, so callers need no
    rank checks. The manifest is built once (`start`), changed only through this object, and
    written whole (atomically) after each change.
    """

    def __init__(self, path: str | os.PathLike[str], *, writes: bool = True) -> None:
        self.path = Path(path)
        self.writes = writes
        self.manifest: dict[str, Any] = {}

    # ----- layout ----------------------------------------------------------------------------
    @property
    def manifest_file(self) -> Path:
        return self.path / ckpt.MANIFEST_FILE

    @property
    def model_file(self) -> Path:
        return self.path / ckpt.MODEL_FILE

    @property
    def resume_dir(self) -> Path:
        return self.path / ckpt.RESUME_DIR

    @property
    def resume_state_file(self) -> Path:
        return self.resume_dir / ckpt.RESUME_STATE

    @property
    def curves_file(self) -> Path:
        return self.path / ckpt.CURVES_FILE

    def has_manifest(self) -> bool:
        return has_manifest(self.path)

    def has_resume_state(self) -> bool:
        """Whether ``resume/state.json`` is there: the run can continue."""
        return self.resume_state_file.is_file()

    # ----- reading -----------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """``llmclf.json`` in the current schema (an older one is upgraded in memory)."""
        return upgrade_manifest(ckpt.read_json(self.manifest_file), self.manifest_file)

    def read_resume_state(self) -> dict[str, Any]:
        return ckpt.read_json(self.resume_state_file)

    def resume_config(self) -> TrainConfig:
        """The config an unfinished run's ``resume/state.json`` continues with."""
        return TrainConfig.from_dict(self.read_resume_state()["config"])

    # ----- the manifest: the only writes of llmclf.json ----------------------------------------
    def start(self, description: Mapping[str, Any]) -> None:
        """Begin a new run: write its manifest first (that marks the directory as a run).

        A staging directory (``--overwrite``) is cleared of an earlier attempt first.
        """
        self.manifest = new_manifest(description)
        if self.writes:
            if self.path.name == STAGING_DIR:
                clear_staging(self.path.parent)
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_manifest()

    def reopen(self, description: Mapping[str, Any]) -> None:
        """Continue an unfinished run: its manifest, with the progress it had recorded."""
        previous = ckpt.read_json(self.manifest_file)
        self.manifest = new_manifest(description)
        self.manifest.update({k: previous[k] for k in PROGRESS_FIELDS if k in previous})

    def save_model(self, state: Mapping[str, torch.Tensor], epoch: int) -> None:
        """Write the weights, then the manifest that says which epoch they are."""
        if not self.writes:
            return
        ckpt.save_tensors(self.model_file, state)
        self.manifest["model_epoch"] = epoch
        self._write_manifest()

    def record_progress(self, epochs_completed: int) -> None:
        """Record how many epochs are done (the saved model may be an earlier one's)."""
        self.manifest["epochs_completed"] = epochs_completed
        if self.writes:
            self._write_manifest()

    def finish(
        self,
        metrics: Mapping[str, Any],
        history: Sequence[Mapping[str, Any]],
        epochs_completed: int,
    ) -> None:
        """Write the metrics and the history, mark the run complete, drop ``resume/``."""
        self.manifest.update(complete=True, epochs_completed=epochs_completed)
        if not self.writes:
            return
        ckpt.write_json(self.path / ckpt.METRICS_FILE, metrics)
        self.write_history(history)
        self._write_manifest()
        remove_resume_files(self.path)

    def _write_manifest(self) -> None:
        ckpt.write_json(self.manifest_file, self.manifest)

    # ----- the other files -------------------------------------------------------------------
    def save_tokenizer(self, tokenizer: Tokenizer) -> None:
        if self.writes:
            tokenizer.save(self.path)

    def write_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        if self.writes:
            ckpt.write_history(self.path / ckpt.HISTORY_FILE, history)

    def save_resume(
        self,
        epoch: int,
        tensors: Mapping[str, Mapping[str, torch.Tensor]],
        state: Mapping[str, Any],
    ) -> None:
        """Write epoch ``epoch``'s resume set: ``tensors`` (``{"weights": ..., "optimizer":
        ...}``) as ``<kind>-<epoch>.safetensors``, then ``state.json`` naming them (it commits
        the set), then remove earlier epochs' files.

        The tensor files carry the epoch in their names, so an interruption while writing them
        leaves the previous epoch's set (which ``state.json`` still names) whole.
        """
        if not self.writes:
            return
        prefixes = {"weights": "trainable", "optimizer": "optimizer"}
        files = {kind: f"{prefixes[kind]}-{epoch}.safetensors" for kind in tensors}
        for kind, named in tensors.items():
            ckpt.save_tensors(self.resume_dir / files[kind], named)
        ckpt.write_json(self.resume_state_file, {"files": files, **state})
        for stale in self.resume_dir.glob("*.safetensors"):  # earlier epochs' sets
            if stale.name not in files.values():
                stale.unlink(missing_ok=True)

    def load_resume(self) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
        """``state.json`` and the tensor files it names (by kind)."""
        state = self.read_resume_state()
        tensors = {
            kind: ckpt.load_tensors(self.resume_dir / name) for kind, name in state["files"].items()
        }
        return state, tensors


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


def new_run_dir(out: Path, *, overwrite: bool) -> Path:
    """Where a new run in ``out`` trains: ``out`` itself, or its staging dir under --overwrite.

    Refuses a directory that is neither empty nor an llmclf run (even with --overwrite), and a
    run without --overwrite.
    """
    check_new_output(out)
    if not is_run(out):
        return out
    if not overwrite:
        raise UsageError(_existing_run_message(out))
    return out / STAGING_DIR


def resumable_dir(run_dir: Path) -> Path:
    """The directory whose ``resume/`` continues ``run_dir``'s run, or a one-line error.

    An interrupted ``--overwrite`` (in ``run_dir``'s staging dir) is the newer run, so it wins.
    """
    staging = run_dir / STAGING_DIR
    if finished := finished_staging(run_dir):  # killed while it was being moved in
        promote(finished, run_dir)
        raise UsageError(f"{run_dir} is a finished run; there is nothing to resume")
    for work in (staging, run_dir):
        if RunDirectory(work).has_resume_state():
            return work
    if has_manifest(staging):
        config = TrainConfig.from_dict(ckpt.read_json(staging / ckpt.MANIFEST_FILE)["config"])
        raise CheckpointError(
            f"the --overwrite of {run_dir} stopped before its first epoch ended and {run_dir} "
            f"still holds the previous run; start it again with "
            f"{repeat_command(config, run_dir)}"
        )
    if not has_manifest(run_dir):
        raise UsageError(
            f"{run_dir} is not an llmclf run (no llmclf.json); --resume takes an interrupted "
            "run's directory"
        )
    manifest = ckpt.read_json(run_dir / ckpt.MANIFEST_FILE)
    if manifest.get("complete"):
        raise UsageError(f"{run_dir} is a finished run; there is nothing to resume")
    config = TrainConfig.from_dict(manifest["config"])
    raise CheckpointError(
        f"{run_dir} stopped before its first epoch ended, so there is nothing to resume; start "
        f"it again with {repeat_command(config, run_dir)}"
    )


def _existing_run_message(out: Path) -> str:
    """Why ``out`` cannot take a new run, and what to do instead."""
    if not has_manifest(out):
        return (
            f"{out} holds a run that was being moved in when llmclf stopped; finish that with "
            f"llmclf fit --resume {out}, choose another --output, or pass --overwrite"
        )
    if RunDirectory(out / STAGING_DIR).has_resume_state():
        return (
            f"{out} holds a run and an interrupted --overwrite of it; continue that with "
            f"llmclf fit --resume {out}, choose another --output, or pass --overwrite to start over"
        )
    if ckpt.read_json(out / ckpt.MANIFEST_FILE).get("complete"):
        return (
            f"{out} already holds a finished run; choose another --output "
            "or pass --overwrite to replace it"
        )
    if RunDirectory(out).has_resume_state():
        return (
            f"{out} holds an unfinished run; continue it with llmclf fit --resume {out}, "
            "choose another --output, or pass --overwrite to start over"
        )
    return (
        f"{out} holds a run interrupted before its first epoch ended; pass --overwrite to "
        "start over or choose another --output"
    )


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
