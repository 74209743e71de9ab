"""`hat train`."""

from __future__ import annotations

from hat_cli.console import handle_errors
from hat_cli.errors import NotImplementedYet


@handle_errors
def train_super() -> None:
    """(not implemented yet)"""
    raise NotImplementedYet("`hat train-super` is not implemented yet.")


@handle_errors
def train_sub() -> None:
    """(not implemented yet)"""
    raise NotImplementedYet("`hat train-sub` is not implemented yet.")
