"""onnxruntime against llmclf's own fp32 / bf16 / int8 paths: texts/s on the SMS test split.

    python benchmarks/export_speed.py --run runs/sms      # a run of yours (any weights)
    python benchmarks/export_speed.py                     # gpt2-small, head fitted in seconds
    python benchmarks/export_speed.py --smoke             # seconds: gpt2-tiny, 32 texts

Speed does not depend on what the weights learned, so without ``--run`` the script fits the
head of a randomly initialised backbone for one epoch on 40 texts per class and measures that.
Every engine predicts the same texts (the SMS test split as llmclf's defaults make it: 300
texts) with ``Classifier.predict`` (tokenising, sorting, batching included), on the CPU, with
the same thread count (onnxruntime uses torch's), after a warm-up; the best of ``--repeats``
timings counts. Set LLMCLF_HOME (and LLMCLF_OFFLINE=1) to use local files. The last line is
exactly ``onnxruntime_vs_fp32=X.XX onnxruntime_vs_bf16=Y.YY onnxruntime_vs_int8=Z.ZZ``
(texts/s of onnxruntime divided by each).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "int8": {"quantize": "int8"},
    "onnxruntime": {"engine": "onnxruntime"},
}


def test_texts(backbone: str, limit: int | None) -> list[str]:
    """The SMS test split, prepared exactly as the Trainer prepares it."""
    from llmclf import backbones
    from llmclf.data.pipeline import DataSpec, prepare_data
    from llmclf.data.tokenizer import get_tokenizer

    context = backbones.get(backbone).config.context_length
    data = prepare_data(DataSpec(dataset="sms"), get_tokenizer(), context)
    return list(data.test.texts[:limit])


def quick_run(backbone: str, work: Path) -> Path:
    """A finished run of ``backbone`` (random weights, head trained 1 epoch on 80 SMS texts)."""
    from llmclf import TrainConfig, Trainer, datasets

    frame = datasets.get("sms")()
    sample = frame.groupby("label", group_keys=False).head(40)
    sample.to_csv(work / "sms-sample.csv", index=False)
    config = TrainConfig(
        dataset=str(work / "sms-sample.csv"),
        backbone=backbone,
        weights="random",
        trainable="head",
        epochs=1,
        output=str(work / "run"),
    )
    return Trainer(config).fit().output_dir


def measure(run: Path, export: Path, texts: list[str], repeats: int) -> dict[str, Any]:
    """texts/s of every variant, and how far each one's probabilities are from fp32's."""
    from llmclf import Classifier

    results: dict[str, Any] = {}
    reference = None
    for name, kwargs in VARIANTS.items():
        source = export if name == "onnxruntime" else run
        clf = Classifier.load(source, **({"device": "cpu"} | kwargs))
        clf.predict(texts[:16])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            clf.predict(texts)
            best = min(best, time.perf_counter() - start)
        probs = clf.predict_proba(texts)
        reference = probs if reference is None else reference
        results[name] = {
            "texts_per_s": len(texts) / best,
            "seconds": best,
            "max_prob_diff_vs_fp32": (probs - reference).abs().max().item(),
        }
        del clf
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="measure this run (default: fit a quick one)")
    parser.add_argument("--backbone", default="gpt2-small", help="without --run [gpt2-small]")
    parser.add_argument("--texts", type=int, default=None, help="first N test texts [all]")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="gpt2-tiny, 32 texts, 1 repeat")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.backbone, args.texts, args.repeats = "gpt2-tiny", args.texts or 32, 1
    torch.set_num_threads(args.threads)

    from llmclf.export import export_run

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = args.run or quick_run(args.backbone, work)
        backbone = json.loads((run / "llmclf.json").read_text())["backbone"]["name"]
        texts = test_texts(backbone, args.texts)
        export = export_run(run, work / "onnx", format="onnx")
        results = measure(run, export, texts, args.repeats)
    print(f"{backbone}, {len(texts)} SMS test texts, {args.threads} threads, CPU")
    print(f"{'engine':<12} {'texts/s':>9} {'max |p - p_fp32|':>17}")
    for name, r in results.items():
        print(f"{name:<12} {r['texts_per_s']:>9.1f} {r['max_prob_diff_vs_fp32']:>17.2e}")
    ort = results["onnxruntime"]["texts_per_s"]
    ratios = {
        f"onnxruntime_vs_{k}": ort / results[k]["texts_per_s"] for k in ("fp32", "bf16", "int8")
    }
    if args.json:
        figures = {"backbone": backbone, "texts": len(texts), "threads": args.threads}
        args.json.write_text(json.dumps({**figures, "results": results, **ratios}, indent=2))
    print(" ".join(f"{k}={v:.2f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
