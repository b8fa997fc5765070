"""The label map: class names <-> ids, deterministic, saved with a model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class LabelMap:
    """Label names in id order: ``names[i]`` is the name of class ``i``."""

    names: tuple[str, ...]
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise DataError(f"label names must be non-empty strings, got {list(names)!r}")
        if len(set(names)) != len(names):
            raise DataError(f"label names must be unique, got {list(names)!r}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_ids", {name: i for i, name in enumerate(names)})

    def id(self, name: str) -> int:
        """The id of label ``name``; an unknown name lists the known ones."""
        try:
            return self._ids[name]
        except KeyError:
            raise DataError(
                f"unknown label {name!r}; the known labels are {', '.join(self.names)}"
            ) from None

    def name(self, id: int) -> str:
        """The name of label ``id``."""
        if not 0 <= id < len(self.names):
            raise DataError(f"label id {id} is out of range 0..{len(self.names) - 1}")
        return self.names[id]

    def unknown(self, names: Iterable[str]) -> list[str]:
        """The distinct names among ``names`` that this map does not know, sorted."""
        return sorted(set(names) - self._ids.keys())

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    @classmethod
    def from_labels(cls, labels: pd.Series) -> LabelMap:
        """The map of the distinct labels in ``labels``, as strings.

        Names are sorted, unless ``labels`` is an ordered pandas Categorical: a dataset
        declares its order that way (``sms`` declares ham, spam). Declared categories that no
        row uses are left out, so every class has examples.
        """
        import pandas as pd

        present = {str(v) for v in labels.dropna().unique()}
        if isinstance(labels.dtype, pd.CategoricalDtype) and labels.dtype.ordered:
            order = [str(c) for c in labels.dtype.categories]
            return cls(tuple(dict.fromkeys(n for n in order if n in present)))
        return cls(tuple(sorted(present)))
