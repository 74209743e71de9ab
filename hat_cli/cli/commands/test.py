"""`hat test`: translate a split with beam search and score it as HAT did (docs/METHOD.md §7)."""

from __future__ import annotations

from typing import Optional

import typer

from hat_cli.cli.commands._options import DATA_DIR, DEVICE, JSON, TASK
from hat_cli.cli.console import console, emit_json, handle_errors, make_progress, warn


@handle_errors
def test(
    model: str = typer.Argument(..., help="Model directory (model.safetensors + config.json) or a published name."),
    task: str = TASK,
    data_dir: Optional[str] = DATA_DIR,
    subset: str = typer.Option("test", "--subset", help="Split to translate: test or valid."),
    beam: Optional[int] = typer.Option(None, "--beam", help="Beam size (default: the task's published one, 4 WMT / 5 IWSLT)."),
    lenpen: Optional[float] = typer.Option(None, "--lenpen", help="Length penalty: scores are divided by length**lenpen (default: 0.6 WMT / 1.0 IWSLT)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Sentences per batch (HAT used 128)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Batch by padded source/target tokens instead of --batch-size."),
    max_len_a: float = typer.Option(0.0, "--max-len-a", help="Longest output is a*source_length + b tokens."),
    max_len_b: int = typer.Option(200, "--max-len-b", help="Longest output is a*source_length + b tokens."),
    arch: Optional[str] = typer.Option(None, "--arch", help="SubTransformer to run inside a SuperTransformer directory (YAML file or zoo name)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Hypothesis file (default runs/test/<model>.<task>.<subset>.hyp.<lang>)."),
    device: Optional[str] = DEVICE,
    precision: str = typer.Option("fp32", "--precision", help="fp32 (as HAT tested), bf16 or fp16 weights."),
    json_output: bool = JSON,
) -> None:
    """Translate the test set (batched beam search) and report tokenized BLEU and SacreBLEU."""
    # Lazily: torch and the library load when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.evaluation.translate import evaluate

    the_task = resolve.task(task)
    config = resolve.architecture(arch) if arch is not None else None
    with make_progress(transient=True) as progress:
        model_dir, label = resolve.model_dir(model, progress)
        result = evaluate(
            model_dir,
            the_task,
            data_dir=resolve.data_dir(data_dir, the_task),
            subset=subset,
            beam=beam,
            lenpen=lenpen,
            batch_size=batch_size,
            max_tokens=max_tokens,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            arch=config,
            output=output,
            device=device,
            precision=precision,
            progress=progress,
            label=label,
        )
    settings = result.settings
    console.print(
        f"{result.model} on {result.task} {result.subset}: {result.sentences} sentences in {result.seconds:.1f}s "
        f"(beam {settings['beam']}, lenpen {settings['lenpen']}, {settings['device']}, {settings['precision']})",
        highlight=False,
    )
    console.print(f"[bold]BLEU[/] {result.bleu:.2f}   {result.bleu_detail}", highlight=False)
    console.print(f"[bold]SacreBLEU[/] {result.sacrebleu:.2f}   {result.sacrebleu_signature}", highlight=False)
    console.print(f"hypotheses: {result.hypotheses}", highlight=False)
    for warning in result.warnings:
        warn(warning)
    if json_output:
        emit_json(result.to_json())
