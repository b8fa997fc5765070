"""Long-text policies: which tokens of a text longer than the cap a model reads.

A policy is registered in ``llmclf.long_texts`` (``llmclf list long_texts``) as a class called
with its parameter, the part of the name after ``:`` (``"head+tail:128"`` -> ``HeadTail("128")``,
``"tail"`` -> ``Tail(None)``). Its `LongTextPolicy.select` returns at most ``n`` of a text's
token ids. Selecting twice with caps ``n >= m`` equals selecting once with ``m``, so cutting to
the run's token cap when the data is encoded and again to the padding policy's width when a
batch is collated keeps exactly the tokens one cut would keep. The choice is saved with the
padding policy in ``llmclf.json``, so fit, evaluate, predict and serve all read the same tokens.

- ``head``: the first ``n`` tokens (the default; what the book does).
- ``tail``: the last ``n`` tokens (a review's verdict is often at its end).
- ``head+tail:K``: the first ``K`` and the last ``n - K`` tokens (Sun et al. 2019 found 128 +
  382 best on IMDb). Without ``K`` a quarter of the cap heads the text.
- ``windows:S``: every token, in overlapping windows of ``n`` tokens that start ``S`` apart
  (`Windows`). A text becomes several examples (`LongTextPolicy.pieces`); at training each
  carries its text's label, at prediction their class probabilities are aggregated into one
  prediction per text (`LongTextPolicy.aggregate`).

A policy that reads one piece of a text only needs `LongTextPolicy.select`; one that reads
several sets ``windowed = True`` and overrides `pieces`, `reach`, `tokens_read`, `count` and
`aggregate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..registry import long_texts

if TYPE_CHECKING:  # torch is imported on use, so `llmclf list` stays fast
    import torch

DEFAULT = "head"
AGGREGATIONS = ("mean", "max")


class LongTextPolicy:
    """Base class: `select` keeps at most ``n`` tokens of a text, in their original order."""

    name = "long-text-policy"

    def __init__(self, param: str | None = None) -> None:
        if param is not None:
            raise ConfigError(f"long_texts: {self.name} takes no parameter, got {param!r}")

    def select(self, ids: Sequence[int], n: int) -> list[int]:
        """At most ``n`` of ``ids``; a text of ``n`` tokens or fewer is kept whole."""
        raise NotImplementedError

    # ----- several pieces a text (only `Windows` among the built-ins) ---------------------------
    windowed = False  # True when a text may become more than one piece (example)

    def check_cap(self, n: int) -> None:
        """Raise `ConfigError` when this policy cannot read texts with a cap of ``n`` tokens."""

    def reach(self, ids: Sequence[int], n: int) -> list[int]:
        """Every token of ``ids`` some piece reads with a cap of ``n`` (what the data pipeline
        keeps of a text before its pieces are cut); ``select`` for one-piece policies."""
        return self.select(ids, n)

    def pieces(self, ids: Sequence[int], n: int) -> list[list[int]]:
        """The pieces (examples) the model reads of ``ids``, each at most ``n`` tokens."""
        return [self.select(ids, n)]

    def count(self, length: int, n: int) -> int:
        """How many pieces a text of ``length`` tokens becomes with a cap of ``n``."""
        return 1

    def tokens_read(self, length: int, n: int) -> int:
        """How many distinct tokens of a text of ``length`` tokens its pieces read."""
        return min(length, n)

    def aggregate(self, probabilities: torch.Tensor) -> torch.Tensor:
        """One text's class probabilities ``(K,)`` from its pieces' ``(P, K)``."""
        return probabilities.mean(dim=0)

    def spec(self) -> str:
        """The name this policy was built from (what ``llmclf.json`` records)."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r})"


@long_texts.register("head", builtin=True)
class Head(LongTextPolicy):
    """Keep the first tokens (the default; the book's)."""

    name = "head"

    def select(self, ids: Sequence[int], n: int) -> list[int]:
        return list(ids[:n])


@long_texts.register("tail", builtin=True)
class Tail(LongTextPolicy):
    """Keep the last tokens."""

    name = "tail"

    def select(self, ids: Sequence[int], n: int) -> list[int]:
        return list(ids[max(len(ids) - n, 0) :])


@long_texts.register("head+tail", builtin=True)
class HeadTail(LongTextPolicy):
    """Keep the first K and the last N-K tokens (head+tail:K; K defaults to a quarter of N)."""

    name = "head+tail"

    def __init__(self, param: str | None = None) -> None:
        self.head: int | None = None
        if param is not None:
            if not param.isdigit() or int(param) < 1:
                raise ConfigError(
                    f"long_texts: head+tail:K needs a whole number K >= 1 of head tokens, "
                    f"got {param!r}; e.g. head+tail:128"
                )
            self.head = int(param)

    def select(self, ids: Sequence[int], n: int) -> list[int]:
        if len(ids) <= n:
            return list(ids)
        k = min(self.head if self.head is not None else n // 4, n)
        return list(ids[:k]) + list(ids[len(ids) - (n - k) :]) if n > k else list(ids[:k])

    def check_cap(self, n: int) -> None:
        """Refuse a head of K >= the cap ``n``: it would read the head only, silently."""
        if self.head is not None and self.head >= n:
            raise ConfigError(
                f"long_texts {self.spec()}: {self.head} head tokens leave no room for the tail "
                f"within the {n}-token cap; use K < {n} (e.g. head+tail:{max(n // 4, 1)}) or "
                "raise --max-length"
            )

    def spec(self) -> str:
        return self.name if self.head is None else f"{self.name}:{self.head}"


@long_texts.register("windows", builtin=True)
class Windows(LongTextPolicy):
    """Read every token in overlapping windows of the cap, a stride apart (mean or max).

    Spec: ``windows[:ITEMS]``, ITEMS comma-separated: the stride as a bare number or
    ``stride=S`` (default: half the cap), ``agg=mean|max`` (how the windows' probabilities
    become the text's; default mean) and ``max_windows=M`` (read at most the first M windows
    of a text, dropping the rest; default no limit). E.g. ``windows:128``,
    ``windows:128,agg=max``, ``windows:stride=64,max_windows=16``.

    A text of ``L > n`` tokens becomes the windows starting at ``0, S, 2S, ...`` before
    ``L - n`` and a last one that ends at its last token: ``ceil((L - n) / S) + 1`` windows of
    exactly ``n`` tokens, every token read at least once. A text of ``n`` tokens or fewer is one
    window, itself.
    """

    name = "windows"
    windowed = True

    def __init__(self, param: str | None = None) -> None:
        self.stride: int | None = None
        self.agg = "mean"
        self.max_windows: int | None = None
        seen: set[str] = set()
        for item in param.split(",") if param is not None else []:
            key, eq, value = item.strip().partition("=")
            if not eq:
                key, value = "stride", key
            key = key.replace("-", "_")
            if key in seen:
                raise ConfigError(
                    f"windows: {key} is given twice in {param!r}; give each setting once, "
                    "e.g. windows:128,agg=max"
                )
            seen.add(key)
            if key == "stride":
                self.stride = _whole(value, "windows: the stride", "windows:128")
            elif key == "agg":
                if value not in AGGREGATIONS:
                    raise ConfigError(
                        f"windows: agg must be one of {', '.join(AGGREGATIONS)}, got {value!r}; "
                        "e.g. windows:128,agg=max"
                    )
                self.agg = value
            elif key == "max_windows":
                example = "windows:128,max_windows=16"
                self.max_windows = _whole(value, "windows: max_windows", example)
            else:
                raise ConfigError(
                    f"windows: unknown setting {key!r}; give stride=S (or just S), agg=mean|max "
                    "and max_windows=M, e.g. windows:128,agg=max"
                )

    def step(self, n: int) -> int:
        """The stride with a cap of ``n``: the one given, or half the cap."""
        self.check_cap(n)
        return self.stride if self.stride is not None else max(n // 2, 1)

    def check_cap(self, n: int) -> None:
        if self.stride is not None and self.stride > n:
            raise ConfigError(
                f"long_texts {self.spec()}: the stride {self.stride} is longer than the "
                f"{n}-token windows (the token cap), so tokens between windows would never be "
                f"read; use a stride of at most {n} (e.g. windows:{max(n // 2, 1)}) or raise "
                "--max-length"
            )

    def starts(self, length: int, n: int) -> list[int]:
        """Where each window of a text of ``length`` tokens starts."""
        if length <= n:
            return [0]
        stride = self.step(n)
        starts = [*range(0, length - n, stride), length - n]
        return starts[: self.max_windows] if self.max_windows is not None else starts

    def select(self, ids: Sequence[int], n: int) -> list[int]:
        """The first window (what a single cut keeps: the head)."""
        return list(ids[:n])

    def reach(self, ids: Sequence[int], n: int) -> list[int]:
        return list(ids[: self.tokens_read(len(ids), n)])

    def pieces(self, ids: Sequence[int], n: int) -> list[list[int]]:
        return [list(ids[s : s + n]) for s in self.starts(len(ids), n)]

    def count(self, length: int, n: int) -> int:
        return len(self.starts(length, n))

    def tokens_read(self, length: int, n: int) -> int:
        return min(self.starts(length, n)[-1] + n, length)

    def aggregate(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The mean of the windows' probabilities; with ``agg=max`` each class's largest
        probability over the windows, renormalised to sum to 1."""
        if self.agg == "mean":
            return probabilities.mean(dim=0)
        top = probabilities.max(dim=0).values
        return top / top.sum()

    def spec(self) -> str:
        items = [] if self.stride is None else [str(self.stride)]
        if self.agg != "mean":
            items.append(f"agg={self.agg}")
        if self.max_windows is not None:
            items.append(f"max_windows={self.max_windows}")
        return self.name + (":" + ",".join(items) if items else "")


def _whole(value: str, what: str, example: str) -> int:
    """``value`` as a whole number >= 1, or a one-line `ConfigError` naming ``what``."""
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigError(f"{what} must be a whole number >= 1, got {value!r}; e.g. {example}")
    return int(value)


def get_long_text_policy(spec: str) -> LongTextPolicy:
    """Build the policy ``spec`` names (``"head"``, ``"head+tail:128"``, a plugin's).

    An unknown name lists the known ones (`UnknownNameError`); a bad parameter is a
    `ConfigError`.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"long_texts: must be a policy name such as head, got {spec!r}")
    name, colon, param = spec.partition(":")
    policy = long_texts.get(name)(param if colon else None)
    if not isinstance(policy, LongTextPolicy) and not callable(getattr(policy, "select", None)):
        raise ConfigError(
            f"long-text policy {name!r} built a {type(policy).__name__} with no select(ids, n); "
            "fix the plugin that registers it"
        )
    return policy


def to_examples(
    token_ids: Sequence[Sequence[int]], policy: LongTextPolicy, n: int
) -> tuple[list[list[int]], list[int] | None]:
    """The examples the model reads of each text, and the text each came from.

    A one-piece policy (``windowed`` false) returns ``token_ids`` cut by `select` and None:
    example ``i`` is text ``i``. A windowed one returns every text's pieces, in text order
    (a text's pieces are adjacent), and for each piece its text's position.
    """
    if not getattr(policy, "windowed", False):
        return [policy.select(ids, n) for ids in token_ids], None
    policy.check_cap(n)
    examples: list[list[int]] = []
    owners: list[int] = []
    for text, ids in enumerate(token_ids):
        pieces = policy.pieces(ids, n) or [[]]
        examples.extend(pieces)
        owners.extend([text] * len(pieces))
    return examples, owners


def aggregate_examples(
    probabilities: torch.Tensor, owners: Sequence[int], policy: LongTextPolicy
) -> tuple[list[int], torch.Tensor]:
    """The texts among ``owners`` (ascending) and their probabilities ``(T, K)``, aggregated
    from their examples' ``(E, K)`` (``owners[e]`` is example ``e``'s text) by
    `LongTextPolicy.aggregate`. A text's row depends on its own examples only, whatever else
    was scored with it."""
    import torch

    owner = torch.as_tensor(list(owners), dtype=torch.long)
    texts, counts = torch.unique(owner, sorted=True, return_counts=True)
    groups = torch.split(probabilities[torch.argsort(owner, stable=True)], counts.tolist())
    out = torch.stack([policy.aggregate(group) for group in groups]) if groups else None
    if out is None:
        out = probabilities.new_empty(0, probabilities.shape[-1])
    return texts.tolist(), out
