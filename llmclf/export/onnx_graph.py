"""The ``onnx`` format: the whole classifier, pooling included, as one ONNX graph.

Inputs ``input_ids`` (batch, tokens) int64, right-padded with the pad id, and ``lengths``
(batch,) int64, each row's real tokens (absent when the pooling reads none: ``first``,
``last``); output ``logits`` (batch, num_classes) float32. Batch
and token axes are dynamic. The padding policy (how many tokens a text keeps, how wide a batch
is) stays outside the graph, in the run's ``llmclf.json`` recorded beside it, so that
`llmclf.onnx_engine` batches texts exactly as the PyTorch path does.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import missing_extra

if TYPE_CHECKING:
    from ..inference import Classifier

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
OPSET = 17  # LayerNormalization is one operator from opset 17
INPUT_DOCS = {
    "input_ids": "int64 (batch, tokens), right-padded with pad_id",
    "lengths": "int64 (batch,), each row's real tokens (1..tokens)",
}
INPUTS = tuple(INPUT_DOCS)
OUTPUT = "logits"


def require_onnx() -> None:
    """Raise a one-line error naming the ``export`` extra unless ``onnx`` imports."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise missing_extra("onnx", "llmclf export --format onnx") from None


def write_onnx(classifier: Classifier, directory: Path) -> dict[str, Any]:
    """Write ``model.onnx`` (checked with ``onnx.checker``), ``labels.json`` and the
    tokenizer's files into ``directory``; return what the export record should add."""
    import onnx

    model = classifier.model
    ids = torch.full((2, 3), classifier.tokenizer.pad_id, dtype=torch.long)  # any example
    lengths = torch.tensor([3, 2])
    path = directory / MODEL_FILE
    with warnings.catch_warnings():  # the TorchScript exporter's notes on tracing and itself
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, lengths),
            str(path),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "lengths": {0: "batch"},
                OUTPUT: {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed
        )
    onnx.checker.check_model(str(path))  # by path: models over 2 GB keep external data
    graph_inputs = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(classifier.tokenizer.directory / name, directory / name)
    labels = json.dumps(list(classifier.labels), indent=2, ensure_ascii=False) + "\n"
    (directory / LABELS_FILE).write_text(labels, encoding="utf-8")
    return {
        "onnx": {
            "file": MODEL_FILE,
            "opset": OPSET,
            "inputs": {  # pooling first and last read no lengths: the graph has no such input
                name: about for name, about in INPUT_DOCS.items() if name in graph_inputs
            },
            "outputs": {OUTPUT: "float32 (batch, num_classes); softmax gives probabilities"},
            "pad_id": classifier.tokenizer.pad_id,
            "pooling": model.pooling,
        }
    }
