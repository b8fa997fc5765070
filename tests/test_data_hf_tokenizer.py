"""A Hugging Face tokenizer.json, run by `tokenizers`, encodes as transformers does.

No real tokenizer.json of another model is on our machines, so the fixture builds one: GPT-2's
byte-level BPE from the real ``encoder.json`` and ``vocab.bpe``, in the format the hub uses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmclf.data.hf_tokenizer import FILE_NAME, HFTokenizer, tokenizer_from_dir
from llmclf.data.tokenizer import Tokenizer
from llmclf.errors import AssetError

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

ODD_TEXTS = [
    "",
    " ",
    "Hello world",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines\r\n",
    "naïve café — 東京 🚀🚀",
    "I'm sure you'll've seen it's 3.14159 or 1,000,000",
    "WINNER!! Claim your £1000 prize: call 09061701461 now",
]
WITH_SPECIALS = ["end <|endoftext|> here", "<|endoftext|>", "<s> not a bos </s>"]


def build_gpt2_tokenizer(gpt2_dir: Path, *, template: str | None = None):
    """GPT-2's BPE as a `tokenizers.Tokenizer`; ``template`` adds a TemplateProcessing
    post-processor with ``<s>`` / ``</s>`` (as Llama-style tokenizers have)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    bpe = models.BPE.from_file(str(gpt2_dir / "encoder.json"), str(gpt2_dir / "vocab.bpe"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    if template is not None:
        tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
        ids = [("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))]
        tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=ids)
    return tok


@pytest.fixture(scope="module")
def gpt2_json(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A directory holding GPT-2's tokenizer as a tokenizer.json, and nothing else."""
    directory = tmp_path_factory.mktemp("gpt2-tokenizer-json")
    build_gpt2_tokenizer(shared_data / "gpt2").save(str(directory / FILE_NAME))
    return directory


@pytest.fixture(scope="module")
def sms_texts(shared_data: Path) -> list[str]:
    lines = (shared_data / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8")
    return [line.split("\t", 1)[1] for line in lines.splitlines()[:400]]


def reference(
    directory: Path, texts: list[str], *, add_special_tokens: bool = False, **kwargs
) -> list[list[int]]:
    """transformers' ids for ``texts`` with the tokenizer.json in ``directory``."""
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / FILE_NAME), **kwargs)
    return [fast(text, add_special_tokens=add_special_tokens)["input_ids"] for text in texts]


def test_encodes_exactly_as_transformers(gpt2_json: Path, sms_texts: list[str]) -> None:
    texts = sms_texts + ODD_TEXTS
    ours = HFTokenizer.from_dir(gpt2_json)
    assert ours.encode_batch(texts) == reference(gpt2_json, texts)
    assert [ours.encode(t) for t in ODD_TEXTS] == reference(gpt2_json, ODD_TEXTS)


def test_gpt2_as_tokenizer_json_equals_gpt2_by_tiktoken(
    gpt2_json: Path, sms_texts: list[str], shared_data: Path
) -> None:
    """The same BPE through either library gives the same ids, specials in a text included."""
    texts = sms_texts + ODD_TEXTS + WITH_SPECIALS
    ours, gpt2 = HFTokenizer.from_dir(gpt2_json), Tokenizer.from_dir(shared_data / "gpt2")
    assert ours.encode_batch(texts) == gpt2.encode_batch(texts)
    assert ours.pad_id == gpt2.pad_id == 50256
    assert ours.vocab_size == gpt2.vocab_size


def test_special_token_strings_in_a_text_are_plain_text(gpt2_json: Path) -> None:
    ours = HFTokenizer.from_dir(gpt2_json)
    encoded = ours.encode_batch(WITH_SPECIALS)
    assert all(ours.pad_id not in ids for ids in encoded)
    assert encoded == reference(gpt2_json, WITH_SPECIALS, split_special_tokens=True)
    assert ours.decode(encoded[0]) == WITH_SPECIALS[0]


def test_a_leading_bos_is_kept_and_a_trailing_eos_never_added(
    tmp_path: Path, shared_data: Path
) -> None:
    texts = ["Hello world", "ok", ""]
    for name, template in (("bos-eos", "<s> $A </s>"), ("bos", "<s> $A")):
        directory = tmp_path / name
        directory.mkdir()
        build_gpt2_tokenizer(shared_data / "gpt2", template=template).save(
            str(directory / FILE_NAME)
        )
        ours = HFTokenizer.from_dir(directory)
        bos = ours._tokenizer.token_to_id("<s>")
        plain = reference(directory, texts)
        assert ours.encode_batch(texts) == [[bos, *ids] for ids in plain]
        if name == "bos":  # then exactly what transformers adds by default
            assert ours.encode_batch(texts) == reference(directory, texts, add_special_tokens=True)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "<|endoftext|>"),  # nothing names one: the end-of-text token
        ({"tokenizer_config.json": {"pad_token": "!"}}, "!"),
        ({"tokenizer_config.json": {"pad_token": {"content": "?", "lstrip": False}}}, "?"),
        ({"config.json": {"pad_token_id": 0, "eos_token_id": 1}}, "!"),  # id 0 is "!"
        ({"config.json": {"eos_token_id": [1, 2]}}, '"'),  # no pad: the (first) eos
        ({"tokenizer_config.json": {"eos_token": "#"}, "config.json": {"pad_token_id": 0}}, "!"),
    ],
)
def test_pad_token_is_the_models_else_its_end_of_text(
    tmp_path: Path, gpt2_json: Path, files: dict, expected: str
) -> None:
    shutil.copy(gpt2_json / FILE_NAME, tmp_path / FILE_NAME)
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    ours = HFTokenizer.from_dir(tmp_path)
    assert ours.pad_token == expected
    assert HFTokenizer.from_dir(tmp_path, pad_token="$").pad_token == "$"


def test_no_pad_and_no_end_of_text_is_a_clear_error(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a")).save(str(tmp_path / FILE_NAME))
    with pytest.raises(AssetError, match=r"no pad or end-of-text token; add a \"pad_token\""):
        HFTokenizer.from_dir(tmp_path)
    with pytest.raises(AssetError, match="pad token 'zzz' is not in the vocabulary"):
        HFTokenizer.from_dir(tmp_path, pad_token="zzz")


def test_save_then_from_dir_tokenizes_the_same_offline(
    tmp_path: Path, gpt2_json: Path, sms_texts: list[str]
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(gpt2_json / FILE_NAME, source / FILE_NAME)
    (source / "config.json").write_text(json.dumps({"pad_token_id": 0}), encoding="utf-8")
    original = HFTokenizer.from_dir(source)
    run = tmp_path / "run"
    run.mkdir()
    assert original.save(run) == ["tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in run.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert (run / FILE_NAME).read_bytes() == (source / FILE_NAME).read_bytes()
    reloaded = HFTokenizer.from_dir(run)  # no config.json there: the pad token was saved
    assert reloaded.pad_id == original.pad_id == 0
    assert reloaded.encode_batch(sms_texts) == original.encode_batch(sms_texts)
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(str(run))
    assert fast.pad_token_id == 0


def test_truncation_and_padding_in_the_file_are_ignored(tmp_path: Path, gpt2_json: Path) -> None:
    tok = tokenizers.Tokenizer.from_file(str(gpt2_json / FILE_NAME))
    tok.enable_truncation(max_length=3)
    tok.enable_padding(length=50, pad_id=50256)
    tok.save(str(tmp_path / FILE_NAME))
    text = "a text that is longer than three tokens"
    assert HFTokenizer.from_dir(tmp_path).encode(text) == reference(gpt2_json, [text])[0]


def test_missing_or_corrupt_tokenizer_json_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"tokenizer\.json there"):
        HFTokenizer.from_dir(tmp_path)
    (tmp_path / FILE_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(AssetError) as info:
        HFTokenizer.from_dir(tmp_path)
    assert "download it again" in str(info.value) and "\n" not in str(info.value)


def test_tokenizer_from_dir_picks_by_the_files_present(gpt2_json: Path, shared_data: Path) -> None:
    assert isinstance(tokenizer_from_dir(gpt2_json), HFTokenizer)
    assert isinstance(tokenizer_from_dir(shared_data / "gpt2"), Tokenizer)
