"""The benchmark's printed report: the machine, the tables, the targets, the final line."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import whole_model

LOW_CPU_SHARE = 0.85
TARGETS = {  # issue 6
    "fit_fp32": 5.0,  # x transformers with per-batch padding, fp32
    "fit_auto": 8.0,  # with precision auto (bf16 where the CPU is fast at it)
    "fit_auto_points": 1.0,  # test accuracy within this many points of fp32
    "predict_fp32": 1.5,  # with labels identical to transformers'
    "predict_fast": 3.0,  # bf16 or int8 ...
    "predict_fast_points": 0.5,  # ... within this many points of fp32
}


def machine(threads: int) -> dict[str, Any]:
    """The CPU, its cores, the thread count and the versions, for the report's header."""
    import torch

    from llmclf import __version__
    from llmclf.device import cpu_has_fast_bf16

    try:
        import transformers

        hf_version = transformers.__version__
    except ImportError:
        hf_version = "not installed"
    cpu, cores = platform.processor() or platform.machine(), os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        fields = {
            k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.split("\n"))
        }
        cpu = fields.get("Model name", cpu)
        cores = int(fields["Core(s) per socket"]) * int(fields.get("Socket(s)", "1"))
    except (OSError, KeyError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "fast_bf16": cpu_has_fast_bf16(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "transformers": hf_version,
        "llmclf": __version__,
        "python": platform.python_version(),
    }


def header(mode: str, m: dict[str, Any]) -> str:
    lines = [
        f"llmclf benchmark ({mode})",
        f"machine: {m['cpu']}, {m['cores']} cores ({m['logical_cpus']} logical CPUs); "
        f"torch.set_num_threads({m['threads']}) in every measurement; "
        f"fast bf16: {'yes' if m['fast_bf16'] else 'no'}",
        f"versions: torch {m['torch']}, transformers {m['transformers']}, "
        f"llmclf {m['llmclf']}, python {m['python']}",
    ]
    load = m.get("load_average")
    if load is not None and load > 1.0:
        lines.append(
            f"warning: load average {load:.1f} before the start: other processes share the "
            "CPUs, so timings are noisy (ratios less so)"
        )
    return "\n".join(lines)


# ----- formatting ------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *map(line, rows)])


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s ({seconds / 60:.1f} min)" if seconds >= 60 else f"{seconds:.1f} s"


def _rate(gflop: float, seconds: float, peak: float, dtype: str) -> str:
    achieved = gflop / seconds
    return f"{achieved:.0f} ({100 * achieved / peak:.0f}% of {dtype} peak)"


def _points(a: float, b: float) -> float:
    return 100 * abs(a - b)


# ----- sections --------------------------------------------------------------------------------
def ratios(r: dict[str, Any]) -> dict[str, float]:
    hf_fit = r["fit-hf batch"]["fit5_s"]
    hf_predict = r["predict-hf"]["test"]["texts_per_s"]
    ours = r["predict-llmclf"]
    return {
        "fit_fp32": hf_fit / r["fit-llmclf fp32"]["fit5_s"],
        "fit_auto": hf_fit / r["fit-llmclf auto"]["fit5_s"],
        "fit_book": r["fit-hf book"]["fit5_s"] / r["fit-llmclf fp32"]["fit5_s"],
        **{
            f"predict_{v}": ours[v]["test"]["texts_per_s"] / hf_predict
            for v in ("fp32", "bf16", "int8")
        },
    }


def _fit_section(r: dict[str, Any]) -> list[str]:
    peak = r["matmul"]
    auto_dtype = "bf16" if r["machine"]["fast_bf16"] else "fp32"
    rows = []
    for key, label, dtype in (
        ("fit-llmclf fp32", "llmclf default (fp32)", "fp32"),
        ("fit-llmclf auto", f"llmclf precision=auto ({auto_dtype})", auto_dtype),
    ):
        f = r[key]
        epoch = sum(f["epoch_s"]) / len(f["epoch_s"])
        work = f["gflop"]["cache"] + sum(f["gflop"]["epochs"]) + f["gflop"]["final"]
        parts = (
            f"setup {f['setup_s']:.1f} + cache {f['cache_s']:.1f} + 5 x {epoch:.1f} "
            f"+ final eval {f['final_s']:.1f} s"
        )
        how = (
            f"1 epoch run, 5 projected: {parts}"
            if f["projected"]
            else f"5 epochs run: {parts.replace(' x ', ' x (mean) ')}"
        )
        rows.append(
            [
                label,
                f"{epoch:.1f}",
                _duration(f["fit5_s"]),
                f"{f['rss_mib']:.0f} MiB",
                _rate(work, f["fit5_s"], peak[dtype], dtype),
                f"{100 * f['test_accuracy']:.1f}%",
                how,
            ]
        )
    for key, label in (
        ("fit-hf book", "transformers, book padding"),
        ("fit-hf batch", "transformers, per-batch padding"),
    ):
        f = r[key]
        if f["pad_length"]:
            label += f" ({f['pad_length']} tokens)"
        if f["first_epoch_s"]:
            how = f"1 epoch run ({f['first_epoch_s']:.0f} s); 5 projected by tokens"
        else:
            how = (
                f"{f['steps_run']} steps spread over epoch 1 run ({f['step_s']:.2f} s a step) "
                "and 1 periodic "
                f"evaluation ({f['periodic_eval_s']:.1f} s); 5 epochs projected by tokens"
            )
        rows.append(
            [
                label,
                f"{f['fit5_s'] / 5:.1f}",
                _duration(f["fit5_s"]),
                f"{f['rss_mib']:.0f} MiB",
                _rate(f["gflop_fit5"], f["fit5_s"], peak["fp32"], "fp32"),
                "-",
                how,
            ]
        )
    headers = ["implementation", "s/epoch", "5 epochs", "peak RSS", "GFLOP/s", "test acc", "how"]
    out = [
        "",
        f"Fine-tuning: {r['backbone']} shape, random weights, the book's recipe (last block + "
        "ln_f + head trainable, AdamW 5e-5, batch 8, evaluation every 50 steps on 5 batches), "
        "dropout 0",
        _table(headers, rows),
    ]
    f = r["fit-llmclf fp32"]
    if f["cache_s"]:
        epoch = sum(f["epoch_s"]) / len(f["epoch_s"])
        out.append(
            f"llmclf fp32 by phase: cache build {f['gflop']['cache'] / f['cache_s']:.0f} GFLOP/s, "
            f"epochs {f['gflop']['epochs'][0] / epoch:.0f} GFLOP/s; {f['cache']}"
        )
    if f["projected"]:
        out.append("test acc: after the epoch run (random weights: only the fp32/bf16 gap matters)")
    return out


def _predict_section(r: dict[str, Any]) -> list[str]:
    peak, hf, ours = r["matmul"], r["predict-hf"], r["predict-llmclf"]
    sets = [name for name in ("test", "all") if name in hf]
    variants = [("transformers fp32", hf, "fp32")] + [
        (f"llmclf {v}", ours[v], "bf16" if v == "bf16" else "fp32")
        for v in ("fp32", "bf16", "int8")
    ]
    rows = []
    for label, res, dtype in variants:
        row = [label] + [f"{res[n]['texts_per_s']:.1f}" for n in sets]
        for n in sets:
            delta = 100 * (res[n]["accuracy"] - ours["fp32"][n]["accuracy"])
            row.append(f"{100 * res[n]['accuracy']:.2f}% ({delta:+.2f})")
        for n in sets:
            same = sum(a == b for a, b in zip(res[n]["labels"], hf[n]["labels"], strict=True))
            row.append(f"{same}/{len(hf[n]['labels'])}")
        row.append(_rate(res["test"]["gflop"], res["test"]["seconds"], peak[dtype], dtype))
        rows.append(row)
    headers = (
        ["implementation"]
        + [f"{n} texts/s" for n in sets]
        + [f"{n} acc (vs llmclf fp32)" for n in sets]
        + [f"{n} labels = transformers" for n in sets]
        + ["GFLOP/s (test)"]
    )
    counts = ", ".join(f"{n}: {hf[n]['n']} texts" for n in sets)
    if r["mode"] == "quick":
        counts += " (quick: the first of the 300 test texts only)"
    return [
        "",
        "Prediction, same weights: Classifier.predict (tokenising included, its default batch "
        "size, batches sorted by length) vs transformers fp32 (per-batch padding, batches of "
        f"{r['predict-hf'].get('batch_size', 32)} in input order)",
        _table(headers, rows),
        f"({counts}; int8 is counted against the fp32 peak)",
    ]


def _fast_path_section(r: dict[str, Any]) -> list[str]:
    fp = r["fast-vs-plain"]
    rows = [
        [
            name,
            f"{100 * fp[k]['test_accuracy']:.2f}%",
            f"{100 * fp[k]['val_accuracy']:.2f}%",
            f"{fp[k]['test_loss']:.5f}",
            f"{fp[k]['seconds']:.1f} s",
        ]
        for k, name in (("auto", "cache on (fast)"), ("off", "cache off (plain)"))
    ]
    return [
        "",
        f"Fast path vs plain path: gpt2-tiny trained {fp['epochs']} epochs (lr {fp['lr']:g}), "
        "same seed; metrics of the saved (best) model",
        _table(["path", "test acc", "val acc", "test loss", "fit time"], rows),
        f"largest loss difference in the history: {fp['max_loss_difference_first_epoch']:.1e} "
        f"in epoch 1, {fp['max_loss_difference_run']:.1e} over the run (the paths add in a "
        "different order and AdamW amplifies 1e-7 differences step after step)",
    ]


def targets(r: dict[str, Any]) -> str:
    x, t, ours = ratios(r), TARGETS, r["predict-llmclf"]
    fit_gap = _points(r["fit-llmclf auto"]["test_accuracy"], r["fit-llmclf fp32"]["test_accuracy"])
    same = ours["fp32"]["test"]["labels"] == r["predict-hf"]["test"]["labels"]
    # the accuracy change on the largest set measured: all 5,574 texts in a full run, where
    # one label is 0.02 points (on the 300 test texts it is 0.33 points)
    judged = "all" if "all" in ours["fp32"] else "test"
    base = ours["fp32"][judged]["accuracy"]
    fast = [
        (v, x[f"predict_{v}"], _points(ours[v][judged]["accuracy"], base)) for v in ("bf16", "int8")
    ]
    fast_ok = any(s >= t["predict_fast"] and g <= t["predict_fast_points"] for _, s, g in fast)
    rss = [r[k]["rss_mib"] for k in ("fit-llmclf fp32", "fit-hf batch", "fit-hf book")]
    checks = [
        (
            "fit fp32 >= 5x transformers per-batch",
            x["fit_fp32"] >= t["fit_fp32"],
            f"{x['fit_fp32']:.2f}x (vs book padding: {x['fit_book']:.2f}x)",
        ),
        (
            "fit auto >= 8x, test acc within 1 point",
            x["fit_auto"] >= t["fit_auto"] and fit_gap <= t["fit_auto_points"],
            f"{x['fit_auto']:.2f}x, {fit_gap:.2f} points",
        ),
        (
            "predict fp32 >= 1.5x, identical labels",
            x["predict_fp32"] >= t["predict_fp32"] and same,
            f"{x['predict_fp32']:.2f}x, labels {'identical' if same else 'DIFFERENT'}",
        ),
        (
            "predict bf16 or int8 >= 3x within 0.5 point",
            fast_ok,
            ", ".join(f"{v} {s:.2f}x ({g:.2f} points on {judged})" for v, s, g in fast),
        ),
        (
            "fit peak memory <= transformers'",
            rss[0] <= min(rss[1:]),
            f"{rss[0]:.0f} MiB vs {rss[1]:.0f} (per-batch) / {rss[2]:.0f} (book) MiB",
        ),
    ]
    width = max(len(name) for name, _, _ in checks)
    lines = [f"  {'met   ' if ok else 'MISSED'}  {n.ljust(width)}  {d}" for n, ok, d in checks]
    return "\n".join(["Targets (issue 6)", *lines])


def _cpu_shares(r: dict[str, Any]) -> list[str]:
    shares = {k: v["cpu_share"] for k, v in r.items() if isinstance(v, dict) and "cpu_share" in v}
    if not shares:
        return []
    low = [k for k, v in shares.items() if v < LOW_CPU_SHARE]
    lines = [
        "",
        "CPU share (CPU time / wall time / threads): "
        + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()),
    ]
    if low:
        lines.append(
            f"warning: under {LOW_CPU_SHARE:.0%} of the threads' CPU time for {', '.join(low)}: "
            "other processes competed for the CPUs, so those figures are too slow"
        )
    return lines


def render(r: dict[str, Any]) -> str:
    sizes, peak = r["fit-llmclf fp32"]["sizes"], r["matmul"]
    out = [
        "",
        f"data: {r['dataset']}, undersampled; train/validation/test = "
        f"{sizes['train']}/{sizes['validation']}/{sizes['test']}",
        f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s",
        *_fit_section(r),
        *_predict_section(r),
        *_fast_path_section(r),
        *whole_model.render(r),
        *_cpu_shares(r),
        "",
        targets(r),
        "",
        f"wall time {r['wall_s']:.0f} s",
    ]
    return "\n".join(out)


def final_line(r: dict[str, Any]) -> str:
    parts = []
    if "fit-llmclf fp32" in r:
        x = ratios(r)
        parts += [f"fit_speedup={x['fit_fp32']:.2f}", f"predict_speedup={x['predict_fp32']:.2f}"]
    if "whole-hf lora" in r:
        parts.append(f"lora_speedup={whole_model.lora_speedup(r):.2f}")
    if "fit-llmclf-llama" in r:
        from llama_measurements import llama_ratios

        y = llama_ratios(r)
        parts += [f"llama_fit_speedup={y['fit']:.2f}", f"llama_predict_speedup={y['predict']:.2f}"]
    return " ".join(parts)
