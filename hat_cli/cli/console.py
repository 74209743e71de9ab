"""Output conventions shared by every command (CLI.md): Rich on stderr, one JSON document on stdout,
progress bars with ETA, and "exit 2 with one sentence" for bad input.

Kept free of torch so that `hat --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from typing import Any, Callable

from rich.console import Console

from hat_cli.core.errors import HatError, describe_os_error

console = Console(stderr=True)


def debug_enabled() -> bool:
    return os.environ.get("HAT_DEBUG", "") not in ("", "0")


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fail(message: str) -> None:
    """Print one sentence and exit 2 (the CLI's only way to reject input)."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(2)


def warn(message: str) -> None:
    """One warning sentence on stderr, not wrapped (a path in it stays whole, for eyes and for grep)."""
    console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def handle_errors(func: Callable) -> Callable:
    """Turn HatError and OS errors (a sentence naming the path) into exit code 2; HAT_DEBUG=1 shows the traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except HatError as exc:
            if debug_enabled():
                console.print_exception()
            fail(str(exc))
        except OSError as exc:
            if debug_enabled():
                console.print_exception()
            fail(describe_os_error(exc))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]; everything written so far is complete and can be resumed.")
            raise SystemExit(130)

    return wrapper


def make_progress(transient: bool = False):
    """A Rich progress bar with ETA, on stderr."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=os.environ.get("HAT_NO_PROGRESS", "") not in ("", "0"),
    )


MAX_LATENCY_MS = 86_400_000.0  # one day: anything longer is a typo, not a budget
_LATENCY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(ms|s)?\s*$", re.IGNORECASE)


def parse_latency(text: str) -> float:
    """'200ms', '3.5s', '0.2s' or a bare number of milliseconds -> milliseconds."""
    match = _LATENCY_RE.match(str(text))
    if not match:
        raise HatError(f"Latency '{text}' is not understood; write it like 200ms, 3.5s or 150 (milliseconds).")
    value = float(match.group(1))
    unit = (match.group(2) or "ms").lower()
    value = value * 1000.0 if unit == "s" else value
    if value <= 0:
        raise HatError(f"Latency '{text}' must be positive.")
    if not math.isfinite(value) or value > MAX_LATENCY_MS:
        raise HatError(f"Latency '{text}' is out of range; budgets go up to one day (86400s).")
    return value
