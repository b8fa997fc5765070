"""``llmclf sweep``: rows from a grid, a file or the book's preset; the table; resuming an
interrupted sweep; reuse of prepared data and frozen-trunk caches; the options the book's rows
needed (bidirectional attention, mean-all pooling)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import Collect, sigterm_once, write_topic_csv

from llmclf.cli import main
from llmclf.data.padding import check_combination
from llmclf.errors import ConfigError, UsageError
from llmclf.models.classifier import SequenceClassifier, pool
from llmclf.models.gpt2 import GPT2, GPT2Config, set_attention
from llmclf.sweeps import SweepRow, plan_sweep, sweep
from llmclf.sweeps.presets import BOOK_ROWS
from llmclf.sweeps.rows import grid_rows, parse_grid, read_sweep_file
from llmclf.training.config import TrainConfig
from llmclf.training.trainer import check_names

TINY = {
    "backbone": "gpt2-tiny",
    "weights": "random",
    "balance": "none",
    "epochs": 2,
    "batch_size": 16,
    "lr": 1e-3,
    "eval_every": 5,
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_topic_csv(tmp_path / "tickets.csv", rows_per_class=12)


def base(dataset: Path, **changes) -> dict:
    return {**TINY, "dataset": str(dataset), **changes}


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# ----- rows --------------------------------------------------------------------------------
def test_grid_values_are_typed_like_fit_options_and_expand_to_every_combination() -> None:
    grid = parse_grid(["trainable=head,last-block,all", "lr=1e-3,5e-5", "bucket=yes,no"])
    assert grid == {
        "trainable": ["head", "last-block", "all"],
        "lr": [1e-3, 5e-5],
        "bucket": [True, False],
    }
    rows = grid_rows(grid)
    assert len(rows) == 12
    assert rows[0].overrides == {"trainable": "head", "lr": 1e-3, "bucket": True}
    assert rows[1].overrides == {"trainable": "head", "lr": 1e-3, "bucket": False}  # last fastest
    assert rows[0].name == "trainable=head_lr=0.001_bucket=yes"
    assert len({r.name for r in rows}) == 12


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("colour=red", "not a config field"),
        ("epochs=two", "not a valid integer"),
        ("pooling=middle", "middle"),
        ("pooling", "FIELD=V1,V2"),
        ("output=a,b", "--output"),
    ],
)
def test_bad_grid_flags_are_one_line_usage_errors_before_any_run(
    tmp_path: Path, dataset: Path, spec: str, words: str
) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--dataset", str(dataset), "--grid", spec, "--output", str(out), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and words in result.output
    assert not out.exists()


def test_sweep_files_in_toml_and_json_give_named_rows(tmp_path: Path) -> None:
    toml = tmp_path / "rows.toml"
    toml.write_text(
        '[[rows]]\nname = "head only"\ntrainable = "head"\n\n'
        '[[rows]]\ntrainable = "lora:r=4,alpha=8"\nbatch-size = 4\n'
    )
    rows = read_sweep_file(toml)
    assert [r.name for r in rows] == ["head_only", "row2"]
    assert rows[1].overrides == {"trainable": "lora:r=4,alpha=8", "batch_size": 4}
    as_json = tmp_path / "rows.json"
    as_json.write_text(json.dumps([{"name": "a", "pooling": "first"}]))
    assert read_sweep_file(as_json) == [SweepRow("a", {"pooling": "first"})]


def test_weights_a_row_cannot_load_are_refused_before_any_run(
    tmp_path: Path, dataset: Path
) -> None:
    rows = [SweepRow("ok"), SweepRow("none", {"weights": "pretrained"})]
    with pytest.raises(UsageError, match="row none: backbone 'gpt2-tiny' has no pretrained"):
        sweep(base(dataset), rows=rows, output=tmp_path / "s")
    rows = [SweepRow("ok"), SweepRow("lost", {"weights": str(tmp_path / "missing.safetensors")})]
    with pytest.raises(UsageError, match=r"row lost: weights .*missing\.safetensors: no such file"):
        sweep(base(dataset), rows=rows, output=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_bad_row_is_named_and_nothing_runs(tmp_path: Path, dataset: Path) -> None:
    rows = tmp_path / "rows.toml"
    rows.write_text('[[rows]]\nname = "ok"\n\n[[rows]]\nname = "bad"\nepochs = 0\n')
    out = tmp_path / "sweep"
    args = ["sweep", "--dataset", str(dataset), "--file", str(rows), "--output", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.startswith("Error: row bad: epochs: must be an integer >= 1")
    assert not out.exists()


# ----- running, the table, resuming --------------------------------------------------------
def test_results_files_hold_each_rows_overrides_and_its_runs_measurements(
    tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--dataset", str(dataset), "--output", str(out), "-q"]
    for name, value in TINY.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(main, [*args, "--grid", "trainable=head,all"])
    assert result.exit_code == 0, result.output
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["row"] for r in table] == ["trainable=head", "trainable=all"]
    assert [r["trainable"] for r in table] == ["head", "all"]
    for row in table:
        run = out / row["row"]
        saved = metrics(run)
        assert float(row["test_accuracy"]) == pytest.approx(saved["test"]["accuracy"])
        assert float(row["train_accuracy"]) == pytest.approx(saved["train"]["accuracy"])
        assert float(row["validation_accuracy"]) == pytest.approx(saved["validation"]["accuracy"])
        assert float(row["test_loss"]) == pytest.approx(saved["test"]["loss"], rel=1e-5)
        manifest = json.loads((run / "llmclf.json").read_text())
        assert int(row["trainable_parameters"]) == manifest["trainable"]["trainable_parameters"]
        assert float(row["wall_time_s"]) > 0 and float(row["peak_memory_mib"]) > 0
        assert row["status"] == "done" and manifest["complete"]
    head, full = (int(r["trainable_parameters"]) for r in table)
    assert head < full
    markdown = (out / "results.md").read_text()
    assert "| trainable=head | head |" in markdown and "| trainable=all | all |" in markdown
    assert result.output.startswith("# Sweep results")
    pytest.importorskip("matplotlib")
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


class StopAtRun(Collect):
    """Interrupts the sweep when run number ``at`` starts (or when its epoch ``epoch`` does)."""

    def __init__(self, at: int, epoch: int | None = None) -> None:
        super().__init__()
        self.at, self.epoch, self.runs = at, epoch, 0

    def event(self, name: str, **data) -> None:
        super().event(name, **data)
        if name == "config":
            self.runs += 1
            if self.runs == self.at and self.epoch is None:
                raise KeyboardInterrupt
        if name == "epoch_start" and self.runs == self.at and data["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_sweep_continues_without_running_finished_rows(
    tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "sweep"
    grid = {"lr": [1e-3, 5e-4, 2e-4]}
    with pytest.raises(KeyboardInterrupt):  # stopped in row 2's second epoch (row 2 resumes)
        sweep(base(dataset), grid=grid, output=out, reporter=StopAtRun(2, epoch=2))
    first = out / "lr=0.001"
    finished = (first / "llmclf.json").stat().st_mtime_ns
    assert (out / "lr=0.0005" / "resume").is_dir()
    with open(out / "results.csv", newline="") as f:
        partial = list(csv.DictReader(f))
    assert [r["status"] for r in partial] == ["done", "pending", "pending"]
    assert partial[1]["note"] == "stopped after epoch 1; the same command continues it"

    again = Collect()
    result = sweep(base(dataset), grid=grid, output=out, reporter=again)
    assert [r.status for r in result.rows] == ["done"] * 3
    assert (first / "llmclf.json").stat().st_mtime_ns == finished  # row 1 was not run again
    started = [d["output_dir"] for e, d in again.events if e == "config"]
    assert [Path(p).name for p in started] == ["lr=0.0005", "lr=0.0002"]
    resumed_epochs = [d["epoch"] for e, d in again.events if e == "epoch_start"]
    assert resumed_epochs[0] == 2  # row 2 went on from its saved first epoch

    fresh = sweep(base(dataset), grid=grid, output=tmp_path / "uninterrupted", reporter=Collect())
    for done, clean in zip(result.rows, fresh.rows, strict=True):
        assert done.metrics == clean.metrics


def test_a_row_stopped_before_its_first_epoch_ended_starts_again(
    tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "sweep"
    grid = {"lr": [1e-3, 5e-4]}
    with pytest.raises(KeyboardInterrupt):
        sweep(base(dataset), grid=grid, output=out, reporter=StopAtRun(2, epoch=1))
    assert (out / "lr=0.0005" / "llmclf.json").is_file()  # a run without anything to resume
    result = sweep(base(dataset), grid=grid, output=out, reporter=Collect())
    assert [r.status for r in result.rows] == ["done", "done"]


def test_a_finished_row_run_with_other_settings_is_refused(tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "sweep"
    sweep(base(dataset), grid={"lr": [1e-3]}, output=out, reporter=Collect())
    rows = [SweepRow("lr=0.001", {"lr": 1e-3, "epochs": 1})]
    with pytest.raises(UsageError, match=r"row lr=0.001: .* other settings \(epochs 2 there"):
        sweep(base(dataset), rows=rows, output=out, reporter=Collect())


# ----- reuse -------------------------------------------------------------------------------
def test_rows_sharing_the_frozen_trunk_reuse_it_and_get_the_same_results(
    tmp_path: Path, dataset: Path
) -> None:
    grid = {"pooling": ["last-token", "mean", "first"], "lr": [1e-3, 3e-4]}
    fields = base(dataset, trainable="last-block")  # gpt2-tiny: block 0 frozen, cached
    shared = sweep(fields, grid=grid, output=tmp_path / "shared", reporter=Collect())
    alone = sweep(fields, grid=grid, output=tmp_path / "alone", reporter=Collect(), reuse=False)
    assert shared.reused == {"data": 5, "trunk cache": 5}
    assert alone.reused == {}
    assert [r.reused for r in shared.rows] == [[]] + [["data", "trunk cache"]] * 5
    with open(tmp_path / "shared" / "results.csv", newline="") as f:
        assert [r["reused"] for r in csv.DictReader(f)] == [""] + ["data+trunk cache"] * 5
    for a, b in zip(shared.rows, alone.rows, strict=True):
        assert a.metrics == b.metrics  # exact: the same numbers, not close ones
        history = [(tmp_path / d / a.name / "history.csv").read_text() for d in ("shared", "alone")]
        assert history[0] == history[1]


def test_the_trunk_cache_key_changes_with_everything_the_cache_depends_on(
    tmp_path: Path, dataset: Path
) -> None:
    grid = {"trainable": ["last-block", "head"], "seed": [123, 124]}
    result = sweep(
        base(dataset, trainable="last-block"), grid=grid, output=tmp_path / "s", reporter=Collect()
    )
    # another first trainable layer, and with random weights another seed: all built anew
    assert result.reused["trunk cache"] == 0


# ----- the book's preset -------------------------------------------------------------------
def test_the_book_preset_has_its_19_rows_and_describes_row_18_instead_of_running_it(
    tmp_path: Path,
) -> None:
    plan = plan_sweep(
        {"weights": "random"},
        preset="book-ablation",
        output=tmp_path / "b",
        limit_size="gpt2-small",
    )
    assert [r.label for r in plan.rows] == [str(n) for n in range(1, 20)]
    assert [r.number for r in BOOK_ROWS] == list(range(1, 20))
    by_label = {r.label: (r, c) for r, c in zip(plan.rows, plan.configs, strict=True)}
    row1 = by_label["1"][1]
    assert (row1.padding, row1.pooling, row1.trainable) == ("pad-dataset", "last", "last-block")
    assert by_label["13"][1].padding == "truncate-dataset" and by_label["13"][1].max_length == 1024
    assert by_label["17"][1].attention == "bidirectional"
    assert by_label["19"][1].pooling == "mean-all"
    assert not by_label["18"][0].runs and "no effect" in by_label["18"][0].note
    skipped = {by_label[n][0].name for n in ("6", "7", "8", "9", "12")}
    assert set(plan.skipped) == skipped


def test_the_book_preset_runs_chosen_rows_into_the_books_table(
    tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "book"
    args = [
        "sweep",
        "--preset",
        "book-ablation",
        "--rows",
        "1,17-19",
        "--dataset",
        str(dataset),
        "--output",
        str(out),
        "-q",
    ]
    for name, value in {**TINY, "epochs": 1}.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = (out / "results.md").read_text()
    header = "|  | Model | Weights | Trainable token position | Trainable layers | Context length"
    assert header in table
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| 1")}
    assert "| gpt2-tiny | random | last | last-block | longest train ex. (" in lines["| 1"]
    assert "no causal mask" in lines["| 17"]
    assert "ignore_index has no effect" in lines["| 18"] and "%" not in lines["| 18"]
    assert "mean of all positions" in lines["| 19"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["row01", "row17", "row19"]
    manifest = json.loads((out / "row17" / "llmclf.json").read_text())
    assert manifest["model"]["config"]["attention"] == "bidirectional"
    assert manifest["config"]["attention"] == "bidirectional"

    # another selection keeps the finished rows in the table, and leaves the rest out
    again = CliRunner().invoke(main, [a if a != "1,17-19" else "2" for a in args])
    assert again.exit_code == 0, again.output
    table = (out / "results.md").read_text()
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert lines["| 1"] == next(x for x in again.output.splitlines() if x.startswith("| 1 |"))
    assert "%" in lines["| 1"] and "%" in lines["| 2"] and "%" in lines["| 17"]
    assert "skipped: not in --rows" in lines["| 3"]


# ----- bidirectional attention -------------------------------------------------------------
def tiny_backbone(attention: str = "causal") -> GPT2:
    torch.manual_seed(0)
    return GPT2(
        GPT2Config(
            vocab_size=50, context_length=16, n_embd=16, n_layer=2, n_head=2, attention=attention
        )
    )


def test_bidirectional_attention_lets_a_token_see_what_follows_it() -> None:
    ids = torch.tensor([[1, 2, 3, 4]])
    changed = torch.tensor([[1, 2, 3, 9]])  # only the last token differs
    for attention in ("causal", "bidirectional"):
        model = tiny_backbone()
        set_attention(model, attention)
        with torch.no_grad():
            before, after = model(ids)[0, :3], model(changed)[0, :3]
        assert torch.equal(before, after) == (attention == "causal")


def test_bidirectional_classifier_is_exact_from_a_trunk_cache_and_at_one_position() -> None:
    model = SequenceClassifier(tiny_backbone("bidirectional"), 3, pooling="last")
    model.eval()
    ids = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        whole = model(ids)
        cached = model.forward_from(model.trunk(ids, 1), None, start_layer=1)
        # the last block at one position (forward_at) against it everywhere
        x = model.backbone.run_blocks(model.backbone.embed(ids), 0, 1)
        full = model.backbone.ln_f(model.backbone.h[1](x))[:, -1]
    torch.testing.assert_close(cached, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.head(full), whole, rtol=1e-5, atol=1e-6)


def test_bidirectional_attention_is_refused_where_it_would_depend_on_the_batch() -> None:
    with pytest.raises(ConfigError, match=r"attention bidirectional .*--padding pad-dataset"):
        check_combination("pad-batch", "last-token", None, "bidirectional")
    check_combination("pad-dataset", "last-token", None, "bidirectional")
    config = TrainConfig(backbone="llama-tiny", attention="bidirectional", padding="pad-dataset")
    with pytest.raises(ConfigError, match="needs a GPT-2 backbone; llama-tiny is llama"):
        check_names(config)
    with pytest.raises(ConfigError, match="attention: must be one of causal, bidirectional"):
        TrainConfig(attention="sideways")


def test_a_bidirectional_run_reloads_bidirectional(tmp_path: Path, dataset: Path) -> None:
    from llmclf import Classifier

    fields = base(dataset, attention="bidirectional", padding="pad-dataset", pooling="last")
    result = sweep(fields, rows=[SweepRow("bi")], output=tmp_path / "s", reporter=Collect())
    run = tmp_path / "s" / "bi"
    clf = Classifier.load(run)
    assert all(not block.attn.causal for block in clf.model.backbone.h)
    texts = ["printer screen broken", "refund my invoice please"]
    together = clf.predict_proba(texts)
    alone = torch.cat([clf.predict_proba([t]) for t in texts])
    torch.testing.assert_close(together, alone)  # fixed width: batch-independent
    assert result.rows[0].status == "done"


# ----- mean-all pooling --------------------------------------------------------------------
def test_mean_all_averages_every_position_including_padding() -> None:
    hidden = torch.arange(12.0).reshape(1, 4, 3)  # one text of 2 real tokens, 2 of padding
    lengths = torch.tensor([2])
    assert torch.equal(pool(hidden, lengths, "mean-all"), hidden.mean(dim=1))
    assert torch.equal(pool(hidden, lengths, "mean"), hidden[:, :2].mean(dim=1))
    assert not torch.equal(pool(hidden, lengths, "mean-all"), pool(hidden, lengths, "mean"))


def test_mean_all_needs_a_fixed_width_and_then_trains_with_the_trunk_cache(
    tmp_path: Path, dataset: Path
) -> None:
    with pytest.raises(ConfigError, match=r"mean-all .* --padding pad-dataset .*--pooling mean"):
        check_combination("pad-batch", "mean-all", None)
    events = Collect()
    fields = base(dataset, pooling="mean-all", padding="pad-dataset", trainable="last-block")
    result = sweep(fields, rows=[SweepRow("m")], output=tmp_path / "s", reporter=events)
    assert result.rows[0].status == "done"
    model_event = next(d for e, d in events.events if e == "model")
    assert model_event["cache"].startswith("frozen-trunk cache on")


def test_head_only_rows_with_other_poolings_do_not_share_pooled_caches(
    tmp_path: Path, dataset: Path
) -> None:
    grid = {"pooling": ["last-token", "mean"]}
    fields = base(dataset, trainable="head")  # the cache holds each text's pooled vector
    shared = sweep(fields, grid=grid, output=tmp_path / "shared", reporter=Collect())
    alone = sweep(fields, grid=grid, output=tmp_path / "alone", reporter=Collect(), reuse=False)
    assert shared.reused == {"data": 1, "trunk cache": 0}
    for a, b in zip(shared.rows, alone.rows, strict=True):
        assert a.metrics == b.metrics


def test_a_row_with_the_settings_of_an_earlier_row_shows_its_run_and_is_not_run_twice(
    tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "s"
    rows = [
        SweepRow("a", {"lr": 1e-3}),
        SweepRow("b", {"lr": 5e-4}),
        SweepRow("c", {"lr": 0.001}),  # a's settings, written otherwise
    ]
    seen = Collect()
    result = sweep(base(dataset), rows=rows, output=out, reporter=seen)
    started = [Path(d["output_dir"]).name for e, d in seen.events if e == "config"]
    assert started == ["a", "b"]
    a, b, c = result.rows
    assert c.status == "done" and c.metrics == a.metrics and c.metrics != b.metrics
    assert c.note == "same settings as row a: its run, not run twice"
    assert c.run_dir == a.run_dir and not (out / "c").exists()
    with open(out / "results.csv", newline="") as f:
        table = {r["row"]: r for r in csv.DictReader(f)}
    assert table["c"]["test_accuracy"] == table["a"]["test_accuracy"] != ""

    # a later sweep of other rows (--rows) still shows c with a's figures
    again = sweep(base(dataset), rows=rows, output=out, only="a", reporter=Collect())
    assert [r.status for r in again.rows] == ["done", "done", "done"]  # b: its finished run
    assert again.rows[2].metrics == a.metrics

    # the other way round: a row whose twin finished later in the list is not run either
    other = tmp_path / "other"
    sweep(base(dataset), rows=rows, output=other, only="c", reporter=Collect())
    seen = Collect()
    first = sweep(base(dataset), rows=rows, output=other, only="a", reporter=seen)
    assert not [e for e, _ in seen.events if e == "config"]
    assert first.rows[0].note == "same settings as row c: its run, not run twice"
    assert first.rows[0].metrics == a.metrics


def test_sigterm_during_a_sweep_says_how_to_continue(tmp_path: Path, dataset: Path) -> None:
    """A scheduler's SIGTERM stops a sweep as Ctrl-C does: exit 143, the line that says how to
    continue, and the row it stopped in resumes from its saved epoch."""
    out = tmp_path / "sweep"
    args = ["sweep", "--grid", "lr=1e-3,5e-4", "--output", str(out), "--dataset", str(dataset)]
    for name, value in {**TINY, "epochs": 30, "batch_size": 4}.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    returncode, stderr = sigterm_once([*args, "-q"], out / "lr=0.001" / "resume" / "state.json")
    assert returncode == 143, stderr
    assert stderr.endswith(
        f"Error: terminated (SIGTERM); run the same command again to continue {out}\n"
    )
    assert (out / "lr=0.001" / "resume").is_dir()
