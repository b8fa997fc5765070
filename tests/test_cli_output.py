"""What the CLI prints: user strings as they are, rounded numbers, refused output formats."""

from __future__ import annotations

import json
import random
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from helpers import tiny_fit_args

from llmclf.assets import atomic_path
from llmclf.cli import main

LABELS = {"[urgent]": ["fire", "smoke", "flood", "alarm"], "[bold]normal": ["lunch", "chair"]}


@pytest.fixture(scope="module")
def bracket_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result, Path]:
    """A fit, not quiet, of labels that look like rich markup, with --log-json, class weights
    (30 vs 20 rows) and matplotlib missing. Returns (run, result, log)."""
    from conftest import SHARED_DATA

    root = tmp_path_factory.mktemp("brackets")
    rng = random.Random(0)
    rows = [
        {"text": " ".join([*rng.sample(words, 2), "please", "today"]), "label": label}
        for label, words in LABELS.items()
        for _ in range(30 if label == "[urgent]" else 20)
    ]
    data = root / "brackets.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    run, log = root / "run", root / "events.jsonl"
    args = [a for a in tiny_fit_args(data, run) if a != "--quiet"]
    args += ["--balance", "class-weight", "--log-json", str(log)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCLF_HOME", str(SHARED_DATA))
        mp.setenv("LLMCLF_OFFLINE", "1")
        mp.setitem(sys.modules, "matplotlib.figure", None)  # import fails: not installed
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return run, result, log


def test_labels_with_brackets_print_as_they_are(bracket_fit: tuple[Path, Result, Path]) -> None:
    """Rich markup ate them: "[urgent], [bold]normal" printed as "normal," (issue 12.12)."""
    _, result, _ = bracket_fit
    assert "│ [bold]normal " in result.stderr  # the data report's classes table
    assert "│ [urgent] " in result.stderr


def test_the_data_report_is_readable(bracket_fit: tuple[Path, Result, Path]) -> None:
    """It printed raw fields: max_tokens, cut_warning None, batch_width None."""
    _, result, _ = bracket_fit
    assert "rows read" in result.stderr and "tokens used per text" in result.stderr
    for raw in ("None", "max_tokens", "cut_warning", "batch_width", "rows_read"):
        assert raw not in result.stderr


def test_the_cache_note_prints_once(bracket_fit: tuple[Path, Result, Path]) -> None:
    _, result, _ = bracket_fit
    assert result.stderr.count("frozen-trunk cache") == 1, result.stderr


def test_piped_output_does_not_wrap(bracket_fit: tuple[Path, Result, Path]) -> None:
    """Off a terminal, rich wrapped at 80 columns: "(saved)" landed alone on the next line."""
    _, result, _ = bracket_fit
    epochs = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert epochs and all("validation accuracy" in line for line in epochs)
    assert all(line.endswith("(saved)") for line in epochs[:1])
    assert not any(line.strip() == "(saved)" for line in result.stderr.splitlines())


def test_the_plot_extra_hint_keeps_its_brackets(bracket_fit: tuple[Path, Result, Path]) -> None:
    _, result, _ = bracket_fit
    assert "pip install 'llmclf[plot]'" in result.stderr


def test_class_weights_print_rounded(bracket_fit: tuple[Path, Result, Path]) -> None:
    """Weights 50 / (2 * 30) and 50 / (2 * 20) printed with 17 digits."""
    run, result, _ = bracket_fit
    weights = json.loads((run / "llmclf.json").read_text())["data"]["class_weights"]
    assert weights[1] == pytest.approx(0.8333333333333334)  # saved at full precision
    assert "0.833" in result.stderr and "1.25" in result.stderr
    assert not re.search(r"\d\.\d{4,}", result.stderr), result.stderr


def test_log_json_events_carry_utc_timestamps(bracket_fit: tuple[Path, Result, Path]) -> None:
    _, _, log = bracket_fit
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events and all("time" in event for event in events)
    times = [datetime.fromisoformat(event["time"]) for event in events]
    assert all(t.utcoffset() is not None and t.utcoffset().total_seconds() == 0 for t in times)
    assert times == sorted(times)


def test_evaluate_prints_labels_and_the_confusion_title_whole(
    bracket_fit: tuple[Path, Result, Path],
) -> None:
    run, _, _ = bracket_fit
    result = CliRunner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "confusion (rows: true, columns: predicted)" in [line.strip() for line in lines]
    assert sum("[urgent]" in line for line in lines) >= 3  # per class, confusion header and row
    assert sum("[bold]normal" in line for line in lines) >= 3


def test_list_prints_descriptions_with_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmclf

    monkeypatch.setattr(llmclf.datasets, "_entries", dict(llmclf.datasets._entries))
    llmclf.datasets.register("beta-tickets", lambda: None, description="[beta] [red]tickets")
    result = CliRunner().invoke(main, ["list", "datasets"])
    assert "[beta] [red]tickets" in result.stdout


# ----- predict --output ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["p.xlsx", "p.txt", "predictions"])
def test_predict_refuses_an_output_suffix_that_names_no_format(
    bracket_fit: tuple[Path, Result, Path], tmp_path: Path, name: str
) -> None:
    """p.xlsx silently got the terminal table (texts cut with "...", no probabilities)."""
    run, _, _ = bracket_fit
    out = tmp_path / name
    result = CliRunner().invoke(main, ["predict", str(run), "fire alarm", "--output", str(out)])
    assert result.exit_code == 2
    assert "names no output format" in result.stderr
    assert ".json, .jsonl, .csv, or pass --format table|json|jsonl|csv" in result.stderr
    assert not out.exists()


def test_predict_writes_any_name_with_an_explicit_format(
    bracket_fit: tuple[Path, Result, Path], tmp_path: Path
) -> None:
    run, _, _ = bracket_fit
    out = tmp_path / "p.txt"
    args = ["predict", str(run), "fire alarm", "--output", str(out), "--format", "csv"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[0].startswith("text,label,score,p_")


def test_an_unwritable_output_names_the_users_path(
    bracket_fit: tuple[Path, Result, Path],
) -> None:
    """The error named the temporary file: /proc/.p.csv.sfuw0g3y.tmp."""
    run, _, _ = bracket_fit
    result = CliRunner().invoke(main, ["predict", str(run), "fire", "--output", "/proc/p.csv"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: /proc/p.csv: ")
    assert ".tmp" not in result.stderr


def test_atomic_path_errors_name_the_destination(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info, atomic_path(Path("/proc/p.csv")):
        pass
    assert info.value.filename == "/proc/p.csv"
    target = tmp_path / "a-directory"
    (target / "inside").mkdir(parents=True)  # replacing a non-empty directory fails
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        tmp.write_text("x")
    assert info.value.filename == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["a-directory"]  # no temporary file left


def test_predict_output_through_a_symlink_keeps_the_link(
    bracket_fit: tuple[Path, Result, Path], tmp_path: Path
) -> None:
    """The link became a regular file and its target was left unchanged."""
    run, _, _ = bracket_fit
    target, link = tmp_path / "real.csv", tmp_path / "link.csv"
    target.write_text("old\n")
    link.symlink_to(target)
    result = CliRunner().invoke(main, ["predict", str(run), "fire", "--output", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert target.read_text().startswith("text,label,score,p_")


def test_predict_output_to_a_fifo_writes_into_it(
    bracket_fit: tuple[Path, Result, Path], tmp_path: Path
) -> None:
    """The FIFO was replaced by a regular file and its reader got nothing."""
    import os
    import stat
    import threading

    run, _, _ = bracket_fit
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    result = CliRunner().invoke(main, ["predict", str(run), "fire", "smoke", "--output", str(fifo)])
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert [json.loads(line)["text"] for line in got[0].splitlines()] == ["fire", "smoke"]
    assert "read 2 texts, wrote 2 predictions" in result.stderr


def full_device(tmp_path: Path) -> Path:
    """A device that refuses every write (ENOSPC), like /dev/full: made in ``tmp_path`` where
    the process may (root), so a regression replaces that node, never the real /dev/full."""
    import os
    import stat

    node = tmp_path / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        return node
    except (OSError, AttributeError):
        pass
    if Path("/dev/full").is_char_device() and not os.access("/dev", os.W_OK):
        return Path("/dev/full")  # we cannot replace it, whatever happens
    pytest.skip("no device that refuses writes can be used safely here")


def test_predict_output_to_a_full_device_fails_in_one_line(
    bracket_fit: tuple[Path, Result, Path], tmp_path: Path
) -> None:
    """--output /dev/full exited 0 and, as root, replaced the device with a file."""
    run, _, _ = bracket_fit
    device = full_device(tmp_path)
    args = ["predict", str(run), "fire", "--output", str(device), "--format", "csv"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {device}: No space left on device; check the path\n"
    assert device.is_char_device()


def test_an_existing_file_in_an_unwritable_folder_names_the_reason(tmp_path: Path) -> None:
    """--output /proc/version said "No such file or directory" although the file exists."""
    with pytest.raises(OSError) as info, atomic_path(Path("/proc/version")):
        pass
    assert info.value.filename == "/proc/version"
    assert "cannot create a temporary file in /proc to replace it" in str(info.value)


def test_predict_says_how_many_tokens_were_cut(
    bracket_fit: tuple[Path, Result, Path],
) -> None:
    run, _, _ = bracket_fit
    result = CliRunner().invoke(main, ["predict", str(run), "fire " * 2000])
    assert result.exit_code == 0, result.output
    assert "read 1 text, wrote 1 prediction;" in result.stderr
    assert re.search(
        r"1 text was cut to the first [\d,]+ tokens, leaving out [\d,]+ tokens", result.stderr
    )


def test_a_max_length_above_the_context_is_named(tmp_path: Path) -> None:
    """--max-length 5000 was silently lowered to the backbone's context."""
    from helpers import write_topic_csv

    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=10)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, tiny_fit_args(data, run, "--max-length", "5000"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "llmclf.json").read_text())
    cap = manifest["data"]["report"]["max_tokens"]
    assert cap < 5000
    assert (
        f"Warning: max_length 5,000 is above the backbone's context of {cap:,} tokens; "
        f"texts are cut at {cap:,}\n"
    ) in result.stderr
    assert manifest["config"]["max_length"] == 5000  # what was asked stays recorded
    assert manifest["data"]["report"]["max_length"] == 5000
