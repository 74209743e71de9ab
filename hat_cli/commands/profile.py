"""`hat profile`: size, FLOPs and latency of an architecture."""

from __future__ import annotations

from hat_cli.console import handle_errors
from hat_cli.errors import NotImplementedYet


@handle_errors
def profile() -> None:
    """(not implemented yet)"""
    raise NotImplementedYet("`hat profile` is not implemented yet.")
