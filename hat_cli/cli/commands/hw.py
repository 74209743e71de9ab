"""`hat hw`: hardware backends (plugins)."""

from __future__ import annotations

import typer
from rich.table import Table

from hat_cli.cli.commands._options import JSON
from hat_cli.cli.console import console, emit_json, handle_errors, warn

app = typer.Typer(no_args_is_help=True)


@app.command("list")
@handle_errors
def list_hardware(json_output: bool = JSON) -> None:
    """List the hardware backends the installed plugins provide, and where each comes from.

    HAT_PLUGINS=name1,name2 limits which plugins (entry points of the group `hat`) are loaded.
    """
    # Lazily: the library loads when the command runs, not at start-up.
    from hat_cli.latency.backends import load_hardware

    registry = load_hardware()
    for failure in registry.failures:
        warn(f"hardware plugin '{failure.name}' ({failure.source}) was skipped: {failure.error}")
    rows = [b.to_dict() for b in sorted(registry.backends.values(), key=lambda b: b.name)]
    rows += [
        {"name": f.name, "description": "(failed to load)", "source": f.source, "error": f.error}
        for f in registry.failures
    ]
    if json_output:
        emit_json(rows)
        return
    table = Table(title="hardware backends")
    for column in ("name", "measures with", "description", "source"):
        table.add_column(column)
    for row in rows:
        if "error" in row:
            table.add_row(f"[red]{row['name']}[/]", "-", f"[red]failed: {row['error']}[/]", row["source"])
        else:
            description = row["description"] + (f" [yellow](unavailable: {row['unavailable']})[/]" if row["unavailable"] else "")
            table.add_row(row["name"], f"{row['runtime']} {row['device']} {row['precision']}", description, row["source"])
    console.print(table)
