"""`hat data`: download and preprocess a task into fairseq-format data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hat_cli.cli.commands._options import JSON, SEED, TASK
from hat_cli.cli.console import console, emit_json, handle_errors, make_progress


@handle_errors
def data(
    task: str = TASK,
    from_dir: Optional[Path] = typer.Option(
        None, "--from-dir", help="Use local files instead of downloading: the task's raw sources (archives or "
        "extracted), or already tokenized/BPE'd {train,valid,test}.{src,tgt} text (any subset of splits)."),
    srcdict: Optional[Path] = typer.Option(None, "--srcdict", help="Reuse this source dictionary (fairseq dict.<lang>.txt)."),
    tgtdict: Optional[Path] = typer.Option(None, "--tgtdict", help="Reuse this target dictionary (fairseq dict.<lang>.txt)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where to write the prepared data (default: data/<task>)."),
    preprocessed: bool = typer.Option(False, "--preprocessed", help="Download HAT's published binarized data instead of preprocessing."),
    mirror: Optional[str] = typer.Option(None, "--mirror", envvar="HAT_DATA_MIRROR",
                                         help="Fetch every source file as <MIRROR>/<file name> instead of its original URL."),
    bpe_merges: Optional[int] = typer.Option(None, "--bpe-merges", min=1, help="Override the recipe's number of BPE merges."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes for tokenization (default: one per CPU)."),
    seed: int = SEED,
    json_output: bool = JSON,
) -> None:
    """Download and preprocess a task: tokenize, BPE, dictionaries, fairseq binarized data."""
    # Lazily, here and in every command: the library loads when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.data.prepare import prepare_task

    the_task = resolve.task(task)
    with make_progress(transient=True) as progress:
        summary = prepare_task(
            the_task.name, data_dir=resolve.data_dir(data_dir, the_task), from_dir=from_dir, preprocessed=preprocessed, srcdict=srcdict,
            tgtdict=tgtdict, seed=seed, progress=progress, mirror=mirror, workers=workers, bpe_merges=bpe_merges,
        )
    _print_summary(summary)
    if json_output:
        emit_json(summary)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['task']} -> {summary['dir']} ({summary['source']}, {summary['seconds']:.1f}s)")
    table.add_column("split")
    table.add_column("sentences", justify="right")
    langs = list(summary["dictionaries"])
    for lang in langs:
        table.add_column(f"{lang} tokens", justify="right")
        table.add_column(f"{lang} <unk>", justify="right")
    for split, info in summary["splits"].items():
        row = [split, f"{info['sentences']:,}"]
        for lang in langs:
            row += [f"{info['tokens'][lang]:,}", f"{100 * info['unk_rate'][lang]:.3g}%"]
        table.add_row(*row)
    console.print(table)
    sizes = ", ".join(f"{lang} {d['size']}" for lang, d in summary["dictionaries"].items())
    console.print(f"dictionaries: {sizes}")
