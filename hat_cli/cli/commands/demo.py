"""`hat demo`: the whole pipeline on the offline demo task."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hat_cli.cli.commands._options import JSON, SEED
from hat_cli.cli.console import console, emit_json, handle_errors


@handle_errors
def demo(
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where everything goes (default runs/demo)."),
    super_updates: int = typer.Option(300, "--super-updates", help="SuperTransformer training updates."),
    sub_updates: int = typer.Option(800, "--sub-updates", help="Updates to train the searched winner."),
    samples: int = typer.Option(30, "--samples", help="Architectures measured for the latency predictor."),
    hw: str = typer.Option("cpu", "--hw", help="Hardware backend that measures every latency (see `hat hw list`): cpu, onnxruntime, a plugin's; remote with $HAT_REMOTE."),
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """The whole HAT pipeline on the offline demo task, on this CPU: data, SuperTransformer, latency,
    predictor, search under a budget from the measured range, training and testing the winner, and a
    measurement of its latency."""
    # Lazily: the library loads when the command runs, not at start-up.
    from hat_cli.demo import DemoSettings, budget_line, default_workdir, run_demo

    settings = DemoSettings(
        workdir=workdir or default_workdir(), seed=seed, super_updates=super_updates, sub_updates=sub_updates,
        latency_samples=samples, hardware=hw,
    )
    console.print(f"[bold]hat demo[/]: the HAT pipeline on the generated demo task, in {settings.workdir}")

    def show(step) -> None:
        console.print(f"  [green]✓[/] {step.name:<32} {step.seconds:6.1f} s   [dim]{' '.join(step.command)}[/]", highlight=False)

    with console.status("working (each step is a real `hat` command)..."):
        summary = run_demo(settings, on_step=show)
    console.print(f"[bold]BLEU {summary['bleu']:.1f}[/] on the demo test set; {budget_line(summary)}", highlight=False)
    console.print(f"winner: {summary['config']}  (total {summary['seconds']:.0f} s)", highlight=False)
    if as_json:
        emit_json(summary)
