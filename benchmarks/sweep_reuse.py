"""A sweep that reuses prepared data and the frozen-trunk cache, against the same rows run one
by one (each building its own).

    python benchmarks/sweep_reuse.py             # gpt2-small, random weights, 6 rows
    python benchmarks/sweep_reuse.py --smoke     # seconds: gpt2-tiny

The rows differ only in what trains above the cache (the pooling and the learning rate; the
last block and the head train, the blocks below are cached), on a stratified sample of the SMS
Spam Collection. Both sweeps run in this process, one after the other, with the same thread
count, so the difference is the reuse alone: the rows' metrics must come out identical, and the
script fails if they do not. Set LLMCLF_HOME (and LLMCLF_OFFLINE=1) to use local files. The
last line is exactly ``sweep_reuse_speedup=X.XX`` (seconds one by one divided by seconds
with reuse).
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

import torch

GRID = {"pooling": ["last-token", "mean", "first"], "lr": [1e-3, 2e-4]}


def sample(work: Path, per_class: int) -> Path:
    """``per_class`` SMS texts of each label, as a CSV file."""
    from llmclf import datasets

    frame = datasets.get("sms")()
    path = work / "sms-sample.csv"
    frame.groupby("label", group_keys=False).head(per_class).to_csv(path, index=False)
    return path


def timed_sweep(base: dict[str, Any], output: Path, *, reuse: bool) -> tuple[float, Any]:
    from llmclf.sweeps import sweep

    start = time.perf_counter()
    result = sweep(base, grid=GRID, output=output, reuse=reuse)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gpt2-small")
    parser.add_argument("--per-class", type=int, default=100, help="SMS texts of each label")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--smoke", action="store_true", help="gpt2-tiny, 24 texts per class")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.backbone, args.per_class = "gpt2-tiny", 24
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = {
            "dataset": str(sample(work, args.per_class)),
            "backbone": args.backbone,
            "weights": "random",
            "trainable": "last-block",
            "epochs": args.epochs,
            "device": "cpu",
        }
        alone_s, alone = timed_sweep(base, work / "one-by-one", reuse=False)
        shared_s, shared = timed_sweep(base, work / "shared", reuse=True)
    same = all(a.metrics == b.metrics for a, b in zip(alone.rows, shared.rows, strict=True))
    figures = {
        "backbone": args.backbone,
        "rows": len(shared.rows),
        "texts": 2 * args.per_class,
        "epochs": args.epochs,
        "threads": args.threads,
        "load_average": os.getloadavg(),
        "one_by_one_s": round(alone_s, 2),
        "shared_s": round(shared_s, 2),
        "reused": shared.reused,
        "identical_metrics": same,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not same:
        print("error: the rows' metrics differ with reuse", file=sys.stderr)
        return 1
    print(f"sweep_reuse_speedup={alone_s / shared_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
