"""Numbers checked where they enter: an option, a file, a plugin. NaN, infinity and out-of-range values
are refused with a sentence that names where they came from, instead of flowing on into a silent wrong
result (a NaN normalisation gives a NaN predictor; an infinite budget is no budget)."""

from __future__ import annotations

import math
from typing import Optional

from hat_cli.core.errors import HatError


def finite(value: float, name: str) -> float:
    if value is None or not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise HatError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def positive(value: float, name: str) -> float:
    """A finite number above zero."""
    value = finite(value, name)
    if value <= 0:
        raise HatError(f"{name} must be positive, got {value:g}.")
    return value


def at_least(value: Optional[int], minimum: int, name: str) -> Optional[int]:
    """An optional whole number of at least ``minimum`` (None passes: the default applies)."""
    if value is not None and value < minimum:
        raise HatError(f"{name} must be at least {minimum}, got {value}.")
    return value
