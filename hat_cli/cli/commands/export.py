"""`hat export`: a model or an architecture as ONNX graphs (encoder + one incremental decoder step)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hat_cli.cli.commands._options import JSON, SEED, TASK
from hat_cli.cli.console import console, emit_json, handle_errors


@handle_errors
def export(
    model_or_arch: str = typer.Argument(..., help="A model directory or published name (trained weights), or an architecture YAML (random weights)."),
    task: str = TASK,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for encoder.onnx, decoder.onnx and config.json."),
    arch: Optional[str] = typer.Option(None, "--arch", help="SubTransformer to export from a SuperTransformer directory (YAML file or zoo name)."),
    check: bool = typer.Option(True, "--check/--no-check", help="Run the export in ONNX Runtime and compare its log-probabilities with PyTorch's."),
    seed: int = SEED,
    json_output: bool = JSON,
) -> None:
    """Write the model as ONNX: encoder.onnx, decoder.onnx (one incremental step, self-attention cache in and out) and config.json."""
    # Lazily: torch and the exporter load when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.export.onnx import export_onnx
    from hat_cli.export.runtime import compare_with_pytorch, load_onnxruntime

    the_task = resolve.task(task)
    model, config, weights, label = resolve.export_source(model_or_arch, the_task, arch, seed)
    if check:
        load_onnxruntime()  # before writing anything: says how to install it
    doc = export_onnx(model, config, out, {"task": the_task.name, "weights": weights, "source": label})
    diff = compare_with_pytorch(model, config, out) if check else None
    files = [str(out / doc["encoder"]["file"]), str(out / doc["decoder"]["file"]), str(out / "config.json")]
    checked = f"; ONNX Runtime vs PyTorch log-probs differ by at most {diff:.2e}" if diff is not None else ""
    console.print(f"{label} ({weights} weights) -> {out}/encoder.onnx, decoder.onnx, config.json (opset {doc['opset']}){checked}", highlight=False)
    if json_output:
        emit_json({"dir": str(out), "files": files, "opset": doc["opset"], "max_abs_diff": diff, "weights": weights,
                   "task": the_task.name, "arch": config.to_hat_keys()})
