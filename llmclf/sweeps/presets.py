"""Presets: named sweeps. ``book-ablation`` is the 19-row table of the book's chapter 6 bonus
experiments (``ch06/02_bonus_additional-experiments`` of *Build a Large Language Model (From
Scratch)*), each row as llmclf overrides.

Every row starts from the book's chapter recipe, which is llmclf's default except for three
fields (`BOOK_BASE`): the book pads every text to the longest training text, reads the last
position and trains the last block. The rows then change what the book's command line changes.
Where llmclf words a setting differently, the row says so in `BookRow.how`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .rows import SweepRow

__all__ = ["BOOK_BASE", "BOOK_ROWS", "PRESETS", "BookRow", "preset_rows"]

# the book's chapter-6 recipe, where it differs from llmclf's defaults
BOOK_BASE: dict[str, Any] = {"padding": "pad-dataset", "pooling": "last", "trainable": "last-block"}

IGNORE_INDEX_NOTE = (
    "not run: ignore_index has no effect on a classification head (the targets are class ids "
    "0/1, never the pad id 50256, so the loss is row 1's); the book's figures equal row 1's"
)


@dataclass(frozen=True)
class BookRow:
    """One row of the book's table: its number, the book's command-line flags, the llmclf
    overrides that do the same, and how they differ when they are not word for word."""

    number: int
    book: str
    overrides: dict[str, Any] = field(default_factory=dict)
    how: str = ""
    note: str | None = None  # the row is not run, for this reason


BOOK_ROWS: tuple[BookRow, ...] = (
    BookRow(1, "(defaults)"),
    BookRow(2, "--trainable_token_pos first", {"pooling": "first"}),
    BookRow(3, "--trainable_layers last_layer", {"trainable": "head"}),
    BookRow(4, "--trainable_layers last_two_blocks", {"trainable": "last-blocks:2"}),
    BookRow(5, "--trainable_layers all", {"trainable": "all"}),
    BookRow(6, '--model_size "gpt2-medium (355M)"', {"backbone": "gpt2-medium"}),
    BookRow(7, '--model_size "gpt2-large (774M)"', {"backbone": "gpt2-large"}),
    BookRow(8, '--model_size "gpt2-xl (1558M)"', {"backbone": "gpt2-xl"}),
    BookRow(
        9,
        '--model_size "gpt2-xl (1558M)" --trainable_layers all',
        {"backbone": "gpt2-xl", "trainable": "all"},
    ),
    BookRow(
        10, "--weights random --trainable_layers all", {"weights": "random", "trainable": "all"}
    ),
    BookRow(
        11,
        "--trainable_layers lora --lora_rank 16 --lora_alpha 16",
        {"trainable": "lora:r=16,alpha=16"},
        "llmclf's LoRA wraps the blocks' projections and trains the head in full",
    ),
    BookRow(
        12,
        '--trainable_layers lora --lora_rank 16 --lora_alpha 8 --model_size "gpt2-xl (1558M)"',
        {"backbone": "gpt2-xl", "trainable": "lora:r=16,alpha=8"},
        "llmclf's LoRA wraps the blocks' projections and trains the head in full",
    ),
    BookRow(
        13,
        '--context_length "model_context_length"',
        {"padding": "truncate-dataset", "max_length": 1024},
        "every text padded to the model's context length (1024 for GPT-2; a smaller model's "
        "own context caps it)",
    ),
    BookRow(
        14,
        "--no_padding --batch_size 1",
        {"padding": "pad-batch", "pooling": "last-token", "batch_size": 1},
        "a batch of one is never padded, so its last position is its last real token",
    ),
    BookRow(
        15,
        "--no_padding --batch_size 1 --accumulation_steps 8",
        {"padding": "pad-batch", "pooling": "last-token", "batch_size": 1, "grad_accum": 8},
        "a batch of one is never padded, so its last position is its last real token",
    ),
    BookRow(16, '--trainable_token_pos "flexible"', {"pooling": "last-token"}),
    BookRow(17, "--disable_causal_mask", {"attention": "bidirectional"}),
    BookRow(18, "--ignore_index 50256", note=IGNORE_INDEX_NOTE),
    BookRow(19, "--average_embeddings", {"pooling": "mean-all"}),
)

PRESETS = ("book-ablation",)


def preset_rows(name: str) -> tuple[dict[str, Any], list[SweepRow]]:
    """The base overrides and the rows of preset ``name``."""
    if name != "book-ablation":
        raise UsageError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    rows = [
        SweepRow(f"row{r.number:02d}", dict(r.overrides), note=r.note, label=str(r.number))
        for r in BOOK_ROWS
    ]
    return dict(BOOK_BASE), rows
