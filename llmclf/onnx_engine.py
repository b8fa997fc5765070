"""The ``onnxruntime`` engine: `llmclf.inference.Classifier` over an ONNX export.

``Classifier.load(export_dir, engine="onnxruntime")`` (CLI: ``llmclf predict EXPORT_DIR
--engine onnxruntime``) loads a directory written by ``llmclf export RUN --format onnx``. The
texts are tokenised, cut and padded by the run's own padding policy (recorded in the export),
and the graph, pooling included, runs in onnxruntime; everything else (`Classifier.predict`,
`Classifier.predict_proba`, the `Prediction` fields) is the same as on the PyTorch path.

onnxruntime uses as many threads as torch does (``torch.get_num_threads()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .data.padding import policy_from_state
from .data.tokenizer import Tokenizer
from .device import check_device
from .errors import AssetError, CheckpointError, ConfigError
from .export import RECORD_FILE, read_record
from .export.onnx_graph import INPUTS, MODEL_FILE, OUTPUT
from .runs.manifest import model_spec, upgrade_manifest

if TYPE_CHECKING:
    from .inference import Classifier

ENGINES = ("torch", "onnxruntime")


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``llmclf export`` (any format)."""
    return read_record(Path(path)) is not None


class OnnxClassifierModel(nn.Module):
    """An ONNX export behind `SequenceClassifier`'s call: (input_ids, lengths) -> logits."""

    def __init__(self, session: Any, pooling: str, num_classes: int) -> None:
        super().__init__()
        self.session = session
        self.inputs = {i.name for i in session.get_inputs()}  # "first", "last": no lengths
        self.pooling = pooling
        self.num_classes = num_classes

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for right-padded token ids (B, T) with real ``lengths`` (B,)."""
        tensors = dict(zip(INPUTS, (input_ids, lengths), strict=True))
        feeds = {name: t.cpu().numpy() for name, t in tensors.items() if name in self.inputs}
        (logits,) = self.session.run([OUTPUT], feeds)
        return torch.from_numpy(logits)


def load_export(
    cls: type[Classifier],
    path: str | Path,
    *,
    engine: str,
    device: str = "auto",
    precision: str = "fp32",
    quantize: str | None = None,
) -> Classifier:
    """A `Classifier` running the ONNX export in ``path`` with onnxruntime.

    Raises `ConfigError` for an unknown engine or an option the engine does not have, and
    `CheckpointError` for a directory that is not an ONNX export (or a run directory given
    with ``engine="onnxruntime"``: it names the export command).
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
    check_device(device)
    path = Path(path)
    record = read_record(path)
    if engine == "torch":  # only an export reaches here with engine="torch"
        raise CheckpointError(
            f"{path} is an export made by llmclf export ({record and record['format']}); "
            "load it with engine='onnxruntime' (llmclf predict --engine onnxruntime) or load "
            f"the run it came from, {(record or {}).get('source', {}).get('run')}"
        )
    if record is None or record.get("format") != "onnx":
        is_run = (path / "llmclf.json").is_file()
        what = "a run directory" if is_run else "not an ONNX export"
        what = "a transformers export" if record else what
        raise CheckpointError(
            f"{path} is {what}; the onnxruntime engine loads an ONNX export: make one with "
            f"llmclf export {path if is_run else 'RUN'} --format onnx --output DIR"
        )
    if precision != "fp32" or quantize is not None:
        raise ConfigError(
            "the onnxruntime engine runs the exported fp32 graph: leave precision='fp32' and "
            "quantize=None, or use engine='torch' on the run directory"
        )
    manifest = record.get("run")
    try:
        tokenizer = Tokenizer.from_dir(path)
    except AssetError as exc:
        raise CheckpointError(f"{path}: tokenizer files are missing or corrupt ({exc})") from None
    try:
        manifest = upgrade_manifest(manifest, path / RECORD_FILE)
        # the family's own config knows its context (GPT-2: n_ctx; Llama: max_position_embeddings)
        context = model_spec(manifest, path / RECORD_FILE).check().context_length
        policy = policy_from_state(manifest["padding"], context, tokenizer.pad_id)
        pooling, labels = manifest["model"]["pooling"], list(manifest["labels"])
    except (KeyError, TypeError, ConfigError, CheckpointError) as exc:
        raise CheckpointError(
            f"{path / RECORD_FILE}: its run manifest is damaged ({type(exc).__name__}: {exc}); "
            "export the run again"
        ) from None
    session = _session(path / MODEL_FILE, device)
    model = OnnxClassifierModel(session, pooling, len(labels))
    return cls(model, tokenizer, policy, labels, manifest=manifest, device=torch.device("cpu"))


def _session(model_file: Path, device: str) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        from .export import missing_extra

        raise missing_extra("onnxruntime", "the onnxruntime engine") from None
    if not model_file.is_file():
        raise CheckpointError(f"{model_file} is missing; export the run again")
    available = ort.get_available_providers()
    if device in ("cuda", "mps") and not (
        device == "cuda" and "CUDAExecutionProvider" in available
    ):
        raise ConfigError(
            f"device {device!r}: this onnxruntime has no provider for it ({', '.join(available)}); "
            "use device='cpu' or 'auto', or install onnxruntime-gpu for CUDA"
        )
    providers = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(model_file), options, providers=providers)
