"""Prediction cost of each long-text policy relative to ``head``, on IMDb test reviews.

    python benchmarks/long_text_policies.py                  # 2,000 reviews, --max-length 256
    python benchmarks/long_text_policies.py --smoke          # seconds: 64 reviews, 1 repeat
    python benchmarks/long_text_policies.py --policies head windows:128,agg=max

Speed does not depend on what the weights learned, so every policy predicts with the same
randomly initialised classifier (``--backbone``, default gpt2-tiny: 2 layers, 128 wide), built
in memory behind the real `llmclf.Classifier` with ``pad-batch`` padding at ``--max-length``.
Each policy predicts the same seeded sample of ``--reviews`` reviews of IMDb's official test
split with ``Classifier.predict`` (cleaning, tokenising, sorting, batching and, for windows,
aggregating included), on the CPU at ``--threads`` threads, after a warm-up. The policies take
turns within each of ``--repeats`` rounds, so a change of machine load hits them alike; the
best round counts. Also printed: the windows (forward-pass examples) and model tokens each
policy needs, which is what its cost follows. Set LLMCLF_HOME (and LLMCLF_OFFLINE=1) to use
local files. The last line is ``POLICY=X.XX ...``: each policy's seconds divided by head's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

POLICIES = ("head", "tail", "head+tail:64", "windows:256", "windows", "windows:64")


def reviews(count: int, seed: int) -> list[str]:
    """A seeded sample of ``count`` reviews of IMDb's official test split."""
    import numpy as np

    from llmclf import datasets

    frame = datasets.get("imdb")()
    test = frame[frame["split"] == "test"]["text"].tolist()
    picked = np.random.RandomState(seed).permutation(len(test))[:count]
    return [test[i] for i in picked]


def classifier(backbone: str, max_length: int):
    """A random-weight classifier of ``backbone`` with pad-batch padding at ``max_length``."""
    from llmclf import Classifier
    from llmclf.data.padding import get_policy
    from llmclf.data.tokenizer import get_tokenizer
    from llmclf.models.classifier import SequenceClassifier
    from llmclf.models.spec import backbone_entry

    entry = backbone_entry(backbone)
    torch.manual_seed(0)
    model = SequenceClassifier(entry.builder("random", dropout=0.0, seed=0), 2)
    tokenizer = get_tokenizer(entry.tokenizer)
    context = model.backbone.config.context_length
    policy = get_policy("pad-batch", max_length, context, tokenizer.pad_id)
    return Classifier(
        model, tokenizer, policy, ["neg", "pos"], manifest={}, device=torch.device("cpu")
    )


def workload(clf: Any, texts: list[str]) -> dict[str, int]:
    """The examples (forward passes of one text or window) and model tokens a policy needs."""
    long_text, n = clf.policy.long_text, clf.max_tokens
    lengths = [len(ids) for ids in clf.tokenizer.encode_batch(texts)]
    windows = [long_text.count(k, n) for k in lengths]
    tokens = sum(min(k, n) if w == 1 else w * n for k, w in zip(lengths, windows, strict=True))
    return {"examples": sum(windows), "model_tokens": tokens}


def measure(
    clf: Any, texts: list[str], policies: list[str], repeats: int, batch_size: int
) -> dict[str, Any]:
    """Best seconds of each policy over ``repeats`` interleaved rounds, and its workload."""
    results: dict[str, Any] = {}
    for spec in policies:
        clf.policy.set_long_texts(spec)
        clf.predict(texts[:32], batch_size)  # warm-up
        results[spec] = {**workload(clf, texts), "rounds": []}
    for _ in range(repeats):
        for spec in policies:
            clf.policy.set_long_texts(spec)
            started = time.perf_counter()
            clf.predict(texts, batch_size)
            results[spec]["rounds"].append(time.perf_counter() - started)
    for r in results.values():
        r["seconds"] = min(r["rounds"])
        r["texts_per_s"] = len(texts) / r["seconds"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gpt2-tiny")
    parser.add_argument("--reviews", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), metavar="SPEC")
    parser.add_argument("--smoke", action="store_true", help="at most 64 reviews, 1 repeat")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.reviews, args.repeats = min(args.reviews, 64), 1
    torch.set_num_threads(args.threads)
    policies = list(dict.fromkeys(args.policies))
    texts = reviews(args.reviews, args.seed)
    clf = classifier(args.backbone, args.max_length)
    load_before = os.getloadavg()
    results = measure(clf, texts, policies, args.repeats, args.batch_size)
    load_after = os.getloadavg()
    head = results.get("head", next(iter(results.values())))["seconds"]
    print(
        f"{args.backbone}, {len(texts):,} IMDb test reviews, --max-length {args.max_length}, "
        f"batch {args.batch_size}, {args.threads} thread(s), CPU; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"{'policy':<14} {'texts/s':>9} {'examples':>9} {'model tokens':>13} {'vs head':>8}")
    for spec, r in results.items():
        print(
            f"{spec:<14} {r['texts_per_s']:>9.1f} {r['examples']:>9,} {r['model_tokens']:>13,} "
            f"{r['seconds'] / head:>7.2f}x"
        )
    if args.json:
        figures = {
            "backbone": args.backbone,
            "reviews": len(texts),
            "max_length": args.max_length,
            "threads": args.threads,
            "load_average": [load_before[0], load_after[0]],
            "results": results,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    print(" ".join(f"{spec}={r['seconds'] / head:.2f}" for spec, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
