"""`hat data`: download and preprocess a task."""

from __future__ import annotations

from hat_cli.console import handle_errors
from hat_cli.errors import NotImplementedYet


@handle_errors
def data() -> None:
    """Download and preprocess a task (not implemented yet)."""
    raise NotImplementedYet("`hat data` is not implemented yet.")
