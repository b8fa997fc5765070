"""How close ``llmclf fit --dry-run``'s time estimate comes to the run it estimates (issue 17).

    python benchmarks/dry_run_accuracy.py            # SMS default recipe + IMDb gpt2-tiny `all`
    python benchmarks/dry_run_accuracy.py --quick    # the same, IMDb on 5,000 reviews
    python benchmarks/dry_run_accuracy.py --smoke    # seconds: gpt2-tiny on SMS, 1 epoch

For each case the dry run estimates, then the real fit runs with the same config (random
weights) and its phases are timed from the reporter's events. The target is an estimate within
±30 % of the measured time of the phases it estimates (trunk cache, training with its
evaluations, final evaluation). Set LLMCLF_HOME (and LLMCLF_OFFLINE=1) to use local files.
The last line is exactly ``dry_run_error=X`` (the largest relative error of the total, in %).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TOLERANCE = 0.30
IMDB_QUICK_REVIEWS = 5000


def cases(mode: str, work: Path) -> dict[str, dict[str, Any]]:
    """TrainConfig keyword arguments of each case."""
    if mode == "smoke":
        return {"sms gpt2-tiny head": {"dataset": "sms", "backbone": "gpt2-tiny", "epochs": 1}}
    imdb = "imdb" if mode == "full" else imdb_slice(work / "imdb.csv", IMDB_QUICK_REVIEWS)
    return {
        "sms gpt2-small, the default recipe": {"dataset": "sms", "backbone": "gpt2-small"},
        "imdb gpt2-tiny, trainable all, 1 epoch": {
            "dataset": imdb,
            "backbone": "gpt2-tiny",
            "trainable": "all",
            "epochs": 1,
            "split": (0.7, 0.1, 0.2),
            "balance": "none",
        },
    }


def imdb_slice(path: Path, n: int) -> str:
    """The first ``n`` of the 50,000 reviews shuffled with seed 123, as a CSV file."""
    from llmclf.data.imdb import imdb

    frame = imdb().sample(frac=1.0, random_state=123).head(n)
    frame[["text", "label"]].to_csv(path, index=False)
    return str(path)


def measure(name: str, kwargs: dict[str, Any], work: Path) -> dict[str, Any]:
    """The dry run's estimate and the real run's phases, in seconds."""
    from measurements import _Clock

    from llmclf import TrainConfig, Trainer
    from llmclf.training.dry_run import dry_run

    config = TrainConfig(weights="random", output=str(work / name.split()[0]), **kwargs)
    estimate = dry_run(config).estimate
    clock = _Clock()
    started = time.perf_counter()
    Trainer(config, reporter=clock.reporter).fit(overwrite=True)
    wall = time.perf_counter() - started
    measured = {
        "trunk cache": clock.phase_seconds("trunk cache"),
        "epochs": sum(d["seconds"] for d in clock.data("epoch_end")),
        "final evaluation": clock.phase_seconds("final evaluation"),
    }
    total_estimate, total_measured = sum(estimate.values()), sum(measured.values())
    return {
        "estimate": estimate,
        "measured": measured,
        "wall_s": wall,
        "error": total_estimate / total_measured - 1,
    }


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, r in results.items():
        est = ", ".join(f"{k} {v:.1f}" for k, v in r["estimate"].items())
        got = ", ".join(f"{k} {v:.1f}" for k, v in r["measured"].items())
        verdict = "met" if abs(r["error"]) <= TOLERANCE else "MISSED"
        lines += [
            f"{name}:",
            f"  estimate (s): {est}; total {sum(r['estimate'].values()):.1f}",
            f"  measured (s): {got}; total {sum(r['measured'].values()):.1f} "
            f"(whole fit {r['wall_s']:.1f})",
            f"  {verdict}: estimate {100 * r['error']:+.0f} % of the measured time "
            f"(target within ±{100 * TOLERANCE:.0f} %)",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="IMDb on 5,000 reviews")
    group.add_argument("--smoke", action="store_true", help="gpt2-tiny on SMS, 1 epoch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    print(f"dry-run accuracy ({mode}), {args.threads} threads, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="llmclf-dry-run-") as tmp:
        work = Path(tmp)
        results = {}
        for name, kwargs in cases(mode, work).items():
            results[name] = measure(name, kwargs, work)
            print(render({name: results[name]}), flush=True)
    worst = max(abs(r["error"]) for r in results.values())
    print(f"dry_run_error={100 * worst:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
