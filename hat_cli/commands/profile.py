"""`hat profile`: size, FLOPs and (with --hw) latency of an architecture."""

from __future__ import annotations

from typing import Optional

import typer

from hat_cli.commands._options import JSON
from hat_cli.console import console, emit_json, handle_errors


@handle_errors
def profile(
    arch: str = typer.Argument(..., help="A SubTransformer YAML file or a published model name."),
    task: Optional[str] = typer.Option(
        None, "--task", "-t", help="Task whose dummy sentence length (30 WMT, 23 IWSLT) and qkv width to use; default: the zoo model's task, else wmt14.en-de."
    ),
    as_json: bool = JSON,
) -> None:
    """Parameters and FLOPs with HAT's accounting (no embeddings, no final projection)."""
    from hat_cli.profiling import count_flops, count_params
    from hat_cli.space import SearchSpace, load_architecture
    from hat_cli.tasks import get_task

    config = load_architecture(arch)
    task_name = task or _zoo_task(arch) or "wmt14.en-de"
    task_info = get_task(task_name)
    space = SearchSpace.builtin(task_info.space)
    if not config.fits(space.shape):
        from hat_cli.errors import HatError

        raise HatError(f"The architecture does not fit the {task_name} SuperTransformer ({space.name}).")
    params = count_params(config, space.shape.qkv_dim)
    flops = count_flops(config, task_info.dummy_length, space.shape.qkv_dim)
    result = {"arch": arch, "task": task_name, "params": params, "flops": flops, "length": task_info.dummy_length}
    console.print(
        f"[bold]{arch}[/]  params {params / 1e6:.2f} M  FLOPs {flops / 1e9:.2f} G "
        f"(sentence of {task_info.dummy_length} tokens, {task_name})",
        highlight=False,
    )
    if as_json:
        emit_json(result)


def _zoo_task(arch: str) -> Optional[str]:
    """The task of a published model name, or None for files and unknown names."""
    if arch.endswith((".yml", ".yaml")):
        return None
    try:
        from hat_cli import zoo
    except ImportError:
        return None
    try:
        return zoo.resolve(arch).task
    except Exception:
        return None
