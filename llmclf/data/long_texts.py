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
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..registries import long_texts

DEFAULT = "head"


class LongTextPolicy:
    """Base class: `select` keeps at most ``n`` tokens of a text, in their original order."""

    name = "long-text-policy"

    def __init__(self, param: str | None = None) -> None:
        if param is not None:
            raise ConfigError(f"long_texts: {self.name} takes no parameter, got {param!r}")

    def select(self, ids: Sequence[int], n: int) -> list[int]:
        """At most ``n`` of ``ids``; a text of ``n`` tokens or fewer is kept whole."""
        raise NotImplementedError

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

    def spec(self) -> str:
        return self.name if self.head is None else f"{self.name}:{self.head}"


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
