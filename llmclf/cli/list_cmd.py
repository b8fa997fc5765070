"""``llmclf list``: what is registered."""

from __future__ import annotations

import click

from ..registry import ALL


@click.command("list")
@click.argument(
    "kind",
    required=False,
    type=click.Choice([*sorted(ALL), "long-texts"]),  # as the option is spelled: --long-texts
)
def list_command(kind: str | None) -> None:
    """List registered datasets, balancers, padding policies and backbones."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True)
    kind = kind.replace("-", "_") if kind else None
    for name in [kind] if kind else list(ALL):
        registry = ALL[name]
        table = Table(title=name, title_justify="left", show_edge=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("from", style="dim")
        for entry in registry.entries():
            table.add_row(escape(entry.name), escape(entry.description), escape(entry.source))
        console.print(table)
