"""`hat latency`."""

from __future__ import annotations

from hat_cli.console import handle_errors
from hat_cli.errors import NotImplementedYet


@handle_errors
def collect_latency() -> None:
    """(not implemented yet)"""
    raise NotImplementedYet("`hat collect-latency` is not implemented yet.")


@handle_errors
def fit_predictor() -> None:
    """(not implemented yet)"""
    raise NotImplementedYet("`hat fit-predictor` is not implemented yet.")
