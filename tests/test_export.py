"""llmclf export: transformers and onnxruntime give llmclf's probabilities on the same texts."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import fit_tiny_run

from llmclf import Classifier
from llmclf.cli import main
from llmclf.errors import CheckpointError, ConfigError, ExportError, LlmclfError, UsageError
from llmclf.export import RECORD_FILE, export_run
from llmclf.export.hf import fold_head_bias

transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TEXTS = [
    "printer is on fire",
    "  my password is locked again  ",  # surrounding whitespace: llmclf strips it
    "refund please<|endoftext|>",  # the pad token's text is plain text, not the pad id
    "<|endoftext|>",
    "héllo wörld 123 ,,, !! 🙂",
    "why is my invoice wrong? " * 5,  # longer than --max-length 8: cut where llmclf cuts
    "a\tb\n\nc",
]
HF_FILES = {
    "config.json",
    "model.safetensors",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    RECORD_FILE,
}
ONNX_FILES = {"model.onnx", "labels.json", "encoder.json", "vocab.bpe", RECORD_FILE}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A full fine-tune, and a LoRA run that reads at most 8 tokens of a text."""
    plain = fit_tiny_run(tmp_path_factory.mktemp("plain"), 20)
    lora = fit_tiny_run(
        tmp_path_factory.mktemp("lora"), 20, "--trainable", "lora", "--max-length", "8"
    )
    return {"plain": plain, "lora": lora}


@pytest.fixture(scope="module")
def exports(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exports")
    return {
        f"{name}-{fmt}": export_run(run, out / f"{name}-{fmt}", format=fmt)
        for name, run in runs.items()
        for fmt in ("hf", "onnx")
    }


def edited_run(run: Path, tmp_path: Path, **changes: object) -> Path:
    """A copy of ``run`` whose llmclf.json says something else (same weights)."""
    copy = tmp_path / "edited"
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "llmclf.json").read_text())
    if "pooling" in changes:  # part of the model spec
        manifest["model"]["pooling"] = changes.pop("pooling")
    if "attention" in changes:  # part of the backbone's config
        manifest["model"]["config"]["attention"] = changes.pop("attention")
    manifest.update(changes)
    (copy / "llmclf.json").write_text(json.dumps(manifest))
    return copy


def pipeline_probabilities(directory: Path, labels: tuple[str, ...], **kwargs) -> torch.Tensor:
    pipe = transformers.pipeline("text-classification", model=str(directory), device="cpu")
    results = pipe(TEXTS, top_k=None, truncation=True, **kwargs)
    return torch.tensor(
        [[{r["label"]: r["score"] for r in row}[n] for n in labels] for row in results]
    )


# ----- hf ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["plain", "lora"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_transformers_pipeline_gives_llmclfs_probabilities(
    runs: dict[str, Path], exports: dict[str, Path], name: str, batch_size: int
) -> None:
    clf = Classifier.load(runs[name], device="cpu")
    ours = clf.predict_proba(TEXTS)
    theirs = pipeline_probabilities(exports[f"{name}-hf"], clf.labels, batch_size=batch_size)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_transformers_loads_every_weight_and_the_labels(
    runs: dict[str, Path], exports: dict[str, Path]
) -> None:
    model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        exports["lora-hf"], output_loading_info=True
    )
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.score.bias is None
    clf = Classifier.load(runs["lora"], device="cpu")
    assert [model.config.id2label[i] for i in range(3)] == list(clf.labels)
    assert model.config.pad_token_id == 50256
    assert {p.name for p in exports["lora-hf"].iterdir()} == HF_FILES
    # the same logits, not only the same probabilities (the head's bias is folded, not dropped)
    batch = clf.policy.collate([clf.tokenizer.encode(TEXTS[0])])
    with torch.inference_mode():
        want = clf.model(batch.input_ids, batch.lengths)
        got = model(input_ids=batch.input_ids).logits
    assert (want - got).abs().max().item() <= 1e-5


def test_the_export_records_its_run(runs: dict[str, Path], exports: dict[str, Path]) -> None:
    for fmt, files in (("hf", HF_FILES), ("onnx", ONNX_FILES)):
        record = json.loads((exports[f"plain-{fmt}"] / RECORD_FILE).read_text())
        assert record["format"] == fmt
        assert record["llmclf_version"] == llmclf_version()
        assert record["run"] == json.loads((runs["plain"] / "llmclf.json").read_text())
        assert record["source"]["run"] == str(runs["plain"].resolve())
        assert len(record["source"]["model_sha256"]) == 64
        assert set(record["files"]) == files


def llmclf_version() -> str:
    from llmclf import __version__

    return __version__


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"pooling": "mean"}, "pools 'mean'"),
        ({"pooling": "first"}, "pools 'first'"),
        (
            {
                "pooling": "last",
                "padding": {"name": "pad-dataset", "max_length": None, "length": 9},
            },
            "pools 'last'",
        ),
        (
            {"padding": {"name": "truncate-batch", "max_length": None, "length": None}},
            "depend on their batch",
        ),
        (
            {
                "attention": "bidirectional",
                "padding": {"name": "pad-dataset", "max_length": None, "length": 9},
            },
            "attends bidirectionally",
        ),
    ],
)
def test_runs_transformers_cannot_reproduce_are_refused(
    runs: dict[str, Path], tmp_path: Path, changes: dict, reason: str
) -> None:
    run = edited_run(runs["plain"], tmp_path, **changes)
    with warnings.catch_warnings(), pytest.raises(ExportError, match=reason):
        warnings.simplefilter("ignore")  # truncate-batch: "predicted one at a time"
        export_run(run, tmp_path / "out", format="hf")
    assert not (tmp_path / "out").exists()


def test_a_refusal_is_one_line_on_the_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    run = edited_run(runs["plain"], tmp_path, pooling="mean")
    result = CliRunner().invoke(
        main, ["export", str(run), "--format", "hf", "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "--format onnx" in result.output


def test_the_head_bias_folds_exactly_or_is_refused() -> None:
    gen = torch.Generator().manual_seed(0)
    beta, w, b = torch.randn(16, generator=gen), torch.randn(3, 16, generator=gen), torch.randn(3)
    h = torch.randn(5, 16, generator=gen)
    folded = fold_head_bias(beta, w, b)
    assert torch.allclose((h + folded) @ w.T, (h + beta) @ w.T + b, atol=1e-5)
    dependent = torch.stack([w[0], w[0], w[1]])  # two equal rows: no d gives them two biases
    with pytest.raises(ExportError, match="cannot be folded"):
        fold_head_bias(beta, dependent, torch.tensor([0.0, 1.0, 0.0]))


# ----- onnx -------------------------------------------------------------------------------------
def test_the_onnx_model_is_valid_with_dynamic_axes(exports: dict[str, Path]) -> None:
    directory = exports["plain-onnx"]
    model = onnx.load(str(directory / "model.onnx"))
    onnx.checker.check_model(model)
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }
    assert dims == {"input_ids": ["batch", "tokens"], "lengths": ["batch"]}
    assert {p.name for p in directory.iterdir()} == ONNX_FILES
    labels = json.loads((directory / "labels.json").read_text())
    assert labels == list(Classifier.load(directory, engine="onnxruntime").labels)


@pytest.mark.parametrize("name", ["plain", "lora"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnxruntime_gives_the_pytorch_probabilities(
    runs: dict[str, Path], exports: dict[str, Path], name: str, batch_size: int
) -> None:
    texts = [*TEXTS, ""]  # an empty text too: it reads one pad token on both paths
    torch_clf = Classifier.load(runs[name], device="cpu")
    onnx_clf = Classifier.load(exports[f"{name}-onnx"], engine="onnxruntime")
    want = torch_clf.predict_proba(texts, batch_size=batch_size)
    got = onnx_clf.predict_proba(texts, batch_size=batch_size)
    assert (want - got).abs().max().item() <= 1e-4
    ours = [p.to_dict() for p in onnx_clf.predict(texts)]
    assert [p["label"] for p in ours] == [p.label for p in torch_clf.predict(texts)]
    assert [p["tokens_dropped"] for p in ours] == [
        p.tokens_dropped for p in torch_clf.predict(texts)
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"pooling": "mean"},
        {"pooling": "first"},
        {"pooling": "last", "padding": {"name": "pad-dataset", "max_length": None, "length": 9}},
        {
            "pooling": "mean-all",
            "padding": {"name": "pad-dataset", "max_length": None, "length": 9},
        },
        {
            "attention": "bidirectional",
            "padding": {"name": "pad-dataset", "max_length": None, "length": 9},
        },
    ],
)
def test_every_pooling_runs_inside_the_onnx_graph(
    runs: dict[str, Path], tmp_path: Path, changes: dict
) -> None:
    run = edited_run(runs["plain"], tmp_path, **changes)
    directory = export_run(run, tmp_path / "onnx", format="onnx")
    want = Classifier.load(run, device="cpu").predict_proba(TEXTS, batch_size=3)
    got = Classifier.load(directory, engine="onnxruntime").predict_proba(TEXTS, batch_size=3)
    assert (want - got).abs().max().item() <= 1e-4


def test_predict_cli_runs_the_onnx_export(runs: dict[str, Path], exports: dict[str, Path]) -> None:
    def predict(*args: str) -> list[dict]:
        result = CliRunner().invoke(main, ["predict", *args, "--format", "jsonl", *TEXTS[:3]])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines()]

    onnx_rows = predict(str(exports["plain-onnx"]), "--engine", "onnxruntime")
    torch_rows = predict(str(runs["plain"]))
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_engine_mistakes_say_what_to_do(runs: dict[str, Path], exports: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match=r"llmclf export .* --format onnx"):
        Classifier.load(runs["plain"], engine="onnxruntime")
    with pytest.raises(CheckpointError, match="engine='onnxruntime'"):
        Classifier.load(exports["plain-onnx"])
    with pytest.raises(CheckpointError, match="transformers export"):
        Classifier.load(exports["plain-hf"], engine="onnxruntime")
    with pytest.raises(ConfigError, match="fp32"):
        Classifier.load(exports["plain-onnx"], engine="onnxruntime", precision="bf16")
    with pytest.raises(ConfigError, match="engine"):
        Classifier.load(exports["plain-onnx"], engine="tensorrt")


def test_a_damaged_export_record_is_a_checkpoint_error(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exports["plain-onnx"], copy)
    record = json.loads((copy / RECORD_FILE).read_text())
    (copy / RECORD_FILE).write_text(json.dumps({**record, "run": {"labels": ["a"]}}))
    with pytest.raises(CheckpointError, match="damaged"):
        Classifier.load(copy, engine="onnxruntime")


def test_a_missing_extra_names_it(
    runs: dict[str, Path], exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(LlmclfError, match=r"pip install 'llmclf\[export\]'"):
        Classifier.load(exports["plain-onnx"], engine="onnxruntime")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(LlmclfError, match=r"pip install 'llmclf\[export\]'"):
        export_run(runs["plain"], tmp_path / "out", format="onnx")
    assert not (tmp_path / "out").exists()


# ----- the output directory ---------------------------------------------------------------------
def test_output_is_never_clobbered(runs: dict[str, Path], tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        export_run(runs["plain"], foreign, format="hf", overwrite=True)
    out = export_run(runs["plain"], tmp_path / "out", format="hf")
    (out / "README.md").write_text("the user's own")
    with pytest.raises(UsageError, match="--overwrite"):
        export_run(runs["plain"], out, format="onnx")
    export_run(runs["plain"], out, format="onnx", overwrite=True)
    assert {p.name for p in out.iterdir()} == ONNX_FILES | {"README.md"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize("backbone", ["llama-tiny", "qwen3-tiny"])
def test_an_onnx_export_of_each_modern_family_predicts_like_pytorch(
    tmp_path: Path, backbone: str
) -> None:
    run = fit_tiny_run(tmp_path, 12, "--backbone", backbone, "--trainable", "lora")
    directory = export_run(run, tmp_path / "onnx", format="onnx")
    want = Classifier.load(run, device="cpu").predict_proba(TEXTS, batch_size=3)
    got = Classifier.load(directory, engine="onnxruntime").predict_proba(TEXTS, batch_size=3)
    assert (want - got).abs().max().item() <= 1e-4
