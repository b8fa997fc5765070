"""One generic registry for every kind of plugin: datasets, balancers, padding, backbones.

Built-in entries register through the same ``register`` decorator a user or a third-party
package calls, marked ``builtin=True`` (an entry's origin is never guessed from the module
that defined its object). Built-in modules and entry points are loaded lazily, once, on the
first read.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, overload

from .errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name, one-line description and origin."""

    name: str
    obj: T
    description: str
    source: str  # "builtin", "python" or the distribution that provided it


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


class Registry(Generic[T]):
    """A name -> object mapping with decorator registration and entry-point plugins.

    Args:
        kind: what the registry holds, singular, used in messages ("backbone").
        group: the entry-point group third-party packages use ("llmclf.backbones").
        builtin_modules: modules whose import registers the built-in entries.
    """

    def __init__(self, kind: str, group: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self.builtin_modules = builtin_modules
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._builtins_loaded = False
        self._source = "python"
        self._builtins: dict[str, Entry[T]] = {}  # kept across resets (tests reset registries)

    # ----- registration ------------------------------------------------------------------
    @overload
    def register(
        self,
        name: str,
        obj: None = None,
        *,
        description: str | None = None,
        override: bool = False,
        builtin: bool = False,
    ) -> Callable[[T], T]: ...

    @overload
    def register(
        self,
        name: str,
        obj: T,
        *,
        description: str | None = None,
        override: bool = False,
        builtin: bool = False,
    ) -> T: ...

    def register(
        self,
        name: str,
        obj: T | None = None,
        *,
        description: str | None = None,
        override: bool = False,
        builtin: bool = False,
    ) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does.

        ``description`` defaults to the first line of the object's docstring. Registering a
        name that exists is an error unless ``override=True``. ``builtin=True`` is for
        llmclf's own entries (``llmclf list`` shows them as "builtin"); anything else is shown
        as from "python" or from the plugin distribution that registered it.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(target: T) -> T:
            self._ensure_builtins()  # not the plugins: this may run while a module imports
            if name in self._entries and not override:
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is already registered "
                    f"(by {self._entries[name].source}); pass override=True to replace it"
                )
            text = description if description is not None else _first_line(target.__doc__)
            entry = Entry(name, target, text, "builtin" if builtin else self._source)
            self._entries[name] = entry
            if builtin:
                self._builtins[name] = entry
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (mainly for tests); unknown names raise like `get`."""
        self._ensure_loaded()
        if name not in self._entries:
            raise self._unknown(name)
        del self._entries[name]

    # ----- lookup ------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name lists the known ones."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(name) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._ensure_loaded()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._ensure_loaded()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r})"

    def _unknown(self, name: str) -> UnknownNameError:
        known = sorted(self._entries)
        by_lower = {k.lower(): k for k in known}
        close = [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), by_lower, n=1)]
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        return UnknownNameError(
            f"unknown {self.kind} {name!r}{hint} known: {', '.join(known) or '(none)'}"
        )

    # ----- lazy loading ------------------------------------------------------------------
    def _ensure_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True  # set first: the modules we import call register() again
        for module in self.builtin_modules:
            importlib.import_module(module)

    def _ensure_loaded(self) -> None:
        """Built-ins, then plugins, once, on the first read."""
        if self._loaded:
            return
        self._loaded = True
        self._ensure_builtins()
        for (
            name,
            entry,
        ) in self._builtins.items():  # after a reset (tests) modules re-register nothing
            self._entries.setdefault(name, entry)
        self.load_plugins()

    def load_plugins(self) -> None:
        """Import every entry point of `group`. A broken plugin warns and is skipped.

        An entry point may name a module (its import registers what it defines) or an object
        (registered under the entry point's name unless its import registered it already).
        """
        for ep in entry_points(group=self.group):
            dist = getattr(getattr(ep, "dist", None), "name", None) or ep.value
            self._source = dist
            try:
                loaded = ep.load()
            except Exception as exc:
                warnings.warn(
                    f"llmclf: skipping {self.kind} plugin {ep.name!r} from {dist}: "
                    f"{type(exc).__name__}: {exc}",
                    stacklevel=2,
                )
                continue
            finally:
                self._source = "python"
            if ep.name not in self._entries and not _is_module(loaded):
                self._entries[ep.name] = Entry(ep.name, loaded, _first_line(loaded.__doc__), dist)


def _is_module(obj: object) -> bool:
    return type(obj).__name__ == "module"


# ----- the registries: built-ins live in the modules named here and register on first read
datasets: Registry[Any] = Registry(
    "dataset", "llmclf.datasets", ("llmclf.data.sources", "llmclf.data.imdb")
)
balancers: Registry[Any] = Registry("balancer", "llmclf.balancers", ("llmclf.data.balance",))
padding: Registry[Any] = Registry("padding policy", "llmclf.padding", ("llmclf.data.padding",))
backbones: Registry[Any] = Registry(
    "backbone", "llmclf.backbones", ("llmclf.models.backbones", "llmclf.models.hf_backbones")
)
long_texts: Registry[Any] = Registry(
    "long-text policy", "llmclf.long_texts", ("llmclf.data.long_texts",)
)

ALL: dict[str, Registry[Any]] = {
    "datasets": datasets,
    "balancers": balancers,
    "padding": padding,
    "backbones": backbones,
    "long_texts": long_texts,
}
