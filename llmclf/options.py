"""The fixed names llmclf accepts, their one check each, and how a config field is declared.

Every config (`llmclf.training.config.TrainConfig`, its `DataSpec`, `ServeConfig`) and every
command imports its devices, precisions and split names from here, and validates them with the
functions here, so each list and each check exists once. `option` declares a config field
together with what the command line shows for it (help, choices, metavar); ``llmclf fit``
builds its options from those fields. This module imports neither torch nor pandas.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import MISSING, Field, field, fields
from typing import Any

from .errors import ConfigError, LlmclfError

SPLITS = ("train", "validation", "test")
DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
POOLINGS = ("last", "last-token", "first", "mean", "mean-all")
# poolings that read padding positions: a text's vector depends on how wide its batch is
POOLINGS_READING_PADDING = ("last", "mean-all")
ATTENTIONS = ("causal", "bidirectional")
BALANCE_SCOPES = ("all", "train")
SAVE_POLICIES = ("best", "last")
CACHE_POLICIES = ("auto", "off")

__all__ = [
    "ATTENTIONS",
    "BALANCE_SCOPES",
    "CACHE_POLICIES",
    "DEVICES",
    "OFFICIAL_SPLIT",
    "OFFICIAL_VALIDATION",
    "POOLINGS",
    "POOLINGS_READING_PADDING",
    "PRECISIONS",
    "SAVE_POLICIES",
    "SPLITS",
    "check_choice",
    "check_device",
    "check_encoding",
    "check_fields",
    "check_precision",
    "check_split",
    "check_type",
    "default_of",
    "flag",
    "option",
    "show_default",
    "type_name",
]


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    default_text: str | None = None,
) -> Any:
    """A dataclass field that is also a command-line option.

    Args:
        default: the field's default (shown by ``--help``).
        help: one sentence for ``--help`` and the CLI reference.
        choices: the only values allowed (the option becomes a choice).
        metavar: the placeholder ``--help`` shows for the value.
        default_text: what ``--help`` shows as the default, when the value itself says little
            (``None`` meaning "the context length").
    """
    metadata = {"help": help, "choices": choices, "metavar": metavar, "default_text": default_text}
    return field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """The option of field ``name``: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def default_of(f: Field[Any]) -> Any:
    """The default value of a dataclass field (every config field has one)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"config field {f.name} has no default")


def show_default(f: Field[Any]) -> str:
    """The default of ``f`` as ``--help`` shows it (``none`` for None, ``yes``/``no``)."""
    if f.metadata.get("default_text"):
        return str(f.metadata["default_text"])
    value = default_of(f)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


# ----- checks: each one once --------------------------------------------------------------
def check_fields(spec: Any) -> None:
    """Check every field of the dataclass instance ``spec`` against its declared type."""
    for f in fields(spec):
        check_type(f.name, getattr(spec, f.name), type_name(f))


def type_name(f: Field[Any]) -> str:
    """A field's annotation as written: ``int``, ``float | None``, ``tuple[float, float, float]``
    (whether or not its module uses ``from __future__ import annotations``)."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def check_type(name: str, value: object, annotation: str) -> None:
    """Raise a one-line `ConfigError` unless ``value`` fits the field's type annotation.

    The annotations configs use: ``str``, ``bool``, ``int``, ``float``, ``X | None`` and
    ``tuple[float, float, float]``. A number in quotes or ``"no"`` for a boolean is refused
    (a config file's strings are not coerced).
    """
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    if value is None:
        if not optional:
            raise ConfigError(f"{name}: must be {_KINDS.get(base, base)}, got None")
        return
    ok = {
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": _is_int,
        "float": _is_number,
    }.get(base)
    if ok is None:  # tuples are checked by their own function (check_split)
        return
    if not ok(value):
        either = " or null" if optional else ""
        raise ConfigError(f"{name}: must be {_KINDS[base]}{either}, got {value!r}")


_KINDS = {
    "str": "a string",
    "bool": "true or false (a JSON/TOML boolean, unquoted)",
    "int": "an integer",
    "float": "a finite number (unquoted)",
}


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a one-line `ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}; got {value!r}")


def check_device(name: object) -> str:
    """``name`` if it is auto, cpu, cuda, cuda:N or mps; else a one-line `ConfigError`."""
    base, _, index = name.partition(":") if isinstance(name, str) else ("", "", "")
    if name in DEVICES or (base == "cuda" and index.isdigit()):
        return name  # type: ignore[return-value]
    raise ConfigError(f"device: must be one of {', '.join(DEVICES)} (or cuda:N), got {name!r}")


def check_precision(precision: object) -> str:
    """``precision`` if it is one of `PRECISIONS`; else a one-line `ConfigError`."""
    if isinstance(precision, str) and precision in PRECISIONS:
        return precision
    raise ConfigError(f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")


OFFICIAL_SPLIT = "official"
OFFICIAL_VALIDATION = 0.1  # of the official training rows, with --split official


def check_split(split: object) -> tuple[float, float, float] | str:
    """Three fractions (train, validation, test): >= 0, train > 0, summing to 1, as floats;
    or ``"official"``: the dataset's own train/test partition."""
    if split == OFFICIAL_SPLIT:
        return OFFICIAL_SPLIT
    if isinstance(split, str):
        raise ConfigError(
            f"split: must be three fractions such as 0.7,0.1,0.2 or {OFFICIAL_SPLIT!r}, "
            f"got {split!r}"
        )
    if not isinstance(split, tuple | list) or not all(_is_number(f) for f in split):
        raise ConfigError(f"split: must be three numbers (train, validation, test), got {split!r}")
    if len(split) != 3:
        raise ConfigError(f"split: needs three fractions: train, validation, test; got {split!r}")
    values = tuple(float(f) for f in split)
    if any(f < 0 for f in values) or values[0] <= 0 or abs(sum(values) - 1) > 1e-6:
        raise ConfigError(
            f"split: fractions must be >= 0, train > 0, and sum to 1; got {tuple(split)!r} "
            f"(sum {sum(values):g})"
        )
    return values  # type: ignore[return-value]


def check_encoding(encoding: object, error: type[LlmclfError] = ConfigError) -> str:
    """``encoding`` if Python has a text codec of that name; else a one-line ``error``."""
    try:
        codecs.lookup(encoding)  # type: ignore[arg-type]
    except (LookupError, TypeError):
        raise error(
            f"encoding: unknown encoding {encoding!r}; pass a Python codec name with --encoding, "
            "e.g. utf-8, utf-8-sig, latin-1 or cp1252"
        ) from None
    return encoding  # type: ignore[return-value]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
