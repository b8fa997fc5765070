"""Padding policies: how texts of different lengths become one ``(B, T)`` tensor.

Every policy pads on the right with ``pad_id`` and never goes past ``cap``, the smaller of
``max_length`` and the backbone's context length. Policies are registered in ``llmclf.padding``
as classes (or factories) called as ``policy(max_length, context_length, pad_id)``:

- ``pad-batch``: pad each batch to its longest text (the default; with causal attention and
  last-real-token pooling, the result equals padding to any longer length).
- ``pad-dataset``: pad every text to the longest training text (the book's).
- ``truncate-batch``: cut each batch to its shortest text; never pads.
- ``truncate-dataset``: cut every text to the shortest training text; never pads, so a batch
  holding a text shorter than that is cut to it.

An empty text is encoded as one pad token with length 1, so it still gets a prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import CheckpointError, ConfigError, UsageError
from ..registries import padding

if TYPE_CHECKING:  # torch is imported on use, so `llmclf list` stays fast
    import torch


class Batch(NamedTuple):
    """One batch: right-padded token ids, real lengths, and labels when known."""

    input_ids: torch.Tensor  # (B, T) int64
    lengths: torch.Tensor  # (B,) int64: real tokens before padding, 1..T
    labels: torch.Tensor | None  # (B,) int64


class PaddingPolicy:
    """Base class: subclasses choose the batch length ``T`` in `length_for`."""

    name = "padding-policy"
    learns_length = False  # True when fit() learns a dataset-wide length

    def __init__(self, max_length: int | None, context_length: int, pad_id: int) -> None:
        if isinstance(context_length, bool) or not isinstance(context_length, int):
            raise ConfigError(f"context_length must be a positive integer, got {context_length!r}")
        if context_length < 1:
            raise ConfigError(f"context_length must be a positive integer, got {context_length!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ConfigError(f"max_length must be a positive integer or None, got {max_length!r}")
        self.max_length = max_length
        self.context_length = context_length
        self.pad_id = pad_id
        self.cap = min(max_length or context_length, context_length)
        self.length: int | None = None  # learned by fit() for dataset-wide policies

    def fit(self, train_lengths: Sequence[int]) -> None:
        """Learn from the training texts' token counts (dataset-wide policies only)."""

    def length_for(self, lengths: list[int]) -> int:
        """The batch length ``T`` for texts of ``lengths`` (each already within the cap, >= 1)."""
        raise NotImplementedError

    def collate(
        self, token_ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None
    ) -> Batch:
        """Cut and right-pad ``token_ids`` into a `Batch`."""
        import torch

        rows = [list(ids[: self.cap]) or [self.pad_id] for ids in token_ids]
        if not rows:
            raise UsageError("collate needs at least one text")
        t = self.length_for([len(r) for r in rows])
        real = [min(len(r), t) for r in rows]
        padded = [r[:t] + [self.pad_id] * (t - n) for r, n in zip(rows, real, strict=True)]
        return Batch(
            input_ids=torch.tensor(padded, dtype=torch.long),
            lengths=torch.tensor(real, dtype=torch.long),
            labels=None if labels is None else torch.tensor(list(labels), dtype=torch.long),
        )

    def state(self) -> dict[str, Any]:
        """JSON-able: the policy's name, its cap and what it learned, so a run reloads it."""
        return {"name": self.name, "max_length": self.max_length, "length": self.length}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` saved."""
        length = state.get("length")
        if length is not None and (not isinstance(length, int) or length < 1):
            raise CheckpointError(f"padding state has an invalid length {length!r}")
        self.length = None if length is None else min(length, self.cap)

    def _learned(self) -> int:
        if self.length is None:
            raise UsageError(
                f"padding policy {self.name!r} has not learned its length; call "
                "fit(train_lengths) first (or restore it with policy_from_state)"
            )
        return self.length

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cap={self.cap}, length={self.length})"


@padding.register("pad-batch", builtin=True)
class PadBatch(PaddingPolicy):
    """Pad each batch to its longest text (dynamic padding; the default)."""

    name = "pad-batch"

    def length_for(self, lengths: list[int]) -> int:
        return max(lengths)


@padding.register("pad-dataset", builtin=True)
class PadDataset(PaddingPolicy):
    """Pad every text to the longest training text (the book's)."""

    name = "pad-dataset"
    learns_length = True

    def fit(self, train_lengths: Sequence[int]) -> None:
        self.length = min(max((max(n, 1) for n in train_lengths), default=1), self.cap)

    def length_for(self, lengths: list[int]) -> int:
        return self._learned()


@padding.register("truncate-batch", builtin=True)
class TruncateBatch(PaddingPolicy):
    """Cut each batch to its shortest text; never pads."""

    name = "truncate-batch"

    def length_for(self, lengths: list[int]) -> int:
        return min(lengths)


@padding.register("truncate-dataset", builtin=True)
class TruncateDataset(PaddingPolicy):
    """Cut every text to the shortest training text; never pads."""

    name = "truncate-dataset"
    learns_length = True

    def fit(self, train_lengths: Sequence[int]) -> None:
        self.length = min(min((max(n, 1) for n in train_lengths), default=1), self.cap)

    def length_for(self, lengths: list[int]) -> int:
        return min(self._learned(), *lengths)


def get_policy(
    name: str, max_length: int | None, context_length: int, pad_id: int
) -> PaddingPolicy:
    """Build the registered policy ``name``; an unknown name suggests the closest."""
    return padding.get(name)(max_length, context_length, pad_id)


def policy_from_state(state: dict[str, Any], context_length: int, pad_id: int) -> PaddingPolicy:
    """Rebuild a policy from `PaddingPolicy.state` (as saved in a run directory)."""
    if not isinstance(state, dict) or not isinstance(state.get("name"), str):
        raise CheckpointError(f"padding state must be a dict with a 'name', got {state!r}")
    policy = get_policy(state["name"], state.get("max_length"), context_length, pad_id)
    if hasattr(policy, "load_state"):
        policy.load_state(state)
    return policy
