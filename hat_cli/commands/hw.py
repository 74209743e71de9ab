"""`hat hw`: hardware backends."""

from __future__ import annotations

import typer

from hat_cli.console import handle_errors
from hat_cli.errors import NotImplementedYet

app = typer.Typer(no_args_is_help=True)


@app.command("list")
@handle_errors
def list_hardware() -> None:
    """List the hardware plugins (not implemented yet)."""
    raise NotImplementedYet("`hat hw list` is not implemented yet.")
