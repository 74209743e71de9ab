"""`hat demo`."""

from __future__ import annotations

from hat_cli.console import handle_errors
from hat_cli.errors import NotImplementedYet


@handle_errors
def demo() -> None:
    """(not implemented yet)"""
    raise NotImplementedYet("`hat demo` is not implemented yet.")
