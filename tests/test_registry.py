from __future__ import annotations

import pytest

from llmclf.errors import DuplicateNameError, UnknownNameError
from llmclf.registry import Registry


@pytest.fixture
def registry() -> Registry:
    reg: Registry = Registry("backbone", "llmclf.tests.none")
    return reg


def test_decorator_form_registers_and_returns_the_object(registry: Registry) -> None:
    @registry.register("gpt2-small")
    def build() -> str:
        """The small one.

        More text that is not part of the description.
        """
        return "built"

    assert registry.get("gpt2-small") is build
    assert build() == "built"
    assert registry.entry("gpt2-small").description == "The small one."


def test_call_form_with_explicit_description(registry: Registry) -> None:
    obj = object()
    assert registry.register("thing", obj, description="a thing") is obj
    assert registry.get("thing") is obj
    assert registry.entry("thing").description == "a thing"


def test_names_are_sorted(registry: Registry) -> None:
    for name in ["b", "c", "a"]:
        registry.register(name, name)
    assert registry.names() == ["a", "b", "c"]
    assert "a" in registry and "z" not in registry


def test_duplicate_is_an_error_unless_override(registry: Registry) -> None:
    registry.register("x", 1)
    with pytest.raises(DuplicateNameError, match="override=True"):
        registry.register("x", 2)
    registry.register("x", 3, override=True)
    assert registry.get("x") == 3


def test_unknown_name_suggests_closest_and_lists_known(registry: Registry) -> None:
    for name in ["gpt2-small", "gpt2-medium", "gpt2-large"]:
        registry.register(name, name)
    with pytest.raises(UnknownNameError) as info:
        registry.get("gpt2-smal")
    message = str(info.value)
    assert "unknown backbone 'gpt2-smal'; did you mean 'gpt2-small'?" in message
    assert "known: gpt2-large, gpt2-medium, gpt2-small" in message
    with pytest.raises(UnknownNameError, match="did you mean 'gpt2-small'"):
        registry.get("GPT2-Small")  # case is a typo too


def test_unknown_name_without_close_match_has_no_suggestion(registry: Registry) -> None:
    registry.register("alpha", 1)
    with pytest.raises(UnknownNameError) as info:
        registry.get("zzzzzz")
    assert str(info.value) == "unknown backbone 'zzzzzz'; known: alpha"


def test_builtin_modules_load_lazily_on_first_read() -> None:
    import sys

    reg: Registry = Registry("thing", "llmclf.tests.none", ("tests_builtin_module_probe",))
    sys.modules.pop("tests_builtin_module_probe", None)
    with pytest.raises(ModuleNotFoundError):
        reg.names()  # a missing built-in module is a bug, not a warning


def test_the_four_registries_are_reachable_from_the_package() -> None:
    import llmclf

    for registry in (llmclf.datasets, llmclf.balancers, llmclf.padding, llmclf.backbones):
        assert callable(registry.register) and callable(registry.get)
        assert registry.names(), f"{registry.kind} registry has no built-in entries"


def _probe() -> str:
    """A function defined in a module the registry treats as built-in."""
    return "probe"


def test_builtin_is_what_registers_as_builtin_not_where_the_object_was_defined() -> None:
    reg: Registry = Registry("thing", "llmclf.tests.none", (_probe.__module__,))
    reg.register("mine", _probe)  # a user registering an object of a built-in module
    reg.register("ours", _probe, builtin=True)
    assert reg.entry("mine").source == "python"
    assert reg.entry("ours").source == "builtin"


def test_a_gpt2_builder_a_user_registers_is_not_listed_as_builtin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`llmclf list` showed a user's GPT2Builder as builtin (its class lives in llmclf)."""
    from click.testing import CliRunner

    import llmclf
    from llmclf.cli import main
    from llmclf.models.backbones import GPT2Builder

    llmclf.backbones.names()  # load the built-ins, then register on a copy
    monkeypatch.setattr(llmclf.backbones, "_entries", dict(llmclf.backbones._entries))
    mini = GPT2Builder("gpt2-mini", n_layer=4, n_embd=256, n_head=4)
    llmclf.backbones.register("gpt2-mini", mini, description="GPT-2, 4 layers")
    assert llmclf.backbones.entry("gpt2-mini").source == "python"
    assert llmclf.backbones.entry("gpt2-small").source == "builtin"
    rows = CliRunner().invoke(main, ["list", "backbones"]).stdout.splitlines()
    mini_row = next(row for row in rows if "gpt2-mini" in row)
    assert mini_row.rstrip().endswith("python")
    assert sum(row.rstrip().endswith("builtin") for row in rows) == 12  # the built-in sizes
