"""`hat zoo`: the published models."""

from __future__ import annotations

import typer

from hat_cli.console import handle_errors
from hat_cli.errors import NotImplementedYet

app = typer.Typer(no_args_is_help=True)


@app.command("list")
@handle_errors
def list_models() -> None:
    """List the published models (not implemented yet)."""
    raise NotImplementedYet("`hat zoo list` is not implemented yet.")
