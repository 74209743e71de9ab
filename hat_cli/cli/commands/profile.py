"""`hat profile`: size, FLOPs and (with --hw) latency of an architecture."""

from __future__ import annotations

from typing import Optional

import typer

from hat_cli.cli.commands._options import JSON, REMOTE, REMOTE_BACKEND, THREADS
from hat_cli.cli.console import console, emit_json, handle_errors, warn
from hat_cli.core.errors import HatError


@handle_errors
def profile(
    arch: str = typer.Argument(..., help="A SubTransformer YAML file or a published model name."),
    task: Optional[str] = typer.Option(
        None, "--task", "-t", help="Task whose dummy sentence length (30 WMT, 23 IWSLT) and qkv width to use; default: the zoo model's task, else wmt14.en-de."
    ),
    hw: Optional[str] = typer.Option(None, "--hw", help="Also measure encoder/decoder latency on this machine with hardware H's protocol (see `hat hw list`)."),
    predict: bool = typer.Option(False, "--predict", help="With --hw: also show H's latency predictor's number (fitted here, else the published one)."),
    threads: Optional[int] = THREADS,
    remote: Optional[str] = REMOTE,
    remote_backend: Optional[str] = REMOTE_BACKEND,
    as_json: bool = JSON,
) -> None:
    """Parameters and FLOPs with HAT's accounting (no embeddings, no final projection), beside torchprofile's
    trace of the model; with --hw, latency."""
    # Lazily: the library loads when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.model.counting import count_flops, count_params, traced_count

    task_info = resolve.task_of_architecture(arch, task)
    config = resolve.architecture(arch, task_info)
    space = resolve.search_space(None, task_info)
    params = count_params(config, space.shape.qkv_dim)
    flops = count_flops(config, task_info.dummy_length, space.shape.qkv_dim)
    # torchprofile's trace of our own model, beside HAT's accounting (which reproduces HAT's trace of its model).
    traced = traced_count(config, space.shape, task_info.dummy_length, task_info.timed_vocab_sizes, task_info.share_all_embeddings)
    result = {"arch": arch, "task": task_info.name, "params": params, "flops": flops, "length": task_info.dummy_length,
              "torchprofile": traced.to_dict()}
    console.print(
        f"[bold]{arch}[/]  params {params / 1e6:.2f} M  FLOPs {flops / 1e9:.2f} G, traced by torchprofile on our "
        f"model {traced.flops / 1e9:.2f} G (sentence of {task_info.dummy_length} tokens, {task_info.name})",
        highlight=False,
    )
    if predict and not hw:
        raise HatError("--predict needs --hw H (the hardware whose predictor to use).")
    if hw:
        result.update(_latency(config, hw, task_info, space, predict, resolve.meter_options(remote, remote_backend, threads)))
    if as_json:
        emit_json(result)


def _latency(config, hw: str, task_info, space, predict: bool, options) -> dict:
    """Measured (and with ``predict`` predicted) latency of ``config`` with hardware ``hw``'s meter and protocol."""
    # Lazily: the library loads when the command runs, not at start-up.
    from hat_cli import resolve

    backend = resolve.backend(hw)
    # Resolved before measuring, so that a missing predictor fails fast.
    predictor = resolve.predictor(None, backend, task_info, space, option=None) if predict else None
    warning = backend.foreign_device_warning()
    if warning:
        warn(warning)
    meter = resolve.meter(backend, task_info, options)
    try:
        measured = meter.measure(config)
    finally:
        meter.close()
    out = {"hardware": meter.hardware, "device": meter.describe_device(), "mode": meter.mode, "latency_ms": measured.to_dict()}
    line = (f"latency on {out['device']} ('{backend.name}' protocol, {meter.mode}): encoder {measured.encoder_ms:.2f} ms + "
            f"decoder {measured.decoder_ms:.2f} ms = {measured.total_ms:.2f} ms")
    if predictor is not None:
        predicted = float(predictor.predict([config])[0])
        out["predicted_latency_ms"] = predicted
        line += f"; predicted {predicted:.2f} ms ({100 * (predicted / measured.total_ms - 1):+.1f}%)"
    console.print(line, highlight=False)
    return out
