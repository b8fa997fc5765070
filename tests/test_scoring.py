"""One scoring path: ``llmclf evaluate`` reproduces the metrics fit wrote; names fail first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import Collect, tiny_config, tiny_fit_args, write_topic_csv

from llmclf import Trainer
from llmclf.cli import main
from llmclf.data.padding import get_policy
from llmclf.errors import UnknownNameError
from llmclf.models.classifier import SequenceClassifier
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.runs import checkpoint as ckpt
from llmclf.scoring import model_logits, score

RECIPES = {
    "default": {},
    "book padding": {"padding": "pad-dataset", "pooling": "last"},
    "cut to a length": {"padding": "truncate-dataset", "max_length": 6, "pooling": "mean"},
}


@pytest.mark.parametrize("changes", RECIPES.values(), ids=RECIPES.keys())
def test_evaluate_reproduces_the_metrics_fit_wrote(tmp_path: Path, changes: dict) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=20)
    run = tmp_path / "run"
    reporter = Collect()
    config = tiny_config(data, run, trainable="last-block", epochs=1, batch_size=8, **changes)
    Trainer(config, reporter=reporter).fit()
    cache = next(d["cache"] for e, d in reporter.events if e == "model")
    assert cache.startswith("frozen-trunk cache on"), cache
    saved = json.loads((run / ckpt.METRICS_FILE).read_text())
    for split in ("train", "validation", "test"):
        result = CliRunner().invoke(
            main, ["evaluate", str(run), "--split", split, "--format", "json", "--quiet"]
        )
        assert result.exit_code == 0, result.output
        again = json.loads(result.stdout)
        assert abs(again.pop("loss") - saved[split].pop("loss")) <= 1e-6, split
        again.pop("scope")
        assert again == saved[split], split


def test_score_counts_every_text_once_whatever_the_batch_size() -> None:
    torch.manual_seed(0)
    backbone = GPT2(GPT2Config(n_layer=2, n_embd=16, n_head=2, context_length=32, vocab_size=50))
    model = SequenceClassifier(backbone, 2, pooling="last-token").eval()
    policy = get_policy("pad-batch", None, 32, 0)
    g = torch.Generator().manual_seed(1)
    texts = [torch.randint(1, 50, (n,), generator=g).tolist() for n in (3, 9, 1, 30, 12)]
    labels = [0, 1, 1, 0, 1]
    logits = model_logits(model, torch.device("cpu"))
    seen: list[int] = []
    whole = score(
        logits, texts, labels, policy, label_names=("a", "b"), batch_size=2, progress=seen.append
    )
    assert seen == [2, 2, 1] and whole["n"] == 5
    with torch.no_grad():
        batch = policy.collate(texts, labels)
        expected = torch.nn.functional.cross_entropy(
            model(batch.input_ids, batch.lengths), batch.labels
        )
    for batch_size in (1, 5):
        again = score(logits, texts, labels, policy, label_names=("a", "b"), batch_size=batch_size)
        assert again["loss"] == pytest.approx(expected.item(), abs=1e-6)
        assert again["confusion_matrix"] == whole["confusion_matrix"]
    first = score(
        logits, texts, labels, policy, label_names=("a", "b"), batch_size=2, max_batches=1
    )
    assert first["n"] == 2
    empty = score(logits, [], [], policy, label_names=("a", "b"), batch_size=2)
    assert empty["n"] == 0


@pytest.mark.parametrize(
    ("option", "value", "known"),
    [
        ("--padding", "pad-batc", "pad-batch"),
        ("--balance", "undersampl", "undersample"),
        ("--backbone", "gpt2-tin", "gpt2-tiny"),
        ("--dataset", "smss", "sms"),
    ],
)
def test_a_mistyped_name_fails_before_any_data_is_read(
    tmp_path: Path, option: str, value: str, known: str
) -> None:
    missing = tmp_path / "never-read.csv"  # reading it would fail with another error
    args = tiny_fit_args(missing, tmp_path / "run", option, value)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"did you mean {known!r}" in result.output
    assert "never-read" not in result.output
    assert not (tmp_path / "run").exists()


def test_a_mistyped_padding_fails_before_the_data_phase(tmp_path: Path) -> None:
    reporter = Collect()
    config = tiny_config(tmp_path / "never-read.csv", tmp_path / "run", padding="pad-batc")
    with pytest.raises(UnknownNameError, match="pad-batch"):
        Trainer(config, reporter=reporter).fit()
    assert reporter.events == []


def test_evaluate_at_the_fits_precision_reproduces_a_bf16_run(tmp_path: Path) -> None:
    """A bf16 fit wrote bf16 metrics; `evaluate` scored in fp32 only, so they did not match."""
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=20)
    run = tmp_path / "run"
    Trainer(tiny_config(data, run, epochs=1, batch_size=8, precision="bf16")).fit()
    saved = json.loads((run / ckpt.METRICS_FILE).read_text())["test"]
    args = ["evaluate", str(run), "--format", "json", "--quiet", "--batch-size", "8"]
    result = CliRunner().invoke(main, [*args, "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert abs(again.pop("loss") - saved.pop("loss")) <= 1e-6
    again.pop("scope")
    assert again == saved
    fp32 = CliRunner().invoke(main, args)  # the default: fp32 logits of the same weights
    assert fp32.exit_code == 0 and json.loads(fp32.stdout)["n"] == saved["n"]
