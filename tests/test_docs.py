"""The documentation site builds with --strict, and its generated references match the code."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from llmclf.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "index.html",
    "quickstart/index.html",
    "concepts/index.html",
    "backbones/index.html",
    "guides/own-data/index.html",
    "guides/registering/index.html",
    "guides/plugin-package/index.html",
    "guides/trainable-and-pooling/index.html",
    "guides/long-texts/index.html",
    "guides/checkpoints/index.html",
    "guides/downloads/index.html",
    "guides/reproducibility/index.html",
    "guides/dry-run/index.html",
    "guides/reproduce/index.html",
    "guides/tracking/index.html",
    "guides/sweeps/index.html",
    "guides/distributed/index.html",
    "guides/export/index.html",
    "deployment/index.html",
    "reference/cli/index.html",
    "reference/api/index.html",
    "benchmarks/index.html",
    "architecture/index.html",
    "changelog/index.html",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built by ``mkdocs build --strict`` (any warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return out


def page_text(site: Path, page: str) -> str:
    """The visible text of a built page's article, entities decoded."""
    raw = (site / page).read_text(encoding="utf-8")
    article = raw[raw.find("<article") : raw.find("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", "", article))


def test_site_has_every_page(site: Path) -> None:
    missing = [page for page in PAGES if not (site / page).is_file()]
    assert not missing, f"pages not built: {missing}"


def test_cli_reference_lists_every_fit_option(site: Path) -> None:
    text = page_text(site, "reference/cli/index.html")
    fit = main.commands["fit"]
    names = [
        opt
        for param in fit.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    ]
    assert len(names) > 30, names
    missing = [name for name in names if not re.search(rf"{re.escape(name)}(?![\w-])", text)]
    assert not missing, f"options of llmclf fit missing from the CLI reference: {missing}"
    flat = " ".join(text.split())
    assert "[default: pad-batch]" in flat  # defaults come from the config fields


def test_cli_reference_has_every_command(site: Path) -> None:
    text = page_text(site, "reference/cli/index.html")
    for name, command in main.commands.items():
        assert f"llmclf {name}" in text
        assert (command.help or "").splitlines()[0] in text


def test_api_reference_is_generated_from_docstrings(site: Path) -> None:
    text = page_text(site, "reference/api/index.html")
    for name in (
        "llmclf.training.trainer.Trainer",
        "llmclf.training.config.TrainConfig",
        "llmclf.inference.Classifier",
        "llmclf.inference.Prediction",
        "llmclf.registry.Registry",
        "LlmclfError",
        # the extension points the guides tell users to implement or use
        "llmclf.data.padding.PaddingPolicy",
        "llmclf.data.balance.Balancer",
        "llmclf.models.backbones.GPT2Builder",
        "llmclf.models.gpt2.GPT2Config",
        "llmclf.models.classifier.SequenceClassifier",
        "llmclf.data.spec.DataSpec",
        "llmclf.serve.create_app",
        "llmclf.serve.ServeConfig",
    ):
        assert name in text, name
    # a docstring's first line, so the page is not just headings
    assert "Fine-tunes a backbone as a sequence classifier." in text


def test_changelog_page_includes_the_changelog(site: Path) -> None:
    text = " ".join(page_text(site, "changelog/index.html").split())
    bullets = [
        line.removeprefix("- ")
        for line in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("- ")
    ]
    assert bullets, "CHANGELOG.md has no entries"
    first = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", bullets[0])  # [text](url) -> text
    first = re.sub(r"`|\*\*", "", first)  # code and bold marks
    assert first[:40] in text


def test_concepts_page_has_the_flow_diagram(site: Path) -> None:
    raw = (site / "concepts/index.html").read_text(encoding="utf-8")
    assert '<pre class="mermaid">' in raw


def test_docs_name_existing_examples() -> None:
    docs = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.md"))
    for mentioned in sorted(set(re.findall(r"examples/[\w./-]+", docs))):
        assert (ROOT / mentioned.rstrip("./")).exists(), f"docs mention missing {mentioned}"
