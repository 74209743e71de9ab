"""Learning-rate schedules exactly as HAT's fairseq 0.8 computes them (docs/METHOD.md §3.1).

A schedule is a pure function of the number of updates already done: the update that runs when
``num_updates == n`` uses ``schedule.lr(n)`` (fairseq sets the lr for update n+1 right after update n,
and starts at ``warmup_init_lr``). Being stateless is what makes resuming exact: the checkpoint only
needs the update count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hat_cli.core.errors import HatError


@dataclass(frozen=True)
class CosineSchedule:
    """fairseq ``cosine``: linear warmup ``warmup_init_lr`` -> ``max_lr``, then one cosine period down to ``min_lr``.

    ``period`` is ``max_updates - warmup_updates`` (t-mult 1, lr-shrink 1: HAT's WMT settings); past the
    period the cosine restarts, as fairseq's does.
    """

    max_lr: float
    min_lr: float
    warmup_updates: int
    max_updates: int
    warmup_init_lr: float = 1e-7
    lr_shrink: float = 1.0

    kind = "cosine"

    def __post_init__(self) -> None:
        if self.max_updates <= self.warmup_updates:
            raise HatError(
                f"The cosine schedule needs max-updates ({self.max_updates}) larger than warmup-updates ({self.warmup_updates})."
            )
        if self.max_lr < self.min_lr:
            raise HatError(f"The cosine schedule's peak lr {self.max_lr} is below its final lr {self.min_lr}.")

    @property
    def period(self) -> int:
        return self.max_updates - self.warmup_updates

    def lr(self, num_updates: int) -> float:
        if num_updates < self.warmup_updates:
            step = (self.max_lr - self.warmup_init_lr) / self.warmup_updates
            return self.warmup_init_lr + num_updates * step
        current = num_updates - self.warmup_updates
        cycle = math.floor(current / self.period)
        t_curr = current - self.period * cycle
        shrink = self.lr_shrink**cycle
        low, high = self.min_lr * shrink, self.max_lr * shrink
        return low + 0.5 * (high - low) * (1 + math.cos(math.pi * t_curr / self.period))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class InverseSqrtSchedule:
    """fairseq ``inverse_sqrt``: linear warmup ``warmup_init_lr`` -> ``lr``, then ``lr * sqrt(warmup) / sqrt(n)``."""

    max_lr: float
    warmup_updates: int
    warmup_init_lr: float = 1e-7

    kind = "inverse_sqrt"

    def __post_init__(self) -> None:
        if self.warmup_updates < 1:
            raise HatError("The inverse-sqrt schedule needs at least one warmup update.")

    def lr(self, num_updates: int) -> float:
        if num_updates < self.warmup_updates:
            step = (self.max_lr - self.warmup_init_lr) / self.warmup_updates
            return self.warmup_init_lr + num_updates * step
        return self.max_lr * math.sqrt(self.warmup_updates) / math.sqrt(num_updates)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


SCHEDULES = ("cosine", "inverse_sqrt")


def make_schedule(kind: str, *, lr: float, warmup_updates: int, max_updates: int, warmup_init_lr: float = 1e-7,
                  min_lr: float = 1e-7) -> CosineSchedule | InverseSqrtSchedule:
    """Build a schedule by name; ``lr`` is the peak learning rate for both kinds."""
    if kind == "cosine":
        return CosineSchedule(max_lr=lr, min_lr=min_lr, warmup_updates=warmup_updates, max_updates=max_updates,
                              warmup_init_lr=warmup_init_lr)
    if kind == "inverse_sqrt":
        return InverseSqrtSchedule(max_lr=lr, warmup_updates=warmup_updates, warmup_init_lr=warmup_init_lr)
    raise HatError(f"Unknown lr schedule '{kind}'; choose one of: {', '.join(SCHEDULES)}.")
