"""llmclf against transformers' GPT2ForSequenceClassification: fit, predict, FLOP/s, accuracy.

    python benchmarks/compare.py            # the full comparison (about half an hour on 2 cores)
    python benchmarks/compare.py --quick    # under 5 minutes on 2 cores: projections, subsets
    python benchmarks/compare.py --smoke    # seconds: every measurement on gpt2-tiny, a few texts
    python benchmarks/compare.py --llama    # only the Llama family (SmolLM2-135M's shape; ~15 min)
    python benchmarks/compare.py --imdb     # only the IMDb measurements (benchmarks/imdb.py)

Every measurement runs in its own process (peak RSS is per implementation) with the same
thread count, on the same data: the SMS Spam Collection, undersampled and split as llmclf's
defaults do (1045 / 149 / 300). Set LLMCLF_HOME (and LLMCLF_OFFLINE=1) to use local files.
The last line is exactly ``fit_speedup=X.XX predict_speedup=Y.YY lora_speedup=Z.ZZ``: llmclf's
default fp32 recipe against transformers with per-batch padding (5-epoch time ratio; texts/s on
the test split), and LoRA's epoch against transformers + PEFT (`whole_model`); a run that
measured the Llama family adds ``llama_fit_speedup`` and ``llama_predict_speedup``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import imdb  # noqa: E402
import report  # noqa: E402
import whole_model  # noqa: E402

RESULT_PREFIX = "@@result "
SMOKE_PER_CLASS = 24
QUICK_TEST_TEXTS = 150  # --quick predicts the first 150 test texts


def matmul_plan(mode: str, threads: int) -> dict[str, Any]:
    """The matmul peak's parameters: every report states its figures against that peak."""
    smoke, quick = mode == "smoke", mode == "quick"
    return {
        "threads": threads,
        "sizes": [256] if smoke else [1024, 2048] if quick else [1024, 2048, 3072],
        "seconds": 0.02 if smoke else 0.3 if quick else 0.6,
    }


def modes(mode: str, threads: int, dataset: str, work: Path) -> dict[str, dict[str, Any]]:
    """The parameters of every measurement, by mode."""
    smoke, quick = mode == "smoke", mode == "quick"
    backbone = "gpt2-tiny" if smoke else "gpt2-small"
    common = {"threads": threads, "dataset": dataset, "backbone": backbone, "target_epochs": 5}
    run_dir = str(work / "llmclf-fp32")
    fit_epochs = 1 if (smoke or quick) else 5
    hf_steps = 3 if smoke else 7 if quick else None  # steps spread over an epoch; None: all
    predict = {
        **common,
        "run_dir": run_dir,
        "test_texts": QUICK_TEST_TEXTS if quick else None,  # None: the whole test split
        "all_texts": not quick,
        "batch_size": 32,
    }
    return {
        "matmul": matmul_plan(mode, threads),
        "fit-llmclf fp32": {
            **common,
            "epochs": fit_epochs,
            "precision": "fp32",
            "output": run_dir,
        },
        "fit-llmclf auto": {
            **common,
            "epochs": fit_epochs,
            "precision": "auto",
            "output": str(work / "auto"),
        },
        "fit-hf book": {**common, "padding": "book", "sample_steps": hf_steps},
        "fit-hf batch": {**common, "padding": "batch", "sample_steps": hf_steps},
        "predict-llmclf": {
            **predict,
            "variants": {
                "fp32": {},
                "bf16": {"precision": "bf16"},
                "int8": {"quantize": "int8"},
            },
        },
        "predict-hf": predict,
        "fast-vs-plain": {
            "threads": threads,
            "dataset": dataset,
            "backbone": "gpt2-tiny",
            "epochs": 1 if smoke else 2 if quick else 5,
            "lr": 1e-3,
        },
        **whole_model.modes(mode, common),  # LoRA / all-layer vs transformers + PEFT
        **(
            imdb.modes(1.0, threads, work, {"tiny", "recipe", "rss", "bucket"})
            if mode == "full"
            else {}
        ),
    }


def workers() -> dict[str, Any]:
    """Every measurement by name (imported late: the parent process needs no torch)."""
    import llama_measurements
    import measurements

    return {**measurements.WORKERS, **llama_measurements.WORKERS}


def run_worker(key: str, params: dict[str, Any], *, inline: bool) -> dict[str, Any]:
    """Run one measurement, in a fresh process unless ``inline``."""
    name = key.split()[0]
    if inline:
        return workers()[name](params)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    proc = subprocess.run(
        command, input=json.dumps(params), capture_output=True, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"benchmark step {key!r} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def smoke_dataset(path: Path, per_class: int = SMOKE_PER_CLASS) -> str:
    """A handful of real SMS messages, both classes, as a CSV file."""
    from llmclf.data.sources import sms

    frame = sms()
    parts = [frame[frame["label"] == label].head(per_class) for label in ("ham", "spam")]
    import pandas as pd

    pd.concat(parts).to_csv(path, index=False)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="under 5 minutes; projected fits")
    group.add_argument("--smoke", action="store_true", help="gpt2-tiny, a few texts: seconds")
    group.add_argument("--imdb", action="store_true", help="only IMDb (imdb.py; hours)")
    parser.add_argument(
        "--llama", action="store_true", help="only the Llama family (with --smoke: llama-tiny)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--inline", action="store_true", help="no subprocesses (no peak RSS)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # child process: params on stdin, one result line on stdout
        import torch

        params = json.loads(sys.stdin.read())
        torch.set_num_threads(params["threads"])
        cpu, wall = _cpu_seconds(), time.perf_counter()
        result = workers()[args.worker](params)
        # CPU time over wall time and threads: well under 1 means other processes took the CPUs
        result["cpu_share"] = (
            (_cpu_seconds() - cpu) / (time.perf_counter() - wall) / params["threads"]
        )
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    if args.imdb:
        return imdb.main(
            [f"--threads={args.threads}"] + ([f"--json={args.json}"] if args.json else [])
        )
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmclf-bench-") as tmp:
        work = Path(tmp)
        dataset = smoke_dataset(work / "sms-sample.csv") if args.smoke else "sms"
        if args.llama:  # the Llama family only (no IMDb samples built either)
            plan = {"matmul": matmul_plan(mode, args.threads)}
        else:
            plan = modes(mode, args.threads, dataset, work)
        if args.llama or mode == "full":
            import llama_measurements

            plan.update(llama_measurements.plan(mode, args.threads, dataset, work))
        results: dict[str, Any] = {
            "mode": mode,
            "backbone": plan["fit-llmclf fp32"]["backbone"] if not args.llama else "llama",
            "machine": report.machine(args.threads),
            "dataset": "SMS Spam Collection"
            + (f" (first {SMOKE_PER_CLASS} of each class)" if args.smoke else ""),
        }
        print(report.header(mode, results["machine"]), flush=True)
        for key, params in plan.items():
            t0 = time.perf_counter()
            # smoke: the matmul in a child (proves the protocol), the rest inline (fast)
            inline = args.inline or (args.smoke and key != "matmul")
            results[key] = run_worker(key, params, inline=inline)
            share = results[key].get("cpu_share")
            note = f", CPU share {share:.2f}" if share is not None else ""
            print(f"  {key:<16} done in {time.perf_counter() - t0:6.1f} s{note}", flush=True)
        results["wall_s"] = time.perf_counter() - started
    if not args.llama:
        print(report.render(results) + (imdb.render(results) if mode == "full" else ""))
    if "fit-llmclf-llama" in results:
        import llama_measurements

        print("\n".join(llama_measurements.render(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(report.final_line(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
