"""The built-in ``sms`` dataset on the real file in ../shared/data, and its download path."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from llmclf import assets, settings
from llmclf.data.pipeline import DataSpec, prepare_data
from llmclf.data.sources import SMS_SHA256, SMS_URL, load_source, sms
from llmclf.data.tokenizer import get_tokenizer
from llmclf.errors import AssetError


@pytest.fixture
def tokenizer():
    return get_tokenizer()  # cached: built once per process


@pytest.fixture(scope="module")
def book(shared_data: Path):
    """The book's recipe: undersample the whole set, then split 0.7 / 0.1 / 0.2, seed 123."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCLF_HOME", str(shared_data))
        mp.setenv("LLMCLF_OFFLINE", "1")
        return prepare_data(DataSpec(), get_tokenizer(), context_length=1024)


def test_reads_every_line_with_quoting_off() -> None:
    frame = sms()
    assert len(frame) == 5574  # the book's quoting reader keeps 5,572
    assert frame["label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    assert list(frame["label"].cat.categories) == ["ham", "spam"]
    assert frame["label"].cat.ordered
    assert frame["text"].str.contains('"').any()  # quote characters survive as text


def test_labels_follow_the_declared_order(book) -> None:
    assert book.labels.names == ("ham", "spam")
    assert book.labels.id("ham") == 0 and book.labels.id("spam") == 1


def test_book_recipe_counts(book) -> None:
    report = book.report
    assert report.rows_read == 5574 and report.rows_kept == 5574
    assert report.class_counts == {"ham": 4827, "spam": 747}
    assert report.balanced_counts == {"ham": 747, "spam": 747}
    assert report.split_sizes == {"train": 1045, "validation": 149, "test": 300}
    assert (len(book.train), len(book.validation), len(book.test)) == (1045, 149, 300)
    assert book.class_weights is None


def test_every_class_in_every_split_and_no_row_twice(book) -> None:
    ids = book.split_ids()
    for name in ("train", "validation", "test"):
        split = getattr(book, name)
        assert set(split.labels) == {0, 1}
        assert len(split.texts) == len(split.labels) == len(split.token_ids) == len(split.row_ids)
    everything = ids["train"] + ids["validation"] + ids["test"]
    assert len(everything) == len(set(everything)) == 1494
    # stratified: each split is (close to) half spam
    assert abs(sum(book.test.labels) - 150) <= 1
    assert abs(sum(book.train.labels) - 522) <= 1


def test_rows_match_the_source(book) -> None:
    frame = sms()
    for text, label, row in zip(book.test.texts, book.test.labels, book.test.row_ids, strict=True):
        assert frame["text"][row].strip() == text
        assert book.labels.name(label) == frame["label"][row]


def test_same_seed_same_rows_other_seed_other_rows(book, tokenizer) -> None:
    again = prepare_data(DataSpec(), tokenizer, context_length=1024)
    assert again.split_ids() == book.split_ids()
    assert again.fingerprint == book.fingerprint
    assert again.train.token_ids == book.train.token_ids
    other = prepare_data(DataSpec(seed=7), tokenizer, context_length=1024)
    assert other.split_ids()["test"] != book.split_ids()["test"]
    assert other.report.split_sizes == book.report.split_sizes


def test_balancing_only_the_training_split_keeps_real_ratios(tokenizer) -> None:
    data = prepare_data(DataSpec(balance_scope="train"), tokenizer, context_length=1024)
    counts = data.report.split_class_counts
    assert counts["train"]["ham"] == counts["train"]["spam"]
    # validation and test keep the real 4,827 : 747 ratio
    assert counts["test"]["ham"] > 5 * counts["test"]["spam"]
    assert sum(data.report.split_sizes.values()) < 5574  # train lost ham rows


def test_downloads_extracts_and_checks_the_zip(
    writable_home: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCLF_OFFLINE", "0")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(shared_data / "sms_spam" / "SMSSpamCollection", "SMSSpamCollection")
        archive.writestr("readme", "the UCI zip also holds a readme")
    fetched = []

    def fake_fetch(url: str, dest: Path, what: str) -> None:
        fetched.append(url)
        Path(dest).write_bytes(buffer.getvalue())

    monkeypatch.setattr(assets, "_fetch", fake_fetch)
    frame = sms()
    assert fetched == [SMS_URL]
    assert len(frame) == 5574
    stored = settings.sms_spam_path()
    assert stored.is_file() and assets.sha256_of(stored) == SMS_SHA256
    assert sorted(p.name for p in stored.parent.iterdir()) == ["SMSSpamCollection"]
    sms()  # second read: no download
    assert fetched == [SMS_URL]


def test_offline_without_the_file_names_url_and_path(writable_home: Path) -> None:
    with pytest.raises(AssetError) as info:
        load_source("sms")
    message = str(info.value)
    assert SMS_URL in message
    assert str(settings.sms_spam_path()) in message
    assert "LLMCLF_OFFLINE" in message


def test_a_corrupt_local_copy_is_an_error(writable_home: Path, shared_data: Path) -> None:
    dest = settings.sms_spam_path()
    dest.parent.mkdir(parents=True)
    shutil.copyfile(shared_data / "sms_spam" / "SMSSpamCollection", dest)
    with dest.open("a") as f:
        f.write("ham\tone more line\n")
    with pytest.raises(AssetError, match="delete it"):
        sms()


def test_the_report_renders_for_the_cli(book) -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(book.report.render())
    text = console.export_text()
    for expected in ("data: sms", "rows read", "5,574", "1,045", "undersample (scope all)"):
        assert expected in text
    assert "dropped" not in text  # nothing was dropped, so no drop rows
