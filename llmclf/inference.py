"""``Classifier``: load a run directory and predict, with no network and no ``LLMCLF_HOME``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import onnx_engine
from .data.hf_tokenizer import tokenizer_from_dir
from .data.long_texts import aggregate_examples, to_examples
from .data.padding import combination_problem, policy_from_state
from .data.tokenizer import Tokenizer
from .device import (
    autocast,
    check_device,
    check_precision,
    resolve_device,
    resolve_precision,
)
from .errors import (
    AssetError,
    BatchDependentRunWarning,
    CheckpointError,
    ConfigError,
    UnfinishedRunWarning,
    UsageError,
)
from .models.classifier import SequenceClassifier
from .models.lora import merge_lora
from .models.spec import ModelSpec, load_classifier
from .runs import checkpoint as ckpt
from .runs.manifest import model_spec
from .runs.rundir import RunDirectory

DEFAULT_BATCH_SIZE = 32
QUANTIZE_SCHEMES = ("int8",)


@dataclass(frozen=True)
class Prediction:
    """One text's prediction: the label, its probability, every label's probability, and how
    many of the text's tokens the model read (``tokens_used``) and cut off (``tokens_dropped``:
    past the run's `Classifier.max_tokens`)."""

    label: str
    score: float
    probabilities: dict[str, float]
    tokens_used: int = 0
    tokens_dropped: int = 0

    @property
    def truncated(self) -> bool:
        """Whether the text was longer than the model reads, so its end was cut off."""
        return self.tokens_dropped > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": self.score,
            "probabilities": self.probabilities,
            "tokens_used": self.tokens_used,
            "tokens_dropped": self.tokens_dropped,
        }


class Classifier:
    """A trained classifier rebuilt from a run directory (safetensors + JSON only)."""

    def __init__(
        self,
        model: SequenceClassifier,
        tokenizer: Tokenizer,
        policy: Any,
        labels: Sequence[str],
        *,
        manifest: dict[str, Any],
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.policy = policy
        self.labels = tuple(labels)
        self.manifest = manifest
        self.device = device
        self.amp_dtype = amp_dtype
        # Runs saved before llmclf refused batch-dependent padding: predict one text at a time,
        # so a text's prediction never depends on the others (see `batch_dependence`).
        self.one_at_a_time = self.batch_dependence() is not None

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        *,
        device: str = "auto",
        precision: str = "fp32",
        quantize: str | None = None,
        engine: str = "torch",
    ) -> Classifier:
        """Rebuild the model in ``run_dir``. Never unpickles; never touches the network.

        Args:
            device: auto (cuda, then mps, then cpu) | cpu | cuda | mps.
            precision: fp32 | bf16 | fp16 | auto (bf16 where the device is fast at it).
            quantize: ``"int8"``: dynamic int8 quantisation of the linear layers (CPU only);
                faster on most CPUs at a small accuracy cost (``benchmarks/`` measures it).
            engine: ``"torch"``, or ``"onnxruntime"`` for a directory written by
                ``llmclf export RUN --format onnx`` (see `llmclf.onnx_engine`).

        Raises `ConfigError` for a bad argument, `CheckpointError` for a run directory that is
        incomplete, or whose ``llmclf.json`` does not match its weights. Warns
        (`UnfinishedRunWarning`) when the run's training never finished.
        """
        if not isinstance(run_dir, str | os.PathLike):
            raise ConfigError(f"run_dir: must be a directory path, got {run_dir!r}")
        if engine != "torch" or onnx_engine.is_export(run_dir):
            kwargs = {"device": device, "precision": precision, "quantize": quantize}
            return onnx_engine.load_export(cls, run_dir, engine=engine, **kwargs)
        run = _run_directory(run_dir, device, precision, quantize)
        run_dir = run.path
        manifest = run.read_manifest()
        spec = _check_manifest(run.manifest_file, manifest)
        model = _load_model(run, spec)
        dev = resolve_device(device)
        if quantize is not None:
            model = quantize_linear_layers(model, quantize, dev)
        tokenizer, policy = _load_inputs(run, manifest, model.backbone.config.context_length)
        if not manifest.get("complete", True):
            warnings.warn(unfinished_message(run_dir, manifest), UnfinishedRunWarning, stacklevel=2)
        model.to(dev)
        classifier = cls(
            model,
            tokenizer,
            policy,
            manifest["labels"],
            manifest=manifest,
            device=dev,
            amp_dtype=resolve_precision(precision, dev),
        )
        if problem := classifier.batch_dependence():
            warnings.warn(
                f"{run_dir} was trained when llmclf allowed this: {problem}. Its texts are "
                "predicted one at a time (slower; evaluate may differ from metrics.json); "
                "retrain it to predict in batches",
                BatchDependentRunWarning,
                stacklevel=2,
            )
        return classifier

    @property
    def max_tokens(self) -> int:
        """The most tokens of one text the model reads at once: the rest of a longer text is
        cut, or under ``windows`` read in further windows of this many tokens."""
        return self.policy.keep()

    def batch_dependence(self) -> str | None:
        """Why this run's padding and pooling would make a prediction depend on its batch
        (only runs saved by an earlier llmclf), or None."""
        attention = getattr(getattr(self.model, "backbone", None), "config", None)
        attention = getattr(attention, "attention", "causal")
        return combination_problem(self.policy, self.model.pooling, attention)

    # ------------------------------------------------------------------------------------------
    def predict_proba(
        self,
        texts: Sequence[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Class probabilities (N, K) in input order; batches are sorted by length internally.

        ``progress``, when given, is called after each batch with the number of texts it scored
        (for a progress bar). Raises `UsageError` for one string instead of a list, or for an
        item that is not a str, and `ConfigError` for a ``batch_size`` that is not an integer
        >= 1.
        """
        _check_batch_size(batch_size)
        texts = _checked_texts(texts, "predict_proba")
        return self._probabilities(self._encode(texts), batch_size, progress)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        from .data.clean import clean_text  # imports pandas: only once texts are scored

        strip_html = bool((self.manifest.get("config") or {}).get("strip_html", False))
        cleaned = [clean_text(t, strip_html=strip_html) for t in texts]  # as training did
        return self.tokenizer.encode_batch(cleaned)

    def _probabilities(
        self,
        token_ids: list[list[int]],
        batch_size: int,
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Probabilities (N, K), one row per text; a text's row never depends on the other
        texts. Under a windowed long-text policy each text's windows are scored as examples
        (``batch_size`` windows a batch) and aggregated into its row; ``progress`` then counts
        the texts whose every window is scored."""
        long_text = self.policy.long_text
        if not getattr(long_text, "windowed", False):
            on_batch = None if progress is None else (lambda chunk: progress(len(chunk)))
            return self._example_probabilities(token_ids, batch_size, on_batch)
        examples, owners = to_examples(token_ids, long_text, self.max_tokens)
        assert owners is not None  # a windowed policy says whose each window is
        probs = self._example_probabilities(examples, batch_size, _texts_done(owners, progress))
        return aggregate_examples(probs, owners, long_text)[1]

    def _example_probabilities(
        self,
        token_ids: list[list[int]],
        batch_size: int,
        on_batch: Callable[[list[int]], None] | None = None,
    ) -> torch.Tensor:
        """Probabilities (E, K) of each example, batched by length; ``on_batch`` receives
        each batch's positions once it is scored."""
        if self.one_at_a_time:
            batch_size = 1
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        out = torch.empty(len(token_ids), len(self.labels))
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = self.policy.collate([token_ids[i] for i in chunk])
                logits = self.model(batch.input_ids.to(self.device), batch.lengths.to(self.device))
                out[chunk] = torch.softmax(logits.float(), dim=-1).cpu()
                if on_batch is not None:
                    on_batch(chunk)
        return out

    def predict(
        self,
        texts: Iterable[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[Prediction]:
        """One `Prediction` per text, in input order (an empty text included).

        ``progress``, when given, is called after each batch with the number of texts it scored
        (for a progress bar). Raises `UsageError` for one string instead of a list, or for an
        item that is not a str, and `ConfigError` for a ``batch_size`` that is not an integer
        >= 1.
        """
        _check_batch_size(batch_size)
        texts = _checked_texts(texts, "predict")
        if not texts:
            return []
        token_ids = self._encode(texts)  # texts are checked already
        probs = self._probabilities(token_ids, batch_size, progress)
        keep = self.max_tokens
        read = getattr(self.policy.long_text, "tokens_read", lambda length, n: min(length, n))
        predictions = []
        for row, ids in zip(probs.tolist(), token_ids, strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            used = read(len(ids), keep)  # windows: every token their windows cover
            predictions.append(
                Prediction(
                    self.labels[best],
                    row[best],
                    dict(zip(self.labels, row, strict=True)),
                    tokens_used=used,
                    tokens_dropped=len(ids) - used,
                )
            )
        return predictions

    @property
    def complete(self) -> bool:
        """False when the run's training stopped before its last epoch (an unfinished run)."""
        return bool(self.manifest.get("complete", True))

    def info(self) -> dict[str, Any]:
        """Labels, backbone, pooling and versions, for display and serving."""
        m = self.manifest
        return {
            "labels": list(self.labels),
            "backbone": m["backbone"]["name"],
            "pooling": m["model"]["pooling"],
            "trainable": m["trainable"]["policy"],
            "padding": m["padding"],
            "llmclf_version": m.get("llmclf_version", "unknown"),
            "complete": self.complete,
        }


def _texts_done(
    owners: list[int], progress: Callable[[int], None] | None
) -> Callable[[list[int]], None] | None:
    """An ``on_batch`` that calls ``progress`` with the number of texts a batch of windows
    finished (texts whose last unscored window it held)."""
    if progress is None:
        return None
    left: dict[int, int] = {}
    for text in owners:
        left[text] = left.get(text, 0) + 1

    def on_batch(chunk: list[int]) -> None:
        finished = 0
        for example in chunk:
            left[owners[example]] -= 1
            finished += left[owners[example]] == 0
        if finished:
            progress(finished)

    return on_batch


def _check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: must be an integer >= 1, got {batch_size!r}")


def unfinished_message(run_dir: str | Path, manifest: dict[str, Any]) -> str:
    """One line saying that ``run_dir`` holds an unfinished run, and how to finish it."""
    done = manifest.get("epochs_completed", 0)
    total = (manifest.get("config") or {}).get("epochs", "?")
    return (
        f"{run_dir} is an unfinished run (training stopped after epoch {done} of {total}); "
        f"its model is not the final one: finish it with llmclf fit --resume {run_dir}"
    )


def _run_directory(
    run_dir: str | os.PathLike[str], device: str, precision: str, quantize: str | None
) -> RunDirectory:
    """The run directory `Classifier.load` reads, once its arguments are checked."""
    check_device(device)
    check_precision(precision)
    if quantize is not None and quantize not in QUANTIZE_SCHEMES:
        raise ConfigError(
            f"quantize: must be None or one of {', '.join(QUANTIZE_SCHEMES)}, got {quantize!r}"
        )
    if not Path(run_dir).is_dir():
        raise CheckpointError(
            f"run directory {run_dir} does not exist; pass a directory made by llmclf fit"
        )
    return RunDirectory(run_dir)


def _check_manifest(path: Path, manifest: dict[str, Any]) -> ModelSpec:
    """The model spec of a (current-schema) ``llmclf.json``; a one-line `CheckpointError`
    naming the first field that is missing or wrong (a hand-edited or damaged file)."""

    def fail(problem: str) -> None:
        raise CheckpointError(f"{path}: {problem}; restore the file the run wrote")

    for key, kind in (
        ("backbone", dict),
        ("model", dict),
        ("trainable", dict),
        ("padding", dict),
        ("labels", list),
    ):
        if key not in manifest:
            fail(f"has no {key!r} field")
        if not isinstance(manifest[key], kind):
            fail(f"{key!r} must be a JSON {'object' if kind is dict else kind.__name__}")
    spec = model_spec(manifest, path)
    labels = manifest["labels"]
    if not all(isinstance(name, str) for name in labels) or len(set(labels)) != len(labels):
        fail(f"labels must be distinct strings, got {labels!r}")
    if len(labels) != spec.num_classes:
        count = _count(len(labels), "label")
        fail(f"has {count} {labels} but model.num_classes is {spec.num_classes}")
    if not isinstance(manifest["trainable"].get("policy"), str):
        fail("trainable.policy must be a string such as last-block")
    return spec


def _load_model(run: RunDirectory, spec: ModelSpec) -> SequenceClassifier:
    """The run's model in eval mode, adapters merged, nothing trainable (never unpickles)."""
    state = ckpt.load_tensors(run.model_file)
    try:
        model = load_classifier(
            spec, state, check=lambda model, state: _check_shapes(run.model_file, model, state)
        )
    except ConfigError as exc:
        raise CheckpointError(f"{run.model_file} does not match llmclf.json: {exc}") from None
    if spec.adapters is not None:
        merge_lora(model)
    return model.requires_grad_(False)


def _load_inputs(
    run: RunDirectory, manifest: dict[str, Any], context: int
) -> tuple[Tokenizer, Any]:
    """The run's tokenizer (from its own files) and its padding policy."""
    try:
        tokenizer = tokenizer_from_dir(run.path)
    except AssetError as exc:
        raise CheckpointError(
            f"{run.path}: tokenizer files are missing or corrupt ({exc})"
        ) from None
    try:
        policy = policy_from_state(manifest["padding"], context, tokenizer.pad_id)
    except CheckpointError as exc:
        raise CheckpointError(f"{run.manifest_file}: {exc}") from None
    return tokenizer, policy


def _check_shapes(path: Path, model: SequenceClassifier, state: dict[str, torch.Tensor]) -> None:
    """Every tensor in the weights file has the shape ``llmclf.json`` describes."""
    for name, want in model.state_dict().items():  # in the model's order: head.weight first
        tensor = state.get(name)
        if tensor is None or tuple(want.shape) == tuple(tensor.shape):
            continue  # a missing tensor is reported by load_state_dict's check
        where = "model.num_classes" if name.startswith("head.") else "model.config"
        raise CheckpointError(
            f"{path} does not match llmclf.json: {name} has shape {tuple(tensor.shape)} in the "
            f"weights but {tuple(want.shape)} by llmclf.json's {where}; restore the run's "
            "llmclf.json"
        )


def _checked_texts(texts: Iterable[str], method: str) -> list[str]:
    """``texts`` as a list, or a one-line `UsageError` naming what is not a text."""
    if isinstance(texts, (str, bytes, bytearray)):  # iterating would give one text per character
        raise UsageError(
            f"{method} takes a list of texts, not one string; wrap it: {method}([text])"
        )
    try:
        texts = list(texts)
    except TypeError:
        raise UsageError(
            f"{method} takes a list of texts, got {_a(type(texts).__name__)}; pass a list of str"
        ) from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            what = "None" if text is None else _a(type(text).__name__)
            raise UsageError(
                f'texts[{i}] is {what}, not a str; pass every text as a str ("" for a missing one)'
            )
    return texts


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def quantize_linear_layers(
    model: SequenceClassifier, scheme: str, device: torch.device
) -> SequenceClassifier:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8, activations on the fly)."""
    if scheme != "int8":
        raise UsageError(f"quantize: only 'int8' is supported, got {scheme!r}")
    if device.type != "cpu":
        raise UsageError("quantize: int8 dynamic quantisation runs on CPU; add --device cpu")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch marks the eager API deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
