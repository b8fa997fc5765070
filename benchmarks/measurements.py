"""The measurements. Each runs in its own process (so peak RSS is its own) and returns a dict.

Every worker takes one ``params`` dict (JSON-able) and sets the thread count first, so every
measurement of one ``compare.py`` run uses the same number of threads.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import recipe
import torch

from llmclf.options import SPLITS


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _threads(params: dict[str, Any]) -> None:
    torch.set_num_threads(params["threads"])


def _data(params: dict[str, Any]):
    """The prepared splits exactly as the Trainer makes them (same spec, same seed), for the
    backbone named ``params["backbone"]`` (a registry name or a Hugging Face directory), texts
    cut to ``params["max_length"]`` tokens if given (as ``--max-length``)."""
    from llmclf.data.pipeline import DataSpec, prepare_data
    from llmclf.data.tokenizer import get_tokenizer
    from llmclf.models.spec import backbone_entry

    entry = backbone_entry(params["backbone"])
    tokenizer = get_tokenizer(entry.tokenizer, entry.tokenizer_dir())
    cap = min(entry.context_length, params.get("max_length") or entry.context_length)
    return prepare_data(DataSpec(dataset=params["dataset"]), tokenizer, cap)


def _pooled_top() -> bool:
    """Whether llmclf runs its last block at the pooled position only (FLOPs depend on it)."""
    from llmclf.models.gpt2 import Block

    return hasattr(Block, "forward_at")


def _shape(backbone: str) -> dict[str, int]:
    from llmclf.models.spec import backbone_entry

    c = backbone_entry(backbone).size
    return {
        "n_layer": c.n_layer,
        "n_embd": c.n_embd,
        "n_head": c.n_head,
        "context_length": c.context_length,
    }


def _model_shape(shape: dict[str, int]) -> dict[str, int]:
    """The keyword arguments of `hf_reference.build_model`."""
    return {k: shape[k] for k in ("n_layer", "n_embd", "n_head")}


# ----- matmul peak -------------------------------------------------------------------------------
def matmul_peak(params: dict[str, Any]) -> dict[str, Any]:
    """Best GFLOP/s of torch.matmul on square matrices, fp32 and bf16: the best of three
    timings of about ``seconds`` each, over every size."""
    _threads(params)
    result = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for n in params["sizes"]:
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            a @ b  # warm-up
            for _ in range(3):
                start, count = time.perf_counter(), 0
                while (elapsed := time.perf_counter() - start) < params["seconds"] or count < 2:
                    a @ b
                    count += 1
                best = max(best, 2 * n**3 * count / elapsed / 1e9)
        result[name] = best
    return result


# ----- llmclf fit --------------------------------------------------------------------------------
class _Clock:
    """A Reporter that keeps every event with the time it arrived; the phases' and epochs'
    own durations come in the events (``phase_end`` and ``epoch_end`` carry ``seconds``)."""

    def __init__(self) -> None:
        from llmclf.reporting import Reporter

        class Timed(Reporter):
            def event(inner, name: str, **data: Any) -> None:
                self.events.append((name, time.perf_counter(), data))

        self.events: list[tuple[str, float, dict]] = []
        self.reporter = Timed()

    def times(self, name: str) -> list[float]:
        return [t for n, t, _ in self.events if n == name]

    def data(self, name: str) -> list[dict[str, Any]]:
        return [d for n, _, d in self.events if n == name]

    def phase_seconds(self, phase: str) -> float:
        return sum(d["seconds"] for d in self.data("phase_end") if d["phase"] == phase)


def _run_policy(run_dir: str | Path):
    """The padding policy a run trained with (fitted), rebuilt from its ``llmclf.json``."""
    import json

    from llmclf.data.padding import policy_from_state
    from llmclf.runs.manifest import upgrade_manifest

    path = Path(run_dir) / "llmclf.json"
    manifest = upgrade_manifest(json.loads(path.read_text()), path)
    context = manifest["model"]["config"]["context_length"]
    return policy_from_state(manifest["padding"], context, manifest["tokenizer"]["pad_id"])


def timed_fit(config: Any, target_epochs: int) -> tuple[Any, dict[str, Any]]:
    """Fit ``config`` through the public API, timed phase by phase from the reporter's events
    (nothing inside llmclf is patched): the run, and its phases in seconds.

    With fewer epochs than ``target_epochs`` the rest is projected from the mean epoch:
    setup + cache build + target_epochs x epoch + final evaluation and checkpoint.
    """
    from llmclf import Trainer

    clock = _Clock()
    start = time.perf_counter()
    run = Trainer(config, reporter=clock.reporter).fit(overwrite=True)
    total = time.perf_counter() - start
    epoch_s = [d["seconds"] for d in clock.data("epoch_end")]
    cache_s = clock.phase_seconds("trunk cache")
    setup = clock.times("epoch_start")[0] - start - cache_s
    final = total - (clock.times("epoch_end")[-1] - start)
    mean_epoch = sum(epoch_s) / len(epoch_s)
    projected = len(epoch_s) != target_epochs
    return run, {
        "epochs_run": len(epoch_s),
        "setup_s": setup,
        "cache_s": cache_s,
        "epoch_s": epoch_s,
        "final_s": final,
        "fit5_s": setup + cache_s + final + mean_epoch * target_epochs if projected else total,
        "projected": projected,
        "cache": clock.data("model")[0]["cache"],
        "test_accuracy": run.metrics["test"]["accuracy"],
    }


def fit_llmclf(params: dict[str, Any]) -> dict[str, Any]:
    """llmclf's default recipe (`timed_fit`), with the work it did for GFLOP/s."""
    _threads(params)
    from llmclf import TrainConfig

    config = TrainConfig(
        dataset=params["dataset"],
        backbone=params["backbone"],
        weights="random",
        epochs=params["epochs"],
        precision=params["precision"],
        output=params["output"],
    )
    target = params["target_epochs"]
    run, phases = timed_fit(config, target)
    cached = phases["cache"].startswith("frozen-trunk cache on")

    # the work done, for GFLOP/s: the batches llmclf's loader builds with the run's policy
    data, shape = _data(params), _shape(params["backbone"])
    splits = {name: getattr(data, name).token_ids for name in SPLITS}
    plan = recipe.Recipe.of(
        splits,
        _run_policy(run.output_dir),
        target,
        batch_size=config.batch_size,
        bucket=config.bucket,
        eval_every=config.eval_every,
        eval_batches=config.eval_batches,
        seed=config.seed,
    )
    width, n_layer = shape["n_embd"], shape["n_layer"]
    top, at = (1 if cached else n_layer), _pooled_top()
    return {
        **phases,
        "sizes": {name: len(getattr(data, name)) for name in SPLITS},
        "gflop": {
            "cache": recipe.forward(plan.cache, width, n_layer - 1) / 1e9 if cached else 0.0,
            "epochs": [plan.epoch_flops(e, width, top, 1, at) / 1e9 for e in range(target)],
            "final": recipe.forward(plan.final, width, top, at) / 1e9,
        },
        "rss_mib": peak_rss_mib(),
    }


def _lengths(data) -> dict[str, list[int]]:
    return {name: [len(ids) for ids in getattr(data, name).token_ids] for name in SPLITS}


# ----- transformers fit --------------------------------------------------------------------------
def fit_hf(params: dict[str, Any]) -> dict[str, Any]:
    """transformers' GPT2ForSequenceClassification with the book's loop.

    Runs the first epoch (or ``sample_steps`` of its steps, spread evenly over it) and one
    periodic evaluation, then
    projects ``target_epochs`` epochs by padded tokens: the time per training token of the steps
    run (the first left out: it warms up) and per evaluation token of the evaluation run, times
    the tokens of every step and evaluation of the recipe.
    """
    _threads(params)
    import hf_reference as ref

    from llmclf.data.padding import get_policy

    data, shape = _data(params), _shape(params["backbone"])
    lengths = _lengths(data)
    fixed = max(lengths["train"]) if params["padding"] == "book" else None
    # the book pads every text to the longest training text (pad-dataset), else per batch
    policy = get_policy(
        "pad-dataset" if fixed else "pad-batch", None, shape["context_length"], ref.PAD_ID
    )
    policy.fit(lengths["train"])
    splits = {name: getattr(data, name).token_ids for name in SPLITS}
    plan = recipe.Recipe.of(splits, policy, params["target_epochs"])
    model = ref.build_model(num_labels=len(data.labels), **_model_shape(shape))
    loop = ref.BookLoop(model, {n: (s, getattr(data, n).labels) for n, s in splits.items()}, fixed)

    start = time.perf_counter()
    n_batches, k = len(plan.train[0]), params.get("sample_steps")
    sample = None if k is None else {round(j * (n_batches - 1) / (k - 1)) for j in range(k)}
    done = loop.epoch(0, sample=sample)
    first_epoch_s = time.perf_counter() - start
    skip = 1 if len(done) > 2 else 0  # the first step warms up kernels and the allocator
    step_rate = sum(loop.step_times[skip:]) / recipe.tokens(plan.train[0][i] for i in done[skip:])
    loop.eval_batch_times.clear()
    t0 = time.perf_counter()
    loop.evaluate("train", 5)
    loop.evaluate("validation", 5)
    periodic_s = time.perf_counter() - t0
    eval_rate = periodic_s / recipe.tokens(plan.periodic)

    epochs = range(params["target_epochs"])
    train_tokens = sum(recipe.tokens(plan.train[e]) for e in epochs)
    eval_tokens = sum(recipe.tokens(plan.evaluations(e)) for e in epochs)
    width, n_layer = shape["n_embd"], shape["n_layer"]
    return {
        "padding": params["padding"],
        "pad_length": fixed,
        "steps_run": len(done),
        "step_s": sum(loop.step_times[skip:]) / (len(done) - skip),
        "first_epoch_s": first_epoch_s if sample is None else None,
        "periodic_eval_s": periodic_s,
        "fit5_s": step_rate * train_tokens + eval_rate * eval_tokens,
        "projected": True,
        "gflop_fit5": sum(plan.epoch_flops(e, width, n_layer, 1, False) for e in epochs) / 1e9,
        "rss_mib": peak_rss_mib(),
    }


# ----- predict -----------------------------------------------------------------------------------
def _predict_sets(params: dict[str, Any]) -> dict[str, tuple[list[str], list[int]]]:
    from llmclf.data.pipeline import DataSpec, load_all
    from llmclf.data.tokenizer import get_tokenizer
    from llmclf.models.spec import backbone_entry

    data = _data(params)
    limit = params.get("test_texts")
    sets = {"test": (data.test.texts[:limit], data.test.labels[:limit])}
    if params["all_texts"]:
        entry = backbone_entry(params["backbone"])
        tokenizer = get_tokenizer(entry.tokenizer)
        every = load_all(
            DataSpec(dataset=params["dataset"]), data.labels, tokenizer, entry.context_length
        )
        sets["all"] = (every.texts, every.labels)
    return sets


def predict_llmclf(params: dict[str, Any]) -> dict[str, Any]:
    """Classifier.predict (tokenising included) in each variant, texts/s and labels."""
    _threads(params)
    from llmclf import Classifier

    sets = _predict_sets(params)
    out: dict[str, Any] = {}
    for variant, kwargs in params["variants"].items():
        clf = Classifier.load(params["run_dir"], device="cpu", **kwargs)
        clf.predict(sets["test"][0][:16])  # warm-up
        out[variant] = {}
        for name, (texts, labels) in sets.items():
            start = time.perf_counter()
            predictions = clf.predict(texts)
            seconds = time.perf_counter() - start
            ids = [clf.labels.index(p.label) for p in predictions]
            out[variant][name] = _scores(texts, labels, ids, seconds)
            out[variant][name]["gflop"] = _predict_flops(clf, texts, params)
        del clf
    out["rss_mib"] = peak_rss_mib()
    return out


def predict_hf(params: dict[str, Any]) -> dict[str, Any]:
    """transformers on the same weights: per-batch padding, input order, fp32."""
    _threads(params)
    import hf_reference as ref

    from llmclf import Classifier

    sets = _predict_sets(params)
    clf = Classifier.load(params["run_dir"], device="cpu")
    model = ref.build_model(num_labels=len(clf.labels), **_model_shape(_shape(params["backbone"])))
    ref.load_llmclf_weights(model, clf.model)
    tokenizer, batch_size = clf.tokenizer, params["batch_size"]
    del clf
    context = model.config.n_positions  # a longer text (an IMDb review) is cut to its head

    def encode(texts: list[str]) -> list[list[int]]:
        return [ids[:context] for ids in tokenizer.encode_batch([t.strip() for t in texts])]

    ref.predict_labels(model, encode(sets["test"][0][:16]), batch_size)  # warm-up
    out: dict[str, Any] = {"batch_size": batch_size}
    for name, (texts, labels) in sets.items():
        start = time.perf_counter()
        ids = ref.predict_labels(model, encode(texts), batch_size).tolist()
        seconds = time.perf_counter() - start
        out[name] = _scores(texts, labels, ids, seconds)
        lengths = [len(x) for x in encode(texts)]
        shapes = recipe.padded(lengths, recipe.in_order_groups(len(lengths), batch_size))
        out[name]["gflop"] = recipe.forward(shapes, model.config.n_embd, model.config.n_layer) / 1e9
    out["rss_mib"] = peak_rss_mib()
    return out


def _scores(texts, labels, ids, seconds) -> dict[str, Any]:
    correct = sum(int(a == b) for a, b in zip(ids, labels, strict=True))
    return {
        "n": len(texts),
        "seconds": seconds,
        "texts_per_s": len(texts) / seconds,
        "accuracy": correct / len(texts),
        "labels": ids,
    }


def _predict_flops(clf, texts, params) -> float:
    """GFLOP of Classifier.predict: its default batch size, batches sorted by length."""
    from inspect import signature

    batch_size = signature(clf.predict).parameters["batch_size"].default
    lengths = [max(len(x), 1) for x in clf.tokenizer.encode_batch([t.strip() for t in texts])]
    shapes = recipe.padded(lengths, recipe.sorted_groups(lengths, batch_size))
    shape = _shape(params["backbone"])
    return recipe.forward(shapes, shape["n_embd"], shape["n_layer"], _pooled_top()) / 1e9


# ----- the fast path changes nothing --------------------------------------------------------------
def fast_vs_plain(params: dict[str, Any]) -> dict[str, Any]:
    """The same small model trained with the cache on and off (same seed): results and time."""
    _threads(params)
    from llmclf import TrainConfig, Trainer

    out: dict[str, Any] = {"epochs": params["epochs"], "lr": params["lr"]}
    histories = {}
    for cache in ("auto", "off"):
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(
                dataset=params["dataset"],
                backbone=params["backbone"],
                weights="random",
                epochs=params["epochs"],
                lr=params["lr"],
                cache=cache,
                output=str(Path(tmp) / "run"),
            )
            start = time.perf_counter()
            run = Trainer(config).fit()
            seconds = time.perf_counter() - start
        histories[cache] = run.history
        out[cache] = {
            "seconds": seconds,
            "test_accuracy": run.metrics["test"]["accuracy"],
            "val_accuracy": run.metrics["validation"]["accuracy"],
            "test_loss": run.metrics["test"]["loss"],
            "final_train_loss": run.history[-1]["train_loss"],
        }
    pairs = list(zip(histories["auto"], histories["off"], strict=True))
    for label, rows in (("first_epoch", [p for p in pairs if p[0]["epoch"] == 1]), ("run", pairs)):
        out[f"max_loss_difference_{label}"] = max(
            abs(a[key] - b[key]) for a, b in rows for key in ("train_loss", "val_loss")
        )
    return out


WORKERS = {
    "matmul": matmul_peak,
    "fit-llmclf": fit_llmclf,
    "fit-hf": fit_hf,
    "predict-llmclf": predict_llmclf,
    "predict-hf": predict_hf,
    "fast-vs-plain": fast_vs_plain,
}

import imdb  # noqa: E402  (benchmarks/imdb.py: the IMDb workers)

WORKERS |= imdb.WORKERS

import whole_model  # noqa: E402  (it reads the helpers above)

WORKERS.update(whole_model.WORKERS)
