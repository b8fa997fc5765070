"""IMDb at scale: llmclf against transformers, the chapter-6 recipe's phases, peak memory.

    python benchmarks/imdb.py                    # the sizes of issue 14 (hours on 2 cores)
    python benchmarks/imdb.py --scale 0.1        # every size x 0.1; the figures scale linearly
    python benchmarks/imdb.py --only tiny,rss    # some of: tiny, recipe, rss, bucket
    python benchmarks/compare.py --imdb          # the same measurements, from compare.py

Measurements (each in its own process, so peak RSS is its own):

- ``tiny``: gpt2-tiny (2 layers, 128 wide, 4 heads), random weights, ``--trainable all``, one
  epoch on the book's 35,000 / 5,000 / 10,000 split; fit time (data, training, periodic and
  final evaluation), predict texts/s on the test reviews, peak RSS and test accuracy, against
  ``transformers.GPT2ForSequenceClassification`` of the same shape with per-batch padding and
  the same cadence, and TF-IDF + logistic regression on the same split.
- ``recipe``: GPT-2 small's shape (random weights), the book's recipe (last block + final norm
  + head, frozen-trunk cache), fp32 and bf16, at three sizes: seconds per phase (data, cache,
  epoch, final evaluation, predict) and peak RSS.
- ``rss``: peak RSS of the chapter-6 recipe on gpt2-tiny at three sizes, against the size of
  the cache and of the token ids.
- ``bucket``: one epoch of gpt2-tiny with and without length-bucketed batches.

Every size below the full 50,000 is a seeded sample (seed 123) of the 50,000 reviews, split
0.7 / 0.1 / 0.2 like the book. Set LLMCLF_HOME (and LLMCLF_OFFLINE=1) to use local files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FULL = 50_000
TINY_SIZE = FULL  # 35,000 / 5,000 / 10,000
RECIPE_SIZES = (2_000, 5_000, 10_000)
RSS_SIZES = (5_000, 20_000, 50_000)
BUCKET_SIZE = 20_000
TINY_LR = 1e-3  # from random init; the book's 5e-5 is for pretrained weights
TINY_BATCH = 16
WORKER_NAMES = ("imdb-fit", "imdb-fit-hf", "imdb-tfidf")


def dataset(n: int, work: Path) -> str:
    """``imdb`` for all 50,000 reviews, else a CSV of a seeded sample of ``n`` of them."""
    if n >= FULL:
        return "imdb"
    path = work / f"imdb-{n}.csv"
    if not path.exists():
        from llmclf.data.imdb import imdb

        frame = imdb()[["text", "label"]].sample(n=n, random_state=123)
        frame.to_csv(path, index=False)
    return str(path)


def modes(
    scale: float,
    threads: int,
    work: Path,
    only: set[str],
    max_length: int | None = None,
    pack: bool = False,
) -> dict[str, dict[str, Any]]:
    """The parameters of every IMDb measurement (compare.py's keys: ``worker label``);
    ``max_length`` caps the texts of the recipe and rss measurements (None: the context);
    ``pack``: llmclf's tiny fit packs its batches (``--pack``: exact, the same batches)."""

    def size(n: int) -> int:
        return max(40, round(n * scale))

    common = {"threads": threads}
    plan: dict[str, dict[str, Any]] = {}
    if "tiny" in only:
        data = dataset(size(TINY_SIZE), work)
        tiny = {**common, "dataset": data, "backbone": "gpt2-tiny", "epochs": 1}
        tiny |= {"lr": TINY_LR, "batch_size": TINY_BATCH, "trainable": "all"}
        run_dir = str(work / "imdb-tiny")
        plan["imdb-fit tiny-llmclf"] = {**tiny, "output": run_dir, "pack": pack}
        plan["imdb-fit-hf tiny-transformers"] = tiny
        predict = {**common, "dataset": data, "backbone": "gpt2-tiny", "run_dir": run_dir}
        predict |= {"test_texts": None, "all_texts": False, "batch_size": 32}
        plan["predict-llmclf imdb-tiny"] = {**predict, "variants": {"fp32": {}}}
        plan["predict-hf imdb-tiny"] = predict
        plan["imdb-tfidf tiny-tfidf"] = {**common, "dataset": data, "backbone": "gpt2-tiny"}
    if "recipe" in only:
        for n in RECIPE_SIZES:
            for precision in ("fp32", "bf16"):
                plan[f"imdb-fit recipe-{precision}-{size(n)}"] = {
                    **common,
                    "dataset": dataset(size(n), work),
                    "backbone": "gpt2-small",
                    "precision": precision,
                    "epochs": 1,
                    "predict": True,
                    "max_length": max_length,
                    "output": str(work / f"recipe-{precision}-{n}"),
                }
        # transformers, the same recipe (the book's loop: every text padded to the longest
        # training text, last block + final norm + head trained), at the smallest size
        plan[f"fit-hf recipe-transformers-{size(RECIPE_SIZES[0])}"] = {
            **common,
            "dataset": dataset(size(RECIPE_SIZES[0]), work),
            "backbone": "gpt2-small",
            "padding": "book",
            "target_epochs": 1,
            "max_length": max_length,
        }
    if "rss" in only:
        for n in RSS_SIZES:
            rss = {**common, "dataset": dataset(size(n), work), "backbone": "gpt2-tiny"}
            rss |= {"epochs": 1, "max_length": max_length, "output": str(work / f"rss-{n}")}
            plan[f"imdb-fit rss-{size(n)}"] = rss
        # the largest again with a memory budget of 0: the cache lives in a memory-mapped file
        plan[f"imdb-fit rss-{size(n)}-spilled"] = {**rss, "spill_to": str(work)}
    if "bucket" in only:
        data = dataset(size(BUCKET_SIZE), work)
        for bucket in (False, True):
            plan[f"imdb-fit bucket-{'on' if bucket else 'off'}"] = {
                **common,
                "dataset": data,
                "backbone": "gpt2-tiny",
                "epochs": 1,
                "trainable": "all",
                "lr": TINY_LR,
                "batch_size": TINY_BATCH,
                "bucket": bucket,
                "output": str(work / f"bucket-{bucket}"),
            }
    return plan


# ----- workers (each in its own process) ---------------------------------------------------------
def fit(params: dict[str, Any]) -> dict[str, Any]:
    """One llmclf fit through the public API, timed phase by phase from its events; with
    ``predict``, then Classifier.predict over the test reviews in the same process."""
    import measurements

    from llmclf import Classifier, TrainConfig, Trainer

    clock = measurements._Clock()
    if params.get("spill_to"):  # a budget of 0 bytes: every split's cache spills to a file
        import llmclf.training.trainer as trainer

        trainer.available_memory_bytes = lambda: 0
        params = {**params, "cache_dir": params["spill_to"]}
    keys = (
        "epochs",
        "lr",
        "batch_size",
        "trainable",
        "precision",
        "bucket",
        "pack",
        "max_length",
        "cache_dir",
    )
    config = TrainConfig(
        dataset=params["dataset"],
        backbone=params["backbone"],
        weights="random",
        output=params["output"],
        **{k: params[k] for k in keys if k in params},
    )
    start = time.perf_counter()
    run = Trainer(config, reporter=clock.reporter).fit(overwrite=True)
    out: dict[str, Any] = {"fit_s": time.perf_counter() - start, "pack": config.pack}
    for phase in ("read imdb", "data", "trunk cache", "final evaluation"):
        out[f"{phase}_s"] = clock.phase_seconds(phase)
    out["epoch_s"] = [d["seconds"] for d in clock.data("epoch_end")]
    report = clock.data("data")[0]["report"]
    out["cache"] = report.get("cache")
    out["sizes"] = {
        name: run.metrics[name]["n"] for name in run.metrics if "n" in run.metrics[name]
    }
    out["test_accuracy"] = run.metrics["test"]["accuracy"]
    out["fit_rss_mib"] = measurements.peak_rss_mib()
    if params.get("predict"):
        from llmclf.data.pipeline import DataSpec, prepare_data

        clf = Classifier.load(run.output_dir, device="cpu")
        texts = prepare_data(DataSpec(dataset=params["dataset"]), clf.tokenizer, 1024).test.texts
        start = time.perf_counter()
        clf.predict(texts)
        out["predict_s"] = time.perf_counter() - start
        out["predict_texts"] = len(texts)
    out["rss_mib"] = measurements.peak_rss_mib()
    return out


def fit_hf(params: dict[str, Any]) -> dict[str, Any]:
    """transformers' GPT2ForSequenceClassification, every parameter trained, per-batch padding,
    the same batches, learning rate, evaluation cadence (every 50 steps on 5 batches of train
    and validation, the whole validation split after the epoch) and final evaluation of every
    split as llmclf's fit; fp32."""
    import hf_reference as ref
    import measurements
    import torch

    start = time.perf_counter()
    data = measurements._data(params)
    shape = measurements._shape(params["backbone"])
    splits = {n: (getattr(data, n).token_ids, getattr(data, n).labels) for n in ("train",)}
    splits |= {n: (getattr(data, n).token_ids, getattr(data, n).labels) for n in ("validation",)}
    splits["test"] = (data.test.token_ids, data.test.labels)
    model = ref.build_model(num_labels=len(data.labels), **measurements._model_shape(shape))
    model.requires_grad_(True)
    loop = ref.BookLoop(model, splits, None, batch_size=params["batch_size"])
    loop.optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=0.1)
    data_s = time.perf_counter() - start
    for epoch in range(params["epochs"]):
        loop.epoch(epoch)
    train_s = time.perf_counter() - start - data_s
    final = {name: loop.evaluate(name, None) for name in ("train", "validation", "test")}
    return {
        "fit_s": time.perf_counter() - start,
        "data_s": data_s,
        "train_s": train_s,
        "test_accuracy": final["test"][1],
        "rss_mib": measurements.peak_rss_mib(),
    }


def tfidf(params: dict[str, Any]) -> dict[str, Any]:
    """TF-IDF (words, 1-2 grams) + logistic regression on the same split: the reference
    accuracy the book quotes (88.85 % on its split)."""
    import measurements
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = measurements._data(params)
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vectorizer.fit_transform(data.train.texts)
    model = LogisticRegression(max_iter=1000).fit(x, data.train.labels)
    accuracy = float(
        (model.predict(vectorizer.transform(data.test.texts)) == data.test.labels).mean()
    )
    return {"fit_s": time.perf_counter() - start, "test_accuracy": accuracy}


WORKERS = {"imdb-fit": fit, "imdb-fit-hf": fit_hf, "imdb-tfidf": tfidf}


# ----- the report ---------------------------------------------------------------------------------
def render(results: dict[str, Any]) -> str:
    """The IMDb figures as text (markdown-ready lines)."""
    lines = ["", "IMDb"]
    mine, theirs = results.get("imdb-fit tiny-llmclf"), results.get("imdb-fit-hf tiny-transformers")
    if mine and theirs:
        p_mine = results["predict-llmclf imdb-tiny"]["fp32"]["test"]
        p_theirs = results["predict-hf imdb-tiny"]["test"]
        ratio = p_mine["texts_per_s"] / p_theirs["texts_per_s"]
        rss_mine = results["predict-llmclf imdb-tiny"]["rss_mib"]
        rss_theirs = results["predict-hf imdb-tiny"]["rss_mib"]
        tf = results.get("imdb-tfidf tiny-tfidf", {})
        lines += [
            f"  tiny, all trainable, 1 epoch, split {mine['sizes']}"
            + (", llmclf --pack:" if mine.get("pack") else ":"),
            f"    fit      llmclf {mine['fit_s']:8.1f} s   transformers {theirs['fit_s']:8.1f} s"
            f"   x{theirs['fit_s'] / mine['fit_s']:.2f}",
            f"    predict  llmclf {p_mine['texts_per_s']:8.1f}/s  transformers "
            f"{p_theirs['texts_per_s']:8.1f}/s  x{ratio:.2f}"
            f" ({p_mine['n']} texts)",
            f"    peak RSS llmclf fit {mine['rss_mib']:.0f} MiB, predict "
            f"{rss_mine:.0f} MiB; transformers fit {theirs['rss_mib']:.0f} MiB, predict "
            f"{rss_theirs:.0f} MiB",
            f"    test accuracy llmclf {mine['test_accuracy']:.4f}, transformers "
            f"{theirs['test_accuracy']:.4f}, TF-IDF + logistic regression "
            f"{tf.get('test_accuracy', float('nan')):.4f}",
        ]
    for key, r in results.items():
        if key.startswith("fit-hf recipe-"):  # transformers: one epoch and its evaluations
            lines.append(
                f"  {key[7:]:<20} epoch {r['first_epoch_s']:.1f} s ({r['step_s'] * 1e3:.0f} ms a "
                f"step, texts padded to {r['pad_length']}), 1-epoch recipe with its "
                f"evaluations {r['fit5_s']:.1f} s, peak RSS {r['rss_mib']:.0f} MiB"
            )
        if not key.startswith("imdb-fit ") or "tiny-" in key:
            continue
        epochs = "+".join(f"{s:.1f}" for s in r["epoch_s"])
        predict = (
            f", predict {r['predict_s']:.1f} s ({r['predict_texts']} texts)"
            if "predict_s" in r
            else ""
        )
        lines.append(
            f"  {key[9:]:<20} data {r['data_s']:.1f} s, cache {r['trunk cache_s']:.1f} s, epoch "
            f"{epochs} s, final eval {r['final evaluation_s']:.1f} s{predict}; fit "
            f"{r['fit_s']:.1f} s, peak RSS {r['rss_mib']:.0f} MiB, test acc "
            f"{r['test_accuracy']:.3f}; cache: {r['cache']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import compare

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="every size times this")
    parser.add_argument("--only", default="tiny,recipe,rss,bucket", help="comma-separated")
    parser.add_argument("--max-length", type=int, help="cap the texts of recipe and rss")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pack", action="store_true", help="llmclf's tiny fit packs texts")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--work", type=Path, help="keep the data samples and runs here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llmclf-imdb-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        only = set(args.only.split(","))
        plan = modes(args.scale, args.threads, work, only, args.max_length, args.pack)
        results: dict[str, Any] = {"scale": args.scale, "load_before": os.getloadavg()}
        for key, params in plan.items():
            t0 = time.perf_counter()
            results[key] = compare.run_worker(key, params, inline=False)
            share = results[key].get("cpu_share", float("nan"))
            print(f"  {key:<34} done in {time.perf_counter() - t0:7.1f} s, CPU share {share:.2f}")
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
