"""The Llama family against ``transformers.LlamaForSequenceClassification`` (issue 16).

SmolLM2-135M's shape (30 layers, 576 wide, 9 query / 3 key-value heads) with random weights,
written once in Hugging Face's layout into a local directory that both sides load: llmclf as
``--backbone DIR --weights pretrained``, transformers with ``from_pretrained(DIR)``. No
SmolLM2 tokenizer can be downloaded here, so the directory's ``tokenizer.json`` is GPT-2's BPE
(built with `tokenizers`) and the vocabulary is GPT-2's 50,257 tokens instead of 49,152: only
the embedding table differs, which costs a lookup. The recipe is the book's chapter 6 (the last
block, the final norm and the head train), on SMS, with the same data and batches as
``compare.py``'s GPT-2 rows.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from measurements import _data, _lengths, _scores, _threads, peak_rss_mib, timed_fit

HERE = Path(__file__).resolve().parent
PAD_ID = 50256  # GPT-2's <|endoftext|>, the directory's pad/bos/eos token


def make_backbone_dir(params: dict[str, Any]) -> dict[str, Any]:
    """Write the random-weight checkpoint, its config.json and tokenizer.json (once)."""
    _threads(params)
    from safetensors.torch import save_file

    from llmclf.models.hf_sizes import SIZES
    from llmclf.models.llama import Llama, LlamaConfig
    from llmclf.settings import gpt2_bpe_dir

    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_data_hf_tokenizer import build_gpt2_tokenizer

    directory = Path(params["dir"])
    directory.mkdir(parents=True, exist_ok=True)
    hf = {
        **SIZES[params["size"]].config,
        "vocab_size": 50257,
        "bos_token_id": PAD_ID,
        "eos_token_id": PAD_ID,
        "pad_token_id": PAD_ID,
    }
    torch.manual_seed(123)
    model = Llama(LlamaConfig.from_hf_config(hf))
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(hf, indent=2))
    build_gpt2_tokenizer(gpt2_bpe_dir()).save(str(directory / "tokenizer.json"))
    n = sum(p.numel() for p in model.parameters())
    return {"parameters": n, "dir": str(directory), "size": params["size"]}


def fit_llmclf_llama(params: dict[str, Any]) -> dict[str, Any]:
    """The chapter's recipe on the directory's weights; epochs past the first projected."""
    _threads(params)
    from llmclf import TrainConfig

    config = TrainConfig(
        dataset=params["dataset"],
        backbone=params["dir"],
        weights="pretrained",
        epochs=params["epochs"],
        output=params["output"],
    )
    _, phases = timed_fit(config, params["target_epochs"])
    return {**phases, "rss_mib": peak_rss_mib()}


def _hf_model(params: dict[str, Any], num_labels: int):
    """LlamaForSequenceClassification on the directory's weights, the book's trainable set."""
    from transformers import LlamaForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()  # the score head is new: its "newly initialized" notice
    logging.disable_progress_bar()
    torch.manual_seed(123)
    model = LlamaForSequenceClassification.from_pretrained(
        params["dir"], num_labels=num_labels, torch_dtype=torch.float32
    )
    model.config.pad_token_id = PAD_ID
    model.requires_grad_(False)
    for module in (model.model.layers[-1], model.model.norm, model.score):
        module.requires_grad_(True)
    return model


def fit_hf_llama(params: dict[str, Any]) -> dict[str, Any]:
    """transformers with the book's loop and per-batch padding: ``sample_steps`` steps spread
    over epoch 1 and one periodic evaluation, projected to ``target_epochs`` by padded tokens
    (as ``measurements.fit_hf`` does for GPT-2)."""
    _threads(params)
    import hf_reference as ref
    import recipe

    from llmclf.data.padding import get_policy
    from llmclf.options import SPLITS

    data = _data(params)
    policy = get_policy("pad-batch", None, 2048, PAD_ID)
    policy.fit(_lengths(data)["train"])
    splits = {name: getattr(data, name).token_ids for name in SPLITS}
    plan = recipe.Recipe.of(splits, policy, params["target_epochs"])
    model = _hf_model(params, len(data.labels))
    loop = ref.BookLoop(model, {n: (s, getattr(data, n).labels) for n, s in splits.items()}, None)
    n_batches, k = len(plan.train[0]), params["sample_steps"]
    sample = {round(j * (n_batches - 1) / (k - 1)) for j in range(k)}
    done = loop.epoch(0, sample=sample)
    step_rate = sum(loop.step_times[1:]) / recipe.tokens(plan.train[0][i] for i in done[1:])
    t0 = time.perf_counter()
    loop.evaluate("train", 5)
    loop.evaluate("validation", 5)
    periodic_s = time.perf_counter() - t0
    eval_rate = periodic_s / recipe.tokens(plan.periodic)
    epochs = range(params["target_epochs"])
    train_tokens = sum(recipe.tokens(plan.train[e]) for e in epochs)
    eval_tokens = sum(recipe.tokens(plan.evaluations(e)) for e in epochs)
    return {
        "steps_run": len(done),
        "step_s": sum(loop.step_times[1:]) / (len(done) - 1),
        "periodic_eval_s": periodic_s,
        "fit5_s": step_rate * train_tokens + eval_rate * eval_tokens,
        "rss_mib": peak_rss_mib(),
    }


def predict_llmclf_llama(params: dict[str, Any]) -> dict[str, Any]:
    """Classifier.predict (tokenising included) over the test split, fp32."""
    _threads(params)
    from llmclf import Classifier

    data = _data(params)
    texts, labels = data.test.texts, data.test.labels
    clf = Classifier.load(params["run_dir"], device="cpu")
    clf.predict(texts[:16])  # warm-up
    start = time.perf_counter()
    predictions = clf.predict(texts)
    seconds = time.perf_counter() - start
    ids = [clf.labels.index(p.label) for p in predictions]
    return {**_scores(texts, labels, ids, seconds), "rss_mib": peak_rss_mib()}


def predict_hf_llama(params: dict[str, Any]) -> dict[str, Any]:
    """transformers on the run's trained weights: per-batch padding, input order, fp32."""
    _threads(params)
    import hf_reference as ref
    from safetensors.torch import load_file

    data = _data(params)
    texts, labels = data.test.texts, data.test.labels
    model = _hf_model(params, len(data.labels))
    trained = load_file(Path(params["run_dir"]) / "model.safetensors")
    state = {
        ("model." + k[len("backbone.") :] if k.startswith("backbone.") else k): v
        for k, v in trained.items()
    }
    head_w, head_b = state.pop("head.weight"), state.pop("head.bias")
    score = torch.nn.Linear(head_w.shape[1], head_w.shape[0], bias=True)
    with torch.no_grad():
        score.weight.copy_(head_w)
        score.bias.copy_(head_b)
    model.score = score
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("score.")]:
        raise RuntimeError(f"weights do not match: missing {missing}, unexpected {unexpected}")
    from llmclf.data.tokenizer import get_tokenizer

    tokenizer = get_tokenizer("tokenizer.json", directory=params["dir"])
    encode = lambda batch: tokenizer.encode_batch([t.strip() for t in batch])  # noqa: E731
    ref.predict_labels(model, encode(texts[:16]), params["batch_size"])  # warm-up
    start = time.perf_counter()  # tokenising included, as Classifier.predict's time includes it
    ids = ref.predict_labels(model, encode(texts), params["batch_size"]).tolist()
    seconds = time.perf_counter() - start
    return {**_scores(texts, labels, ids, seconds), "rss_mib": peak_rss_mib()}


WORKERS = {
    "llama-dir": make_backbone_dir,
    "fit-llmclf-llama": fit_llmclf_llama,
    "fit-hf-llama": fit_hf_llama,
    "predict-llmclf-llama": predict_llmclf_llama,
    "predict-hf-llama": predict_hf_llama,
}


def plan(mode: str, threads: int, dataset: str, work: Path) -> dict[str, dict[str, Any]]:
    """The Llama measurements' parameters (smoke: llama-tiny's shape, seconds)."""
    smoke = mode == "smoke"
    common = {
        "threads": threads,
        "dataset": dataset,
        "dir": str(work / "llama-shape"),
        "backbone": str(work / "llama-shape"),  # the directory, as `measurements._data` reads it
        "size": "llama-tiny" if smoke else "smollm2-135m",
    }
    run_dir = str(work / "llmclf-llama")
    return {
        "llama-dir": common,
        "fit-llmclf-llama": {**common, "epochs": 1, "target_epochs": 5, "output": run_dir},
        "fit-hf-llama": {**common, "target_epochs": 5, "sample_steps": 3 if smoke else 7},
        "predict-llmclf-llama": {**common, "run_dir": run_dir},
        "predict-hf-llama": {**common, "run_dir": run_dir, "batch_size": 32},
    }


def render(r: dict[str, Any]) -> list[str]:
    """The Llama section of the report (empty when it was not measured)."""
    if "fit-llmclf-llama" not in r:
        return []
    from report import _duration, _table

    ours, hf = r["fit-llmclf-llama"], r["fit-hf-llama"]
    p_ours, p_hf = r["predict-llmclf-llama"], r["predict-hf-llama"]
    epoch = sum(ours["epoch_s"]) / len(ours["epoch_s"])
    same = sum(a == b for a, b in zip(p_ours["labels"], p_hf["labels"], strict=True))
    rows = [
        [
            "llmclf fp32",
            _duration(ours["fit5_s"]),
            f"{ours['rss_mib']:.0f} MiB",
            f"{p_ours['texts_per_s']:.1f}",
            f"{100 * p_ours['accuracy']:.1f}%",
            f"setup {ours['setup_s']:.0f} + cache {ours['cache_s']:.0f} + 5 x {epoch:.1f} "
            f"+ final {ours['final_s']:.0f} s (1 epoch run)",
        ],
        [
            "transformers fp32, per-batch padding",
            _duration(hf["fit5_s"]),
            f"{hf['rss_mib']:.0f} MiB",
            f"{p_hf['texts_per_s']:.1f}",
            f"{100 * p_hf['accuracy']:.1f}% ({same}/{p_hf['n']} labels equal)",
            f"{hf['steps_run']} steps ({hf['step_s']:.2f} s a step) + 1 periodic evaluation, "
            "5 epochs projected by tokens",
        ],
    ]
    made = r["llama-dir"]
    ratios = llama_ratios(r)
    return [
        "",
        f"Llama family: {made['size']}'s shape with GPT-2's vocabulary "
        f"({made['parameters'] / 1e6:.0f}M parameters), random weights, the chapter's recipe, "
        "5 epochs",
        _table(["implementation", "fit", "peak RSS", "test texts/s", "test acc", "how"], rows),
        f"fit {ratios['fit']:.2f}x (target 4x), predict {ratios['predict']:.2f}x (target 1.5x), "
        f"peak RSS {ours['rss_mib']:.0f} vs {hf['rss_mib']:.0f} MiB",
    ]


def llama_ratios(r: dict[str, Any]) -> dict[str, float]:
    return {
        "fit": r["fit-hf-llama"]["fit5_s"] / r["fit-llmclf-llama"]["fit5_s"],
        "predict": r["predict-llmclf-llama"]["texts_per_s"] / r["predict-hf-llama"]["texts_per_s"],
    }
