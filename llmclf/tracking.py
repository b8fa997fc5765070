"""Experiment tracking: reporters that send the Trainer's events to TensorBoard or MLflow.

``llmclf fit --log-to tensorboard,mlflow`` adds one `Reporter` per tracker to the reporters of
the run, so the trackers see exactly the events ``--log-json`` writes
(`llmclf.reporting`):

- ``config``: the whole config, as TensorBoard text and hparams, as MLflow params;
- ``step``: the training loss of each batch, ``train/batch_loss`` at the batch number of the
  run (``(epoch - 1) * steps + step``);
- ``evaluation``: ``eval/train_loss``, ``eval/val_loss``, ``eval/train_accuracy``,
  ``eval/val_accuracy`` at the optimizer step;
- ``done``: ``final/<split>_<metric>`` for every scalar of ``metrics.json``, and the run
  directory: MLflow uploads it as the ``run`` artifact, TensorBoard records its path as text.

Tracker output never goes into the run directory (llmclf owns only its own files there):
TensorBoard writes ``<tensorboard dir>/<run name>`` (default: ``tensorboard/`` beside the run,
so ``runs/sms`` logs to ``runs/tensorboard/sms``); MLflow writes wherever MLflow's own
``MLFLOW_TRACKING_URI`` points, in the experiment ``MLFLOW_EXPERIMENT_NAME`` (default
``llmclf``). Only rank 0 logs: the Trainer gives the other ranks a silent reporter, and these
reporters create nothing before their first event.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ConfigError, LlmclfError, UsageError
from .reporting import Reporter

TRACKERS = ("tensorboard", "mlflow")
DEFAULT_EXPERIMENT = "llmclf"


def parse_log_to(values: Iterable[str]) -> list[str]:
    """``["tensorboard,mlflow"]`` or ``["tensorboard", "mlflow"]`` -> the tracker names, in
    order, once each; an unknown name is a usage error."""
    names: list[str] = []
    for value in values:
        for name in (part.strip().lower() for part in value.split(",")):
            if name and name not in TRACKERS:
                raise UsageError(
                    f"--log-to: unknown tracker {name!r}; choose from tensorboard, mlflow"
                )
            if name and name not in names:
                names.append(name)
    return names


def require_extra(name: str) -> None:
    """Raise a one-line error naming the extra unless tracker ``name``'s library imports."""
    module = {"tensorboard": "tensorboard", "mlflow": "mlflow"}[name]
    try:
        __import__(module)
    except ImportError:
        raise LlmclfError(
            f"--log-to {name} needs the {module} package, not installed here; run: "
            f"pip install 'llmclf[{name}]'"
        ) from None


def make_tracker(name: str, *, tensorboard_dir: str | Path | None = None) -> Reporter:
    """The reporter of tracker ``name`` (after checking its library is installed)."""
    require_extra(name)
    if name == "tensorboard":
        return TensorBoardReporter(tensorboard_dir)
    return MlflowReporter()


class _TrackerReporter(Reporter):
    """What both trackers share: the run's batch numbering and the flattened metrics."""

    def __init__(self) -> None:
        self._steps_per_epoch = 0

    def event(self, name: str, **data: Any) -> None:
        if name == "config":
            self.start(data["config"], Path(data["output_dir"]))
        elif name == "epoch_start":
            self._steps_per_epoch = data["steps"]
        elif name == "step":
            batch = (data["epoch"] - 1) * self._steps_per_epoch + data["step"]
            self.scalars({"train/batch_loss": data["loss"]}, batch)
        elif name == "evaluation":
            row = data["row"]
            keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
            self.scalars({f"eval/{k}": row[k] for k in keys}, row["step"])
        elif name == "done":
            self.finish(final_metrics(data["metrics"]), Path(data["output_dir"]))

    def start(self, config: dict[str, Any], output_dir: Path) -> None:
        """The run begins: record its config."""

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Record ``values`` at ``step`` (NaN included: a split without rows)."""

    def finish(self, metrics: dict[str, float], output_dir: Path) -> None:
        """The run is complete: record its final metrics and directory."""


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"test": {"accuracy": 0.9, ...}}`` -> ``{"final/test_accuracy": 0.9, ...}`` (scalars)."""
    flat: dict[str, float] = {}
    for split, values in metrics.items():
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                flat[f"final/{split}_{key}"] = float(value)
    return flat


def _plain(value: Any) -> str | int | float | bool:
    """A config value as a scalar hparam / param."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value)


class TensorBoardReporter(_TrackerReporter):
    """Writes TensorBoard event files under ``<root>/<run name>`` (`SummaryWriter`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else None
        self.log_dir: Path | None = None
        self._writer: Any = None
        self._config: dict[str, Any] = {}

    def start(self, config: dict[str, Any], output_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        root = self.root if self.root is not None else output_dir.parent / "tensorboard"
        self.log_dir = root / output_dir.name
        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._config = {k: _plain(v) for k, v in config.items() if v is not None}
        text = "```json\n" + json.dumps(config, indent=2) + "\n```"
        self._writer.add_text("config", text, 0)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._writer is None:
            return
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def finish(self, metrics: dict[str, float], output_dir: Path) -> None:
        if self._writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        for tag, value in metrics.items():
            self._writer.add_scalar(tag, value, 0)
        self._writer.add_text("run_directory", str(output_dir.resolve()), 0)
        # hparams into this run's own file (SummaryWriter.add_hparams would start another run)
        for summary in hparams(self._config, metrics):
            self._writer.file_writer.add_summary(summary)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MlflowReporter(_TrackerReporter):
    """Logs to MLflow through `MlflowClient` (no global active run): MLflow's own tracking URI
    and ``MLFLOW_EXPERIMENT_NAME`` (default ``llmclf``); the run is named after the run
    directory, and marked FAILED when training stops before ``done``."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        super().__init__()
        self.tracking_uri = tracking_uri
        self.run_id: str | None = None
        self._client: Any = None
        self._finished = False

    def start(self, config: dict[str, Any], output_dir: Path) -> None:
        from mlflow.tracking import MlflowClient

        try:
            client = MlflowClient(self.tracking_uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
            experiment = client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id if experiment else client.create_experiment(name)
            )
            run = client.create_run(experiment_id, run_name=output_dir.name)
        except Exception as exc:  # MLflow raises many kinds for a store it cannot use
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ConfigError(
                f"--log-to mlflow: MLflow cannot start a run ({type(exc).__name__}: {first}); "
                "set MLFLOW_TRACKING_URI to a server (http://...) or to file:./mlruns with "
                "MLFLOW_ALLOW_FILE_STORE=true"
            ) from None
        self._client, self.run_id = client, run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, str(_plain(v))) for k, v in config.items()]
        client.log_batch(self.run_id, params=params)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._client is None:
            return
        for key, value in values.items():
            self._client.log_metric(self.run_id, key, value, step=step)

    def finish(self, metrics: dict[str, float], output_dir: Path) -> None:
        if self._client is None:
            return
        for key, value in metrics.items():
            self._client.log_metric(self.run_id, key, value, step=0)
        self._client.log_artifacts(self.run_id, str(output_dir), artifact_path="run")
        self._finished = True

    def close(self) -> None:
        if self._client is not None:
            self._client.set_terminated(self.run_id, "FINISHED" if self._finished else "FAILED")
            self._client = None
