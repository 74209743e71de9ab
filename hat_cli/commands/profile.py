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
    hw: Optional[str] = typer.Option(None, "--hw", help="Also measure encoder/decoder latency on this machine with hardware H's protocol (see `hat hw list`)."),
    predict: bool = typer.Option(False, "--predict", help="With --hw: also show H's latency predictor's number (fitted here, else the published one)."),
    as_json: bool = JSON,
) -> None:
    """Parameters and FLOPs with HAT's accounting (no embeddings, no final projection); with --hw, latency."""
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
    if predict and not hw:
        from hat_cli.errors import HatError

        raise HatError("--predict needs --hw H (the hardware whose predictor to use).")
    if hw:
        result.update(_latency(config, hw, task_info, space, predict))
    if as_json:
        emit_json(result)


def _latency(config, hw: str, task_info, space, predict: bool) -> dict:
    """Measured (and with ``predict`` predicted) latency of ``config`` with hardware ``hw``'s protocol."""
    from hat_cli.errors import HatError
    from hat_cli.hardware import get_backend
    from hat_cli.latency import LatencyMeter

    backend = get_backend(hw)
    predictor = None
    if predict:  # resolve before measuring so a missing predictor fails fast
        predictor = backend.default_predictor(task_info.name)
        if predictor is None:
            raise HatError(
                f"No latency predictor for '{hw}' on {task_info.name}; make one with "
                f"`hat collect-latency --hw {hw} --task {task_info.name}` then `hat fit-predictor --hw {hw} --task {task_info.name}`."
            )
    warning = backend.foreign_device_warning()
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    meter = LatencyMeter(backend, task_info, space.shape)
    measured = meter.measure(config)
    out = {"hardware": backend.name, "device": meter.describe_device(), "mode": meter.mode, "latency_ms": measured.to_dict()}
    line = (f"latency on {out['device']} ('{backend.name}' protocol, {meter.mode}): encoder {measured.encoder_ms:.2f} ms + "
            f"decoder {measured.decoder_ms:.2f} ms = {measured.total_ms:.2f} ms")
    if predictor is not None:
        predicted = float(predictor.predict([config])[0])
        out["predicted_latency_ms"] = predicted
        line += f"; predicted {predicted:.2f} ms ({100 * (predicted / measured.total_ms - 1):+.1f}%)"
    console.print(line, highlight=False)
    return out


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
