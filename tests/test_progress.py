"""Slow phases report progress: events from the library, bars from the CLI on a terminal only."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Collect, fit_tiny_run, tiny_config, tiny_fit_args, write_topic_csv
from rich.console import Console

from llmclf import Classifier, Trainer
from llmclf.cli import main
from llmclf.cli.render import ConsoleStream, RichReporter
from llmclf.evaluation import evaluate_run
from llmclf.prediction_io import PredictionWriter, predict_chunks


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny_run(tmp_path_factory.mktemp("progress"), 12)


def phases(reporter: Collect) -> list[tuple[str, int | None, list[int]]]:
    """(name, total, completed values) of each phase, in start order; asserts that a phase
    started inside another (tokenise inside data) ends before it."""
    out: list[tuple[str, int | None, list[int]]] = []
    open_: list[int] = []  # indexes into out of the phases in flight, innermost last
    for event, data in reporter.events:
        if event == "phase_start":
            out.append((data["phase"], data["total"], []))
            open_.append(len(out) - 1)
        elif event == "phase_progress":
            assert open_ and out[open_[-1]][0] == data["phase"]
            out[open_[-1]][2].append(data["completed"])
        elif event == "phase_end":
            assert open_ and out[open_.pop()][0] == data["phase"] and data["seconds"] >= 0
    assert not open_, f"{out[open_[-1]][0]} never ended"
    return out


def test_fit_reports_each_slow_phase_in_order_with_totals(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=12)
    reporter = Collect()
    config = tiny_config(data, tmp_path / "run", trainable="last-block", epochs=1, batch_size=8)
    result = Trainer(config, reporter=reporter).fit()
    got = phases(reporter)
    names = ["data", "tokenise", "backbone", "trunk cache", "final evaluation"]
    assert [name for name, _, _ in got] == names
    sizes = [m["n"] for m in result.metrics.values()]
    assert got[1][1] == got[1][2][-1] == 36  # every text tokenised, in one batch
    cache, evaluation = got[3], got[4]
    assert cache[1] == sum(sizes) and cache[2][-1] == cache[1]
    assert evaluation[1] == sum(math.ceil(n / 8) for n in sizes)
    assert evaluation[2] == list(range(1, evaluation[1] + 1))
    for _, _, completed in got:
        assert completed == sorted(completed)
    # the cache is built before the data report and training; the final evaluation after both
    order = [(e, d.get("phase")) for e, d in reporter.events]
    assert order.index(("phase_end", "trunk cache")) < order.index(("data", None))
    assert order.index(("epoch_end", None)) < order.index(("phase_start", "final evaluation"))


def test_predict_calls_progress_once_a_batch_with_every_text(run: Path) -> None:
    counts: list[int] = []
    texts = [f"my printer is broken {'again ' * i}" for i in range(10)]
    predictions = Classifier.load(run).predict(texts, batch_size=4, progress=counts.append)
    assert len(predictions) == 10
    assert counts == [4, 4, 2]


def test_predict_chunks_reports_a_predict_phase_of_unknown_total(run: Path) -> None:
    reporter = Collect()
    writer = PredictionWriter(io.StringIO(), "jsonl", Classifier.load(run).labels)
    chunks = iter([["a", "b", "c"], ["d", "e"]])
    read = predict_chunks(Classifier.load(run), chunks, writer, 2, reporter=reporter)
    assert read == 5
    assert phases(reporter) == [("predict", None, [2, 3, 5])]


def test_evaluate_reports_loading_data_and_scoring(run: Path) -> None:
    reporter = Collect()
    metrics = evaluate_run(run, reporter=reporter)
    got = phases(reporter)
    assert [name for name, _, _ in got] == ["load model", "data", "evaluate"]
    assert got[2][1] == metrics["n"] == got[2][2][-1]


def bar_events(reporter: RichReporter) -> None:
    reporter.event("phase_start", phase="trunk cache", total=10)
    reporter.event("phase_progress", phase="trunk cache", completed=4)
    reporter.event("phase_end", phase="trunk cache", seconds=1.5)
    reporter.close()


def test_a_terminal_shows_a_progress_bar_for_a_phase() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    bar_events(RichReporter(console))
    shown = console.file.getvalue()
    assert "trunk cache" in shown
    assert "━" in shown  # the bar itself
    assert "0/10" in shown


def test_no_bar_when_not_a_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=80)
    reporter = RichReporter(console)
    bar_events(reporter)
    assert console.file.getvalue() == ""
    assert reporter.phases is None


def test_console_stream_prints_whole_lines_at_flush_and_the_rest_at_close() -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=20)
    stream = ConsoleStream(console)
    stream.write('[{"label": "[urgent]"')
    stream.write(", 'a text longer than the console is wide'}\n")
    assert console.file.getvalue() == ""  # held until flush: one bar redraw per chunk
    stream.write("]")
    stream.flush()
    assert (
        console.file.getvalue()
        == '[{"label": "[urgent]", \'a text longer than the console is wide\'}\n'
    )
    stream.close()
    assert console.file.getvalue().endswith("}\n]")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_cli_bar_on_a_terminal_and_none_under_quiet(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"refund my invoice {i}" for i in range(40)) + "\n")
    args = [command, str(run)]
    if command == "predict":
        args += ["--file", str(texts), "--output", str(tmp_path / "out.jsonl")]
    shown = CliRunner().invoke(main, args)
    quiet = CliRunner().invoke(main, [*args, "--quiet"])
    assert shown.exit_code == quiet.exit_code == 0, shown.output + quiet.output
    assert "━" in shown.stderr and command in shown.stderr
    assert "━" not in quiet.stderr and "load model" not in quiet.stderr
    if command == "predict":
        rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert len(rows) == 40


def test_log_json_records_the_phases(tmp_path: Path) -> None:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=12)
    log = tmp_path / "events.jsonl"
    args = tiny_fit_args(data, tmp_path / "run", "--epochs", "1", "--log-json", str(log))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in log.read_text().splitlines()]
    starts = [e["phase"] for e in events if e["event"] == "phase_start"]
    ends = [e["phase"] for e in events if e["event"] == "phase_end"]
    assert starts == ["data", "tokenise", "backbone", "final evaluation"]  # all: no cache
    assert ends == ["tokenise", "data", "backbone", "final evaluation"]  # tokenise inside data
    assert all(e["seconds"] >= 0 for e in events if e["event"] == "phase_end")
