"""``llmclf download`` and the mirror settings, end to end over real HTTP (a local server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import serve_directory, sha256
from safetensors.torch import save_file

import llmclf
from llmclf.assets import Asset
from llmclf.cli import main
from llmclf.data.sources import SMS_SHA256
from llmclf.data.tokenizer import FILES
from llmclf.errors import AssetError, UnknownNameError
from llmclf.models.backbones import GPT2Builder
from llmclf.models.weights import hf_state_dict

PINNED = {
    "sms_spam/SMSSpamCollection": SMS_SHA256,
    "gpt2/encoder.json": FILES["encoder.json"],
    "gpt2/vocab.bpe": FILES["vocab.bpe"],
}


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCLF_OFFLINE", "0")


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_mirror_download_then_fit_from_an_empty_home(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, online: None
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMCLF_HOME", str(home))
    with serve_directory(shared_data) as (url, requested):
        monkeypatch.setenv("LLMCLF_MIRROR", url)
        result = CliRunner().invoke(main, ["download", "sms", "gpt2-bpe"])
        assert result.exit_code == 0, result.output
        assert sorted(requested) == [
            "/gpt2/encoder.json",
            "/gpt2/vocab.bpe",
            "/sms_spam/SMSSpamCollection",
        ]
        assert files_under(home) == sorted(PINNED)
        assert all(sha256(home / name) == pinned for name, pinned in PINNED.items())
        assert str(home / "sms_spam" / "SMSSpamCollection") in result.output

        monkeypatch.setenv("LLMCLF_OFFLINE", "1")  # fit needs nothing more than what came
        run = tmp_path / "run"
        args = ["fit", "--dataset", "sms", "--backbone", "gpt2-tiny", "--weights", "random"]
        args += ["--epochs", "1", "--max-length", "16", "--batch-size", "64", "--trainable", "head"]
        result = CliRunner().invoke(main, [*args, "--output", str(run), "--quiet"])
        assert result.exit_code == 0, result.output
        assert (run / "model.safetensors").is_file()
        assert len(requested) == 3  # the fit downloaded nothing


@pytest.mark.parametrize(
    ("name", "corrupt"), [("sms", "sms_spam/SMSSpamCollection"), ("gpt2-bpe", "gpt2/encoder.json")]
)
def test_a_file_with_a_wrong_hash_on_the_mirror_is_refused_and_not_kept(
    name: str,
    corrupt: str,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    online: None,
) -> None:
    mirror = tmp_path / "mirror"
    for relpath in PINNED:
        (mirror / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / relpath, mirror / relpath)
    with (mirror / corrupt).open("ab") as f:
        f.write(b"\n")
    home = tmp_path / "home"
    with serve_directory(mirror) as (url, requested):
        monkeypatch.setenv("LLMCLF_MIRROR", url)
        result = CliRunner().invoke(main, ["download", name, "--home", str(home)])
    assert result.exit_code == 1
    assert requested[0] == f"/{corrupt}"  # the other files of the name are still fetched
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert f"{url}/{corrupt}" in lines[0]
    assert f"expected {PINNED[corrupt]}" in lines[0]
    assert not (home / corrupt).exists()
    kept = files_under(home) if home.exists() else []
    assert kept == sorted(r[1:] for r in requested[1:])  # no temporary file


@pytest.mark.parametrize("setting", ["HF_ENDPOINT", "LLMCLF_HF_ENDPOINT", "LLMCLF_MIRROR"])
def test_plugin_backbone_weights_come_from_the_hub_endpoint_or_the_mirror(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, online: None
) -> None:
    sizes = {"vocab_size": 30, "context_length": 8, "n_embd": 16, "n_layer": 1, "n_head": 2}
    source = GPT2Builder("gpt2-mini", **sizes)(seed=5)
    served = tmp_path / "served"
    relpath = (
        "backbones/gpt2-mini/model.safetensors"  # the home layout
        if setting == "LLMCLF_MIRROR"
        else "someone/gpt2-mini/resolve/main/model.safetensors"  # the hub's layout
    )
    (served / relpath).parent.mkdir(parents=True)
    save_file(hf_state_dict(source), served / relpath)
    hub_url = "https://huggingface.co/someone/gpt2-mini/resolve/main/model.safetensors"
    mini = GPT2Builder("gpt2-mini", url=hub_url, sha256=sha256(served / relpath), **sizes)
    monkeypatch.setattr(llmclf.backbones, "_entries", dict(llmclf.backbones._entries))
    llmclf.backbones.register("gpt2-mini", mini, description="a plugin's size")

    home = tmp_path / "home"
    with serve_directory(served) as (url, requested):
        monkeypatch.setenv(setting, url)
        paths = llmclf.download(["gpt2-mini"], home=home)
    assert paths == [home / "backbones" / "gpt2-mini" / "model.safetensors"]
    assert requested == [f"/{relpath}"]

    monkeypatch.setenv("LLMCLF_HOME", str(home))
    monkeypatch.setenv("LLMCLF_OFFLINE", "1")
    loaded = llmclf.backbones.get("gpt2-mini")(weights="pretrained")
    assert torch.equal(loaded.wte.weight, source.wte.weight)


def test_plugin_dataset_assets_download_into_home_and_show_in_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, online: None
) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "tickets").mkdir(parents=True)
    (mirror / "tickets" / "tickets.csv").write_text("text,label\nprinter on fire,it\n")
    asset = Asset(
        "tickets/tickets.csv",
        "https://example.invalid/tickets.csv",  # upstream: never reached, the mirror serves it
        sha256(mirror / "tickets" / "tickets.csv"),
        size=30,
    )

    def tickets() -> None:
        """Support tickets."""

    tickets.assets = (asset,)  # type: ignore[attr-defined]
    monkeypatch.setattr(llmclf.datasets, "_entries", dict(llmclf.datasets._entries))
    llmclf.datasets.register("tickets", tickets)

    home = tmp_path / "home"
    runner = CliRunner()
    with serve_directory(mirror) as (url, _):
        monkeypatch.setenv("LLMCLF_MIRROR", url)
        result = runner.invoke(main, ["download", "tickets", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert files_under(home) == ["tickets/tickets.csv"]

    listed = runner.invoke(main, ["download", "--list", "--home", str(home)], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line.split() for line in listed.output.splitlines() if "│" in line}
    assert rows["tickets"][-1] == "cached", listed.output
    assert "30 bytes" in " ".join(rows["tickets"])
    assert rows["sms"][-1] == "missing"
    assert str(home) in listed.output
    assert "1 of" in listed.output


def test_the_list_shows_the_test_data_as_cached(shared_data: Path) -> None:
    result = CliRunner().invoke(main, ["download", "--list", "sms", "gpt2-bpe"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert str(shared_data) in result.output
    for relpath in PINNED:
        assert relpath in result.output
    assert "3 of 3 files cached" in result.output
    assert "477.9 kB" in result.output


def test_cached_files_are_checked_not_downloaded_again(shared_data: Path) -> None:
    # LLMCLF_OFFLINE is set and the home is the test data: nothing to fetch, hashes checked
    paths = llmclf.download(["sms", "gpt2-bpe"])
    assert [p.relative_to(shared_data).as_posix() for p in paths] == list(PINNED)


def test_an_unknown_name_suggests_the_closest() -> None:
    result = CliRunner().invoke(main, ["download", "smss"])
    assert result.exit_code == 2
    assert "did you mean 'sms'?" in result.output
    with pytest.raises(UnknownNameError, match="gpt2-bpe"):
        llmclf.download("gpt2-bpf")


def test_a_name_without_files_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["download", "gpt2-tiny", "--home", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    assert "gpt2-tiny: nothing to download" in result.output
    assert not (tmp_path / "h").exists()


def test_no_name_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["download"])
    assert result.exit_code == 2
    assert "gpt2-bpe" in result.output and "--list" in result.output


def test_offline_a_missing_file_names_the_mirror_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCLF_MIRROR", "http://mirror.example/llmclf/")
    with pytest.raises(AssetError, match="LLMCLF_OFFLINE") as info:
        llmclf.download("gpt2-bpe", home=tmp_path / "home")
    assert "http://mirror.example/llmclf/gpt2/encoder.json" in str(info.value)
    assert not (tmp_path / "home").exists()


def test_which_setting_serves_which_file(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = Asset("backbones/x/model.safetensors", "https://huggingface.co/o/x/resolve/main/m.st")
    other = Asset("sms_spam/SMSSpamCollection", "https://archive.example/sms.zip", member="S")
    assert (hub.source(), other.source()) == (hub.url, other.url)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example/")
    assert hub.source() == "https://hf-mirror.example/o/x/resolve/main/m.st"
    assert other.source() == other.url  # HF_ENDPOINT is for hub files only
    monkeypatch.setenv("LLMCLF_HF_ENDPOINT", "http://ours.example")
    assert hub.source() == "http://ours.example/o/x/resolve/main/m.st"
    monkeypatch.setenv("LLMCLF_MIRROR", "http://files.example/llmclf")
    assert other.source() == "http://files.example/llmclf/sms_spam/SMSSpamCollection"
    assert hub.source() == "http://ours.example/o/x/resolve/main/m.st"  # the hub endpoint wins
    monkeypatch.delenv("LLMCLF_HF_ENDPOINT")
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub.source() == "http://files.example/llmclf/backbones/x/model.safetensors"


def test_offline_every_missing_file_is_named_in_one_error(tmp_path: Path) -> None:
    """It stopped at the first missing file."""
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["download", "sms", "gpt2-bpe", "--home", str(home)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "3 files could not be downloaded" in result.stderr
    for name in ("sms_spam", "gpt2/encoder.json", "gpt2/vocab.bpe"):
        assert name in result.stderr
    assert not home.exists()


@pytest.mark.parametrize("value", ["notaurl", "/srv/llmclf", "ftp://files.example/llmclf"])
def test_a_mirror_that_is_not_a_url_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """LLMCLF_MIRROR=notaurl gave "download notaurl/sms_spam/..."."""
    monkeypatch.setenv("LLMCLF_MIRROR", value)
    result = CliRunner().invoke(main, ["download", "gpt2-bpe", "--home", str(tmp_path / "h")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: LLMCLF_MIRROR={value} is not a URL; set it to an http://, https:// or file:// "
        "URL laid out like $LLMCLF_HOME, or unset it\n"
    )


def test_no_name_lists_the_names_without_files_too() -> None:
    """The list left out gpt2-tiny, which the unknown-name list includes."""
    result = CliRunner().invoke(main, ["download"])
    assert "nothing to download for" in result.stderr
    assert "gpt2-tiny" in result.stderr.split("nothing to download for")[1]
