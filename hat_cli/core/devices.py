"""The one place a ``--device`` word becomes a torch device (training, search, test and latency share it)."""

from __future__ import annotations

from typing import Optional

import torch

from hat_cli.core.errors import HatError


def resolve_device(device: Optional[str], local_rank: int = 0) -> torch.device:
    """``device`` as a torch device; None = this process's GPU when there is one, else the CPU.

    ``local_rank`` is the process's GPU under torchrun: it also fills in a bare ``cuda``.
    """
    if device is None:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise HatError(f"Device '{device}' is not a torch device name (e.g. cpu, cuda, cuda:1).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HatError(f"Device '{device}' was requested but this machine has no usable CUDA GPU.")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev
