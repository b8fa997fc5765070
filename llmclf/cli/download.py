"""``llmclf download``: fetch datasets, tokenizer files and backbone weights ahead of time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import UsageError

if TYPE_CHECKING:
    from ..assets import Asset
    from ..downloads import CachedFile


@click.command("download")
@click.argument("names", nargs=-1)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache directory to fill or list [$LLMCLF_HOME, else ~/.cache/llmclf].",
)
@click.option(
    "--list",
    "show",
    is_flag=True,
    help="Show what is cached, where, and its size; download nothing.",
)
def download_command(names: tuple[str, ...], home: Path | None, show: bool) -> None:
    """Download datasets, tokenizer files and backbone weights by name, ahead of time.

    NAMES are registered datasets and backbones (see `llmclf list`) and the tokenizer
    `gpt2-bpe`, e.g. `llmclf download sms gpt2-bpe gpt2-small`. Files are checked against
    their pinned sha256; ones already cached are checked, not downloaded again. LLMCLF_MIRROR
    (a base URL laid out like LLMCLF_HOME) and HF_ENDPOINT (Hugging Face files) name mirrors.
    """
    from .. import downloads, settings

    root = home if home is not None else settings.home()
    if show:
        _print_cached(downloads.cached(names or None, root), root)
        return
    if not names:
        items = downloads.downloadables()
        known = ", ".join(sorted(i.name for i in items if i.assets))
        empty = ", ".join(sorted(i.name for i in items if not i.assets))
        none = f"; nothing to download for {empty}" if empty else ""
        raise UsageError(f"name what to download (known: {known}{none}), or pass --list")
    for item in downloads.resolve(names):
        if not item.assets:
            click.echo(f"{item.name}: nothing to download ({item.kind} with no declared files)")

    def report(asset: Asset, path: Path) -> None:
        click.echo(f"{path} ({_size(path.stat().st_size)})")

    downloads.download(names, root, report=report)


def _size(size: int | None) -> str:
    from rich.filesize import decimal

    return "-" if size is None else decimal(size)


def _print_cached(rows: list[CachedFile], root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    table = Table(title=f"{root}", title_justify="left", show_edge=False)
    table.add_column("name", style="bold")
    table.add_column("kind")
    table.add_column("file", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("state")
    for row in rows:
        if row.size is None:  # the declared size, when known
            shown = "-" if row.asset.size is None else f"({_size(row.asset.size)})"
        else:
            shown = _size(row.size)
        table.add_row(row.name, row.kind, row.asset.relpath, shown, row.state)
    console.print(table)
    total = sum(row.size or 0 for row in rows)
    count = sum(row.size is not None for row in rows)
    files = "file" if len(rows) == 1 else "files"
    console.print(f"{count} of {len(rows)} {files} cached, {_size(total)} in {root}")
