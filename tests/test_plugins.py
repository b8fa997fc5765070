"""Third-party plugins arrive through entry points of a real (temporary) distribution."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmclf.cli import main
from llmclf.registry import ALL


def _install_fake_distribution(site: Path, entry_points: str, modules: dict[str, str]) -> None:
    dist = site / "llmclf_fake_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llmclf-fake-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fresh_registries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Registries that load again (and see the fake distribution on sys.path)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    for registry in ALL.values():
        monkeypatch.setattr(registry, "_entries", {})
        monkeypatch.setattr(registry, "_loaded", False)
    yield tmp_path
    for name in ["fake_llmclf_plugin", "broken_llmclf_plugin"]:
        sys.modules.pop(name, None)


def test_entry_point_plugin_shows_up_in_list(fresh_registries: Path) -> None:
    _install_fake_distribution(
        fresh_registries,
        """
        [llmclf.datasets]
        tickets = fake_llmclf_plugin:tickets
        """,
        {
            "fake_llmclf_plugin": '''
            def tickets():
                """Support tickets from the fake plugin."""
                raise NotImplementedError
            '''
        },
    )
    result = CliRunner().invoke(main, ["list", "datasets"])
    assert result.exit_code == 0, result.output
    assert "tickets" in result.output
    assert "Support tickets from the fake plugin." in result.output
    assert "sms" in result.output  # built-ins still there
    entry = ALL["datasets"].entry("tickets")
    assert entry.source == "llmclf-fake-plugin"


def test_broken_plugin_warns_and_the_rest_keeps_working(fresh_registries: Path) -> None:
    _install_fake_distribution(
        fresh_registries,
        """
        [llmclf.balancers]
        broken = broken_llmclf_plugin:thing
        """,
        {"broken_llmclf_plugin": "raise RuntimeError('plugin exploded')\n"},
    )
    with pytest.warns(UserWarning, match=r"broken.*plugin exploded"):
        names = ALL["balancers"].names()
    assert "broken" not in names
    assert "undersample" in names


def test_list_without_kind_prints_all_four_registries() -> None:
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    for title in ["datasets", "balancers", "padding", "backbones"]:
        assert title in result.output
    for name in ["sms", "undersample", "pad-batch", "gpt2-small"]:
        assert name in result.output
