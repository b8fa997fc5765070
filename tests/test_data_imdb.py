"""The built-in IMDb dataset: read straight from the tar.gz, its structure checked."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import Collect, tiny_fit_args

import llmclf
from llmclf import Classifier, TrainConfig
from llmclf.cli import main
from llmclf.cli.fit import CommaSeparatedFloats
from llmclf.data.clean import clean_text
from llmclf.data.imdb import IMDB_ASSET, read_imdb
from llmclf.data.pipeline import DataSpec, prepare_data
from llmclf.data.tokenizer import get_tokenizer
from llmclf.downloads import resolve
from llmclf.errors import ConfigError, DataError, UsageError

FOLDERS = [(part, label) for part in ("train", "test") for label in ("neg", "pos")]


def write_archive(path: Path, per_folder: int = 3, skip: tuple[str, str] | None = None) -> Path:
    """A tar.gz with the official member layout (reviews in reverse id order, unsup/ too)."""
    with tarfile.open(path, "w:gz") as archive:

        def add(name: str, text: str) -> None:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        add("aclImdb/README", "Large Movie Review Dataset v1.0")
        for part, label in FOLDERS:
            if (part, label) == skip:
                continue
            for review in reversed(range(per_folder)):
                rating = 9 if label == "pos" else 2
                add(f"aclImdb/{part}/{label}/{review}_{rating}.txt", f"{part} {label} {review}")
        add("aclImdb/train/unsup/0_0.txt", "unlabelled")
        add("aclImdb/train/labeledBow.feat", "0:1")
    return path


def test_reviews_are_read_from_the_archive_in_a_fixed_order(tmp_path: Path) -> None:
    events = Collect()
    texts, labels, parts = read_imdb(
        write_archive(tmp_path / "a.tar.gz"), per_folder=3, reporter=events
    )
    assert texts[:4] == ["train neg 0", "train neg 1", "train neg 2", "train pos 0"]
    assert len(texts) == 12 and "unlabelled" not in texts
    assert labels == (["neg"] * 3 + ["pos"] * 3) * 2
    assert parts == ["train"] * 6 + ["test"] * 6
    names = [(e, d.get("phase")) for e, d in events.events]
    assert ("phase_start", "read imdb") in names and ("phase_end", "read imdb") in names
    assert [d["completed"] for e, d in events.events if e == "phase_progress"][-1] == 12


def test_a_missing_folder_or_a_wrong_count_is_one_line(tmp_path: Path) -> None:
    missing = write_archive(tmp_path / "m.tar.gz", skip=("test", "pos"))
    with pytest.raises(DataError, match=r"aclImdb/test/pos/ has 0 reviews, not 3; delete it"):
        read_imdb(missing, per_folder=3)
    with pytest.raises(DataError, match=r"aclImdb/train/neg/ has 3 reviews, not 12,500"):
        read_imdb(write_archive(tmp_path / "small.tar.gz"))
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(DataError, match=r"cannot read .* as the IMDb archive"):
        read_imdb(junk)


def test_imdb_is_a_registered_downloadable_dataset() -> None:
    assert "imdb" in llmclf.datasets
    (item,) = resolve(["imdb"])
    assert item.assets == (IMDB_ASSET,)
    assert IMDB_ASSET.relpath == "imdb/aclImdb_v1.tar.gz" and IMDB_ASSET.sha256 is None
    assert IMDB_ASSET.url == "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"


def test_the_real_archive_holds_25000_reviews_a_side(imdb_archive: Path) -> None:
    texts, labels, parts = read_imdb(imdb_archive)
    assert parts.count("train") == parts.count("test") == 25_000
    assert labels.count("neg") == labels.count("pos") == 25_000
    assert sum("<br />" in t for t in texts) > 10_000  # the tags the book keeps


# ----- the official split, <br /> cleaning and tokenisation, on an IMDb-shaped dataset --------
def reviews(n_train: int = 40, n_test: int = 20) -> pd.DataFrame:
    rows = []
    for part, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            label = ("neg", "pos")[i % 2]
            text = f"{part} review {i}<br /><br />it was {label}" if i % 4 == 0 else f"{part} {i}"
            rows.append({"text": text, "label": label, "split": part})
    return pd.DataFrame(rows)


@pytest.fixture
def small_imdb():
    llmclf.datasets.register("small-imdb", reviews)
    yield "small-imdb"
    llmclf.datasets.unregister("small-imdb")


def test_the_official_split_keeps_test_and_cuts_a_stratified_tenth_of_train(small_imdb) -> None:
    spec = DataSpec(dataset=small_imdb, split="official", balance="none")
    data = prepare_data(spec, get_tokenizer(), 1024)
    ids = data.split_ids()
    assert sorted(ids["test"]) == list(range(40, 60))
    assert len(ids["validation"]) == 4 and sorted(ids["train"] + ids["validation"]) == list(
        range(40)
    )
    assert data.report.split_class_counts["validation"] == {"neg": 2, "pos": 2}
    assert data.report.split.startswith("official train/test, validation 10% of train")
    again = prepare_data(spec, get_tokenizer(), 1024).split_ids()
    assert again == ids  # seeded
    fractions = prepare_data(DataSpec(dataset=small_imdb, balance="none"), get_tokenizer(), 1024)
    assert [len(v) for v in fractions.split_ids().values()] == [42, 6, 12]  # 0.7/0.1/0.2 of 60


def test_the_official_split_needs_a_split_column(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    reviews().drop(columns="split").to_csv(path, index=False)
    with pytest.raises(UsageError, match=r"has no official split .* --split 0.7,0.1,0.2"):
        prepare_data(DataSpec(dataset=str(path), split="official"), get_tokenizer(), 1024)


def test_split_official_is_a_config_value_and_a_cli_word() -> None:
    config = TrainConfig(split="official")
    assert config.to_dict()["split"] == "official"
    assert TrainConfig.from_dict(config.to_dict()).split == "official"
    with pytest.raises(ConfigError, match="split: must be three fractions such as"):
        TrainConfig(split="offical")
    assert CommaSeparatedFloats().convert("official", None, None) == "official"
    assert CommaSeparatedFloats().convert("0.7,0.1,0.2", None, None) == [0.7, 0.1, 0.2]
    assert "strip_html" not in TrainConfig().to_dict()  # saved only when set
    assert TrainConfig(strip_html=True, long_texts="tail").to_dict()["long_texts"] == "tail"


def test_strip_html_replaces_line_breaks_and_is_counted(small_imdb) -> None:
    assert clean_text("a<br /><BR/>b <br>", strip_html=True) == "a\n\nb"
    assert clean_text(" a<br />b ") == "a<br />b"  # off: kept, as the book does
    spec = DataSpec(dataset=small_imdb, split="official", balance="none", strip_html=True)
    events = Collect()
    data = prepare_data(spec, get_tokenizer(), 1024, reporter=events)
    assert data.report.html_changed == 15  # every fourth of 60 reviews
    texts = data.train.texts + data.validation.texts + data.test.texts
    assert not any("<br" in t for t in texts) and sum("\n\n" in t for t in texts) == 15
    kept = prepare_data(DataSpec(dataset=small_imdb, balance="none"), get_tokenizer(), 1024)
    assert kept.report.html_changed is None
    starts = [d for e, d in events.events if e == "phase_start"]
    assert {"phase": "tokenise", "total": 60} in starts
    assert data.report.tokenize_seconds is not None and data.report.tokenize_seconds >= 0


def test_fit_flags_are_saved_and_predict_cleans_its_inputs_the_same(
    small_imdb, tmp_path: Path
) -> None:
    args = tiny_fit_args(small_imdb, tmp_path / "run", "--trainable", "head", "--epochs", "1")
    extra = ["--split", "official", "--strip-html", "--long-texts", "head+tail:2"]
    result = CliRunner().invoke(main, args + extra)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "llmclf.json").read_text())
    config = manifest["config"]
    assert (config["split"], config["strip_html"], config["long_texts"]) == (
        "official",
        True,
        "head+tail:2",
    )
    assert manifest["padding"]["long_texts"] == "head+tail:2"
    assert len(manifest["data"]["split"]["test"]) == 20
    clf = Classifier.load(tmp_path / "run")
    tokenizer = get_tokenizer()
    assert clf._encode([" great<br /><br />film "]) == [tokenizer.encode("great\n\nfilm")]
