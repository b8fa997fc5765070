"""The ``hf`` format: a run as ``transformers``' ``GPT2ForSequenceClassification``.

What transformers does, and how the export makes it equal llmclf's prediction:

- It pools the last token that is not ``pad_token_id`` (50256, ``<|endoftext|>``): llmclf's
  ``last-token`` pooling, so only such runs export. The tokenizer is told to read
  ``<|endoftext|>`` inside a text as plain text (``split_special_tokens``), as llmclf's does,
  so a text never holds the pad id itself and the pooled token is always its last real one.
- Its ``score`` layer has no bias; llmclf's head has one. The bias is folded into the final
  LayerNorm's bias (``W (h + d) = W h + b`` with ``d`` the least-norm solution of
  ``W d = b``), which gives the same logits; only ``hidden_states[-1]`` differs from llmclf's.
- Its tokenizer (``tokenizer.json``) strips surrounding whitespace, as llmclf does before
  encoding, and has ``model_max_length`` = the tokens the run reads: call the pipeline with
  ``truncation=True`` and a long text is cut exactly where llmclf cuts it.
- GPT-2 without a query/key/value bias gets a zero bias (the same function).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.padding import PaddingPolicy
from ..data.tokenizer import ENDOFTEXT
from ..errors import ExportError
from ..models.weights import hf_state_dict
from ..runs.checkpoint import save_tensors

if TYPE_CHECKING:
    from ..inference import Classifier

FOLD_TOLERANCE = 1e-6  # largest |W d - b| (relative to max |b|) accepted when folding the bias


def check_hf(classifier: Classifier) -> None:
    """Raise `ExportError` with the reason when transformers would not reproduce the run's
    predictions exactly."""
    architecture = classifier.manifest["model"]["architecture"]
    if architecture != "gpt2" or not hasattr(classifier.model, "backbone"):
        raise ExportError(
            f"the run's backbone is {architecture}; --format hf writes "
            "GPT2ForSequenceClassification, "
            "which holds GPT-2 only: use --format onnx"
        )
    if getattr(classifier.model.backbone.config, "attention", "causal") != "causal":
        raise ExportError(
            "the run's backbone attends bidirectionally (--attention bidirectional), but "
            "transformers' GPT-2 attention is causal only; use --format onnx"
        )
    pooling = classifier.model.pooling
    if pooling != "last-token":
        raise ExportError(
            f"the run pools {pooling!r}, but transformers' GPT2ForSequenceClassification pools "
            "each text's last real token only (llmclf's last-token); use --format onnx, which "
            "keeps any pooling, or train with --pooling last-token"
        )
    policy = classifier.policy
    if problem := classifier.batch_dependence():
        raise ExportError(f"the run's predictions depend on their batch ({problem})")
    if type(policy).collate is not PaddingPolicy.collate:
        raise ExportError(
            f"the run's padding policy {policy.name!r} cuts texts its own way, which a "
            "transformers tokenizer cannot be told to do; use --format onnx"
        )
    long_texts = policy.long_text.spec()
    if long_texts not in TRUNCATION_SIDES:
        raise ExportError(
            f"the run keeps the tokens of a long text by --long-texts {long_texts}, which a "
            "transformers tokenizer cannot do (it cuts one side only: head or tail); use "
            "--format onnx"
        )
    if (classifier.manifest.get("config") or {}).get("strip_html"):
        raise ExportError(
            "the run was trained with --strip-html, which a transformers tokenizer does not do; "
            "use --format onnx"
        )


TRUNCATION_SIDES = {"head": "right", "tail": "left"}  # long-text policy -> what HF cuts


def write_hf(classifier: Classifier, directory: Path) -> dict[str, Any]:
    """Write the model, its config and its tokenizer into ``directory``; return what the
    export record should add."""
    model = classifier.model
    state = hf_state_dict(model.backbone, prefix="transformer.")
    if not model.backbone.config.qkv_bias:
        for i in range(model.backbone.config.n_layer):
            n = state[f"transformer.h.{i}.attn.c_attn.weight"].shape[1]
            state[f"transformer.h.{i}.attn.c_attn.bias"] = torch.zeros(n)
    ln_f = "transformer.ln_f.bias"
    state[ln_f] = fold_head_bias(state[ln_f], model.head.weight, model.head.bias)
    state["score.weight"] = model.head.weight.detach().contiguous()
    save_tensors(directory / "model.safetensors", state, metadata={"format": "pt"})
    _write_json(directory / "config.json", hf_config(classifier))
    write_tokenizer(classifier, directory)
    return {"changes": [f"the head's bias is folded into {ln_f} (transformers' score has none)"]}


def fold_head_bias(
    ln_bias: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The final LayerNorm bias ``beta + d`` with ``weight @ d == bias``: the head without
    its bias then gives the same logits. Raises `ExportError` when no such ``d`` exists."""
    if bias is None:
        return ln_bias.detach().clone()
    w, b = weight.detach().double(), bias.detach().double()  # (K, C), (K,)
    d = torch.linalg.pinv(w) @ b  # (C,): the least-norm solution
    error = (w @ d - b).abs().max().item()
    if error > FOLD_TOLERANCE * max(1.0, b.abs().max().item()):
        raise ExportError(
            "the head's bias cannot be folded into the final LayerNorm (its weight's rows are "
            "linearly dependent), and transformers' score layer has no bias; use --format onnx"
        )
    return (ln_bias.detach().double() + d).to(ln_bias.dtype)


def hf_config(classifier: Classifier) -> dict[str, Any]:
    """``config.json``: transformers' GPT2Config of the run's backbone, with the labels."""
    c = classifier.model.backbone.config
    pad_id = classifier.tokenizer.pad_id
    labels = classifier.labels
    return {
        "architectures": ["GPT2ForSequenceClassification"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.context_length,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",  # GELU, tanh approximation
        "layer_norm_epsilon": c.layer_norm_eps,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "summary_first_dropout": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "bos_token_id": pad_id,
        "eos_token_id": pad_id,
        "pad_token_id": pad_id,  # how GPT2ForSequenceClassification finds the last real token
        "num_labels": len(labels),
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "problem_type": "single_label_classification",
        "torch_dtype": "float32",
    }


def write_tokenizer(classifier: Classifier, directory: Path) -> None:
    """GPT-2's tokenizer as transformers reads it: ``vocab.json`` (= ``encoder.json``),
    ``merges.txt`` (= ``vocab.bpe``), and a ``tokenizer.json`` that strips the text as llmclf
    does, plus ``tokenizer_config.json`` and ``special_tokens_map.json``."""
    source = classifier.tokenizer.directory
    shutil.copyfile(source / "encoder.json", directory / "vocab.json")
    shutil.copyfile(source / "vocab.bpe", directory / "merges.txt")
    vocab = json.loads((source / "encoder.json").read_text(encoding="utf-8"))
    lines = (source / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    merges = [line.split(" ") for line in lines if line and not line.startswith("#version")]
    _write_json(directory / "tokenizer.json", tokenizer_json(vocab, merges, classifier))
    special = {k: ENDOFTEXT for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    _write_json(
        directory / "tokenizer_config.json",
        {
            # transformers' GPT2Tokenizer class rebuilds its pipeline and would drop the
            # stripping in tokenizer.json; the generic class reads tokenizer.json as it is
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": classifier.max_tokens,  # truncation=True cuts where llmclf does
            "padding_side": "right",
            "truncation_side": TRUNCATION_SIDES[classifier.policy.long_text.spec()],
            "split_special_tokens": True,  # "<|endoftext|>" in a text is plain text
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            **special,
        },
    )
    _write_json(directory / "special_tokens_map.json", special)


def tokenizer_json(
    vocab: dict[str, int], merges: list[list[str]], classifier: Classifier
) -> dict[str, Any]:
    """The ``tokenizers`` library's serialisation of GPT-2's byte-level BPE, with a Strip
    normaliser (llmclf strips a text before encoding it)."""
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": classifier.tokenizer.pad_id,
                "content": ENDOFTEXT,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ],
        "normalizer": {"type": "Strip", "strip_left": True, "strip_right": True},
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": {"type": "ByteLevel", **byte_level, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
