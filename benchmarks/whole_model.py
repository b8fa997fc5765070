"""Training through every block: llmclf against transformers (+ PEFT), time per epoch (issue 15).

Two recipes, on GPT-2 small's shape with random weights, batch 8, AdamW (lr 5e-5, weight decay
0.1), dropout 0, the same training texts and labels on both sides:

- ``lora``: LoRA r 8, alpha 16 on every block's attention and MLP projections, head trainable.
  transformers: ``GPT2ForSequenceClassification`` + ``peft.get_peft_model(LoraConfig(r=8,
  lora_alpha=16, target_modules=["c_attn", "c_proj", "c_fc"], modules_to_save=["score"]))``.
- ``all``: every parameter trains.

The transformers side is written as a plain user writes it: a shuffled ``DataLoader``, each
batch padded to its longest text with an attention mask (``DataCollatorWithPadding``'s output),
``torch.optim.AdamW`` with its defaults; and once more with transformers' length grouping
(``LengthGroupedSampler``, what ``TrainingArguments(group_by_length=True)`` uses). llmclf runs
``Trainer.fit`` through its public API with the options given (``--pack`` ...).

Only the training steps are timed (no evaluation inside the epoch on either side: llmclf's
``eval_every`` is set past the epoch's end). With ``steps`` set, the first ``steps`` steps of the
shuffled epoch run and the epoch is projected: the mean step after the first (which warms up)
times the epoch's steps. With ``steps`` None the whole epoch runs and its test accuracy is
reported.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

LR, WEIGHT_DECAY, BATCH = 5e-5, 0.1, 8
PAD_ID = 50256
EVERY_STEP_PAST_THE_EPOCH = 10**9  # eval_every: no periodic evaluation inside the epoch


class _Enough(Exception):
    """Raised from the reporter once the steps to time have run."""


def modes(mode: str, common: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The measurements compare.py runs for ``mode``: one LoRA pair in quick and smoke runs;
    LoRA and all-layer, fp32 and auto, transformers plain and grouped in a full run."""
    steps = 4 if mode == "smoke" else 10 if mode == "quick" else None
    base = {k: common[k] for k in ("threads", "dataset", "backbone")} | {"steps": steps}
    ours = {"pack": True}
    plan = {
        "whole-llmclf lora": {**base, "trainable": "lora", "options": ours},
        "whole-hf lora": {**base, "trainable": "lora", "group_by_length": False},
    }
    if mode != "full":
        return plan
    auto = {**ours, "precision": "auto"}
    plan["whole-llmclf lora top4"] = {**base, "trainable": "lora:blocks=4", "options": ours}
    plan["whole-hf lora top4"] = {
        **base,
        "trainable": "lora",
        "lora_blocks": 4,
        "group_by_length": False,
    }
    for trainable in ("lora", "all"):
        plan[f"whole-llmclf {trainable}"] = {**base, "trainable": trainable, "options": ours}
        plan[f"whole-llmclf {trainable} auto"] = {**base, "trainable": trainable, "options": auto}
        plan[f"whole-hf {trainable}"] = {**base, "trainable": trainable, "group_by_length": False}
        plan[f"whole-hf {trainable} grouped"] = {
            **base,
            "trainable": trainable,
            "group_by_length": True,
        }
    return plan


# ----- llmclf ----------------------------------------------------------------------------------
def fit_llmclf(params: dict[str, Any]) -> dict[str, Any]:
    """``Trainer.fit`` for one epoch (or its first ``steps`` steps), timed from its events."""
    from measurements import peak_rss_mib

    from llmclf import TrainConfig, Trainer
    from llmclf.reporting import Reporter

    steps_to_run = params["steps"]
    events: list[tuple[str, float, dict[str, Any]]] = []
    cpu: dict[str, list[float]] = {"epoch_start": [], "step": []}

    class Clock(Reporter):
        def event(self, name: str, **data: Any) -> None:
            events.append((name, time.perf_counter(), data))
            if name in cpu:
                cpu[name].append(time.process_time())
            done = sum(1 for n, _, _ in events if n == "step")
            if name == "step" and steps_to_run is not None and done >= steps_to_run:
                raise _Enough

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            dataset=params["dataset"],
            backbone=params["backbone"],
            weights="random",
            trainable=params["trainable"],
            epochs=1,
            eval_every=EVERY_STEP_PAST_THE_EPOCH,
            output=str(Path(tmp) / "run"),
            **params.get("options", {}),
        )
        start = time.perf_counter()
        try:
            run = Trainer(config, reporter=Clock()).fit()
            accuracy = run.metrics["test"]["accuracy"]
        except _Enough:
            accuracy = None
    epoch_start = next(t for n, t, _ in events if n == "epoch_start")
    total_steps = next(d["steps"] for n, _, d in events if n == "epoch_start")
    step_ends = [t for n, t, _ in events if n == "step"]
    notes = [d.get("text", "") for n, _, d in events if n == "message"]
    model = next(d for n, _, d in events if n == "model")
    return {
        "trainable": params["trainable"],
        "options": params.get("options", {}),
        **_epoch(epoch_start, step_ends, total_steps),
        **_epoch(cpu["epoch_start"][0], cpu["step"], total_steps, "cpu_"),
        "setup_s": epoch_start - start,
        "cache_s": sum(
            d["seconds"] for n, _, d in events if n == "phase_end" and d["phase"] == "trunk cache"
        ),
        "test_accuracy": accuracy,
        "cache": model["cache"],
        "trainable_parameters": model["trainable"],
        "notes": notes,
        "rss_mib": peak_rss_mib(),
    }


def _epoch(
    start: float, step_ends: list[float], total_steps: int, prefix: str = ""
) -> dict[str, Any]:
    """The epoch's training time: measured when every step ran, else projected from the mean
    step after the first. With ``prefix`` "cpu_", the same from the process's CPU time
    (``time.process_time``): on a shared machine the wall time counts the other processes'
    turns, the CPU time much less (with one thread it is what an idle core would take)."""
    times = [b - a for a, b in zip([start, *step_ends], step_ends, strict=False)]
    projected = len(times) != total_steps
    warm = (times[1:] or times) if projected else times
    step = sum(warm) / len(warm)
    epoch = times[0] + step * (total_steps - 1) if projected else sum(times)
    out = {f"{prefix}epoch_s": epoch, f"{prefix}step_s": step}
    if not prefix:
        out.update(projected=projected, steps_run=len(times), steps=total_steps)
    return out


# ----- transformers (+ PEFT) -------------------------------------------------------------------
def build_hf(
    trainable: str,
    shape: dict[str, int],
    num_labels: int,
    seed: int = 123,
    lora_blocks: int | None = None,
):
    """GPT2ForSequenceClassification, random weights, dropout 0; with PEFT's LoRA for ``lora``
    (on the top ``lora_blocks`` blocks only when given: PEFT's ``layers_to_transform``)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = GPT2Config(
        **shape,
        num_labels=num_labels,
        pad_token_id=PAD_ID,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2ForSequenceClassification(config)
    if trainable == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            task_type="SEQ_CLS",
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=["c_attn", "c_proj", "c_fc"],
            modules_to_save=["score"],
            fan_in_fan_out=True,  # GPT-2's projections are Conv1D
        )
        if lora_blocks is not None:
            n_layer = shape["n_layer"]
            lora.layers_to_transform = list(range(n_layer - lora_blocks, n_layer))
            lora.layers_pattern = "h"
        model = get_peft_model(model, lora)
    return model


def _collate(rows: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
    """What ``DataCollatorWithPadding`` returns: right-padded ids, attention mask, labels."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), PAD_ID)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, _) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    labels = torch.tensor([label for _, label in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _loader(token_ids, labels, group_by_length: bool, seed: int = 123):
    from torch.utils.data import DataLoader

    rows = list(zip(token_ids, labels, strict=True))
    generator = torch.Generator().manual_seed(seed)
    if not group_by_length:
        return DataLoader(rows, BATCH, shuffle=True, collate_fn=_collate, generator=generator)
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = [len(ids) for ids in token_ids]
    sampler = LengthGroupedSampler(BATCH, lengths=lengths, generator=generator)
    return DataLoader(rows, BATCH, sampler=sampler, collate_fn=_collate)


def fit_hf(params: dict[str, Any]) -> dict[str, Any]:
    """The plain user's loop for one epoch (or its first ``steps`` steps); test accuracy after
    a whole epoch."""
    from measurements import _data, _model_shape, _shape, peak_rss_mib

    data = _data(params)
    shape = _model_shape(_shape(params["backbone"]))
    model = build_hf(
        params["trainable"], shape, len(data.labels), lora_blocks=params.get("lora_blocks")
    )
    params_to_train = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params_to_train, lr=LR, weight_decay=WEIGHT_DECAY)
    loader = _loader(data.train.token_ids, data.train.labels, params["group_by_length"])
    model.train()
    steps, step_ends, cpu_ends = params["steps"], [], []
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in loader:
        out = model(**batch)  # the model computes the cross-entropy from "labels"
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_ends.append(time.perf_counter())
        cpu_ends.append(time.process_time())
        if steps is not None and len(step_ends) >= steps:
            break
    total = math.ceil(len(data.train) / BATCH)
    result = {**_epoch(start, step_ends, total), **_epoch(cpu_start, cpu_ends, total, "cpu_")}
    accuracy = None
    if not result["projected"]:
        accuracy = _hf_accuracy(model, data.test.token_ids, data.test.labels)
    return {
        "trainable": params["trainable"],
        "lora_blocks": params.get("lora_blocks"),
        "group_by_length": params["group_by_length"],
        **result,
        "trainable_parameters": sum(p.numel() for p in params_to_train),
        "test_accuracy": accuracy,
        "rss_mib": peak_rss_mib(),
    }


@torch.no_grad()
def _hf_accuracy(model, token_ids, labels) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(token_ids), 32):
        batch = _collate(list(zip(token_ids[i : i + 32], labels[i : i + 32], strict=True)))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        correct += int((logits.argmax(-1) == batch["labels"]).sum())
    return correct / len(token_ids)


WORKERS = {"whole-llmclf": fit_llmclf, "whole-hf": fit_hf}


# ----- report ----------------------------------------------------------------------------------
def lora_speedup(r: dict[str, Any]) -> float:
    """transformers + PEFT's LoRA epoch (plain) over llmclf's, fp32, by wall time."""
    return r["whole-hf lora"]["epoch_s"] / r["whole-llmclf lora"]["epoch_s"]


def _reference(key: str) -> str:
    """The plain transformers measurement a row is compared with."""
    key = key.replace("whole-llmclf", "whole-hf")
    return key.removesuffix(" auto").removesuffix(" grouped")


def render(r: dict[str, Any]) -> list[str]:
    """The section of compare.py's report: one row per measurement, ratio to plain HF."""
    keys = [k for k in r if k.startswith(("whole-llmclf", "whole-hf"))]
    if not keys:
        return []
    rows = []
    for key in keys:
        f = r[key]
        hf = r.get(_reference(key))
        how = (
            f"{f['steps_run']} of {f['steps']} steps run, projected"
            if f["projected"]
            else f"{f['steps']} steps run"
        )
        if f.get("cache_s"):
            how += f"; + {f['cache_s']:.0f} s cache build, once per run"
        acc = "-" if f["test_accuracy"] is None else f"{100 * f['test_accuracy']:.1f}%"
        ratio = f"{hf['epoch_s'] / f['epoch_s']:.2f}x" if hf else "-"
        cpu_ratio = f"{hf['cpu_epoch_s'] / f['cpu_epoch_s']:.2f}x" if hf else "-"
        rows.append(
            [
                key,
                f"{f['epoch_s']:.1f}",
                ratio,
                f"{f['cpu_epoch_s']:.1f}",
                cpu_ratio,
                f"{f['rss_mib']:.0f} MiB",
                acc,
                how,
            ]
        )
    from report import _table

    headers = [
        "measurement",
        "s/epoch",
        "vs HF plain",
        "CPU s/epoch",
        "vs HF (CPU s)",
        "peak RSS",
        "test acc",
        "how",
    ]
    return [
        "",
        f"Training through every block (issue 15): {r['backbone']} shape, random weights, "
        "batch 8, AdamW 5e-5; training steps only; llmclf with --pack",
        _table(headers, rows),
    ]
