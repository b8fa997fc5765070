"""Click options that several commands share, written once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..options import PRECISIONS


def precision_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--precision fp32|bf16|fp16|auto`` (default fp32): inference's autocast precision."""
    return click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="fp32",
        show_default=True,
        help=help_text,
    )
