"""Padding policies: how texts of different lengths become one ``(B, T)`` tensor.

A policy is two rules: how many tokens of each text it keeps (`PaddingPolicy.keep`, never past
``cap``, the smaller of ``max_length`` and the backbone's context length), and how wide a batch
is (`PaddingPolicy.length_for`). Texts are right-padded with ``pad_id``. Policies are registered
in ``llmclf.padding`` as classes (or factories) called as
``policy(max_length, context_length, pad_id)``:

- ``pad-batch``: keep up to ``cap`` tokens; pad each batch to its longest text (the default;
  with causal attention and last-real-token pooling, the result equals padding to any length).
- ``pad-dataset``: keep up to the longest training text's length and pad every text to it (the
  book's; a fixed width, so ``last`` pooling reads the same position for every text). Longer
  texts at predict time are cut to it, and every prediction says so.
- ``truncate-dataset``: keep up to ``max_length`` tokens and pad every text to ``max_length``
  (the book's ``--context_length N``; a fixed width). Needs ``max_length``.
- ``truncate-batch``: cut each batch to its shortest text. A text's prediction then depends on
  the other texts in its batch, so training refuses it; it stays registered so that runs saved
  with it still load (`Classifier` then predicts their texts one at a time).

Because attention is causal and padding is on the right, a text's prediction under
``last-token``, ``first`` or ``mean`` pooling depends only on the tokens kept, never on its
batch. ``last`` pooling reads position ``T - 1`` and ``mean-all`` averages every position, and
bidirectional attention lets every token see the padding, so these are independent of the
batch only when the width is fixed (`PaddingPolicy.fixed_width`); `check_combination` refuses
the rest.

An empty text is encoded as one pad token with length 1, so it still gets a prediction.

Which tokens of a longer text are kept is the policy's `PaddingPolicy.long_text`, a
`llmclf.data.long_texts.LongTextPolicy` (``head`` unless `PaddingPolicy.set_long_texts` chose
another); `state` saves its name, so a saved run cuts texts as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import CheckpointError, ConfigError, LlmclfError, UsageError
from ..options import POOLINGS_READING_PADDING
from ..registry import padding
from .long_texts import DEFAULT as DEFAULT_LONG_TEXTS
from .long_texts import LongTextPolicy, get_long_text_policy

if TYPE_CHECKING:  # torch is imported on use, so `llmclf list` stays fast
    import torch


class Batch(NamedTuple):
    """One batch: right-padded token ids, real lengths, and labels when known."""

    input_ids: torch.Tensor  # (B, T) int64
    lengths: torch.Tensor  # (B,) int64: real tokens before padding, 1..T
    labels: torch.Tensor | None  # (B,) int64


class PaddingPolicy:
    """Base class: subclasses choose how many tokens a text keeps (`keep`) and the batch
    width ``T`` (`length_for`)."""

    name = "padding-policy"
    fixed_width = False  # True when every batch is `length` wide, whatever texts it holds
    batch_dependent = False  # True when a text's kept tokens depend on the other texts

    def __init__(self, max_length: int | None, context_length: int, pad_id: int) -> None:
        self.cap = token_cap(max_length, context_length)
        self.max_length = max_length
        self.context_length = context_length
        self.pad_id = pad_id
        self.length: int | None = None  # learned by fit() for dataset-wide policies
        self.long_text: LongTextPolicy = get_long_text_policy(DEFAULT_LONG_TEXTS)

    def set_long_texts(self, spec: str) -> None:
        """Choose which tokens of a text longer than `keep` are kept (``"tail"``, ...)."""
        self.long_text = get_long_text_policy(spec)

    def select(self, ids: Sequence[int]) -> list[int]:
        """The tokens of one text this policy keeps: at most `keep`, chosen by `long_text`."""
        return self.long_text.select(ids, self.keep())

    def fit(self, train_lengths: Sequence[int]) -> None:
        """Learn from the training texts' token counts (dataset-wide policies only)."""

    def keep(self) -> int:
        """The most tokens of one text this policy keeps (the rest of a longer text is cut)."""
        return self.cap

    def length_for(self, lengths: list[int]) -> int:
        """The batch length ``T`` for texts of ``lengths`` (each already within `keep`, >= 1).

        The rule a subclass defines; callers ask `width`."""
        raise NotImplementedError

    def width(self, token_counts: Sequence[int]) -> int:
        """The width ``T`` of a batch of texts with ``token_counts`` tokens each (before any
        cut): what `collate` makes of them. ``width([n])`` is a text's width on its own."""
        keep = self.keep()
        return self.length_for([max(min(n, keep), 1) for n in token_counts])

    def collate(
        self, token_ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None
    ) -> Batch:
        """Cut and right-pad ``token_ids`` into a `Batch`."""
        import torch

        keep = self.keep()
        rows = [list(self.long_text.select(ids, keep)) or [self.pad_id] for ids in token_ids]
        if not rows:
            raise UsageError("collate needs at least one text")
        t = self.width([len(r) for r in rows])
        real = [min(len(r), t) for r in rows]
        padded = [r[:t] + [self.pad_id] * (t - n) for r, n in zip(rows, real, strict=True)]
        return Batch(
            input_ids=torch.tensor(padded, dtype=torch.long),
            lengths=torch.tensor(real, dtype=torch.long),
            labels=None if labels is None else torch.tensor(list(labels), dtype=torch.long),
        )

    def state(self) -> dict[str, Any]:
        """JSON-able: the policy's name, its cap and what it learned, so a run reloads it."""
        return {
            "name": self.name,
            "max_length": self.max_length,
            "length": self.length,
            "long_texts": self.long_text.spec(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` saved."""
        length = state.get("length")
        if length is not None and (not isinstance(length, int) or length < 1):
            raise CheckpointError(f"padding state has an invalid length {length!r}")
        self.length = None if length is None else min(length, self.cap)
        spec = state.get("long_texts", DEFAULT_LONG_TEXTS)  # runs saved before it: head
        try:
            self.set_long_texts(spec)
        except LlmclfError as exc:
            raise CheckpointError(f"padding state has long_texts {spec!r}: {exc}") from None

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
    """Pad every text to the longest training text (the book's); longer texts are cut to it."""

    name = "pad-dataset"
    fixed_width = True

    def fit(self, train_lengths: Sequence[int]) -> None:
        self.length = min(max((max(n, 1) for n in train_lengths), default=1), self.cap)

    def keep(self) -> int:
        return self._learned()

    def length_for(self, lengths: list[int]) -> int:
        return self._learned()


@padding.register("truncate-batch", builtin=True)
class TruncateBatch(PaddingPolicy):
    """Cut each batch to its shortest text (depends on the batch: training refuses it)."""

    name = "truncate-batch"
    batch_dependent = True

    def length_for(self, lengths: list[int]) -> int:
        return min(lengths)


@padding.register("truncate-dataset", builtin=True)
class TruncateDataset(PaddingPolicy):
    """Cut every text to --max-length tokens and pad it to that width (the book's)."""

    name = "truncate-dataset"
    fixed_width = True

    def __init__(self, max_length: int | None, context_length: int, pad_id: int) -> None:
        super().__init__(max_length, context_length, pad_id)
        self.length = None if max_length is None else self.cap

    def fit(self, train_lengths: Sequence[int]) -> None:
        if self.max_length is None:
            raise ConfigError(TRUNCATE_DATASET_NEEDS_MAX_LENGTH)

    def keep(self) -> int:
        return self._learned()

    def length_for(self, lengths: list[int]) -> int:
        if self.batch_dependent:  # a run saved by an earlier llmclf
            return min(self._learned(), *lengths)
        return self._learned()

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if self.max_length is None and self.length is not None:
            # Saved by an llmclf that learned the shortest training text and never padded:
            # predictions depended on the batch, so `Classifier` predicts one text at a time.
            self.fixed_width = False
            self.batch_dependent = True


def token_cap(max_length: int | None, context_length: int) -> int:
    """The most tokens of one text any policy keeps: ``max_length``, never past the context.

    Raises `ConfigError` for a ``max_length`` or ``context_length`` that is not a positive
    integer (``max_length`` may be None: no cap besides the context).
    """
    if (
        isinstance(context_length, bool)
        or not isinstance(context_length, int)
        or context_length < 1
    ):
        raise ConfigError(f"context_length must be a positive integer, got {context_length!r}")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise ConfigError(f"max_length must be a positive integer or None, got {max_length!r}")
    return min(max_length or context_length, context_length)


TRUNCATE_DATASET_NEEDS_MAX_LENGTH = (
    "padding truncate-dataset cuts every text to --max-length tokens and pads it to that "
    "width; pass --max-length N (e.g. 256), or use --padding pad-batch"
)


def combination_problem(
    policy: type[PaddingPolicy] | PaddingPolicy, pooling: str, attention: str = "causal"
) -> str | None:
    """Why ``policy`` with ``pooling`` (and ``attention``) would make a text's prediction depend
    on its batch, or None when every text is predicted the same alone or in any batch."""
    name = getattr(policy, "name", type(policy).__name__)
    fixed = getattr(policy, "fixed_width", False)
    if getattr(policy, "batch_dependent", False):
        instead = (  # these poolings need a fixed width, which pad-batch does not give
            "--padding pad-dataset"
            if pooling in POOLINGS_READING_PADDING or attention != "causal"
            else "--padding pad-batch (optionally with --max-length N)"
        )
        return (
            f"padding {name} cuts a text to a length set by the other texts in its batch, so "
            f"its prediction would depend on them; use {instead}, or --padding "
            "truncate-dataset --max-length N"
        )
    if pooling == "last" and not fixed:
        return (
            f"pooling last reads the batch's last position, which with padding {name} is "
            "padding whose amount depends on the other texts in the batch; use --padding "
            "pad-dataset (or truncate-dataset --max-length N), or --pooling last-token"
        )
    if pooling == "mean-all" and not fixed:
        return (
            f"pooling mean-all averages every position, padding included, and with padding "
            f"{name} the amount of padding depends on the other texts in the batch; use "
            "--padding pad-dataset (or truncate-dataset --max-length N), or --pooling mean "
            "(real tokens only)"
        )
    if attention != "causal" and not fixed:
        return (
            f"attention {attention} lets every token see the padding after it, and with padding "
            f"{name} the amount of padding depends on the other texts in the batch; use "
            "--padding pad-dataset (or truncate-dataset --max-length N), or --attention causal"
        )
    return None


def check_combination(
    name: str, pooling: str, max_length: int | None, attention: str = "causal"
) -> None:
    """Refuse, with one line naming the fix, a padding policy, pooling and attention that would
    make predictions depend on their batch (or truncate-dataset without a max_length)."""
    policy = padding.get(name)
    if isinstance(policy, type) and issubclass(policy, TruncateDataset) and max_length is None:
        if pooling in POOLINGS_READING_PADDING or attention != "causal":
            # pad-batch is refused with these: offer pad-dataset
            raise ConfigError(TRUNCATE_DATASET_NEEDS_MAX_LENGTH.replace("pad-batch", "pad-dataset"))
        raise ConfigError(TRUNCATE_DATASET_NEEDS_MAX_LENGTH)
    problem = combination_problem(policy, pooling, attention)
    if problem:
        raise ConfigError(problem)


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
