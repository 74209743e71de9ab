"""`hat train-super` and `hat train-sub`: option parsing and display over ``hat_cli.training.loop``.

torch is imported inside the command functions (``hat --help`` must stay fast).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from hat_cli.cli.commands._options import DATA_DIR, DEVICE, JSON, TASK
from hat_cli.cli.console import console, emit_json, handle_errors, make_progress, warn
from hat_cli.core.errors import HatError

MAX_UPDATES = typer.Option(None, "--max-updates", help="Updates to train for (default: the task's published value).")
MAX_TOKENS = typer.Option(None, "--max-tokens", help="Tokens per micro-batch per GPU (default: the task's value).")
UPDATE_FREQ = typer.Option(None, "--update-freq", help="Micro-batches accumulated per update per GPU.")
LR = typer.Option(None, "--lr", help="Peak learning rate (cosine: max-lr; inverse_sqrt: lr).")
WARMUP = typer.Option(None, "--warmup-updates", help="Linear warmup updates.")
PRECISION = typer.Option(None, "--precision", help="bf16, fp16 or fp32 (default: bf16 on GPUs that support it, else fp32).")
CONFIG = typer.Option(None, "--config", help="YAML file of training options overriding the task defaults (CLI options win).")
SEED = typer.Option(None, "--seed", help="Random seed for init, data order and dropout (default 1); recorded in checkpoints.")
KEEP_LAST = typer.Option(None, "--keep-last", help="Training checkpoints to keep.")
RESUME = typer.Option(True, "--resume/--no-resume", help="Continue from the newest checkpoint in --save-dir that loads "
                      "(default); --no-resume starts over, moving an earlier run there into earlier-run-<time>/ (nothing is deleted).")
VALIDATE_EVERY = typer.Option(None, "--validate-every", help="Updates between validations (also at the end).")
SAVE_INTERVAL = typer.Option(None, "--save-interval", help="Updates between checkpoints (also at the end).")
SAVE_DIR = typer.Option(None, "--save-dir", help="Where checkpoints and the final model go.")


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


FINAL_MODEL = typer.Option(
    None, "--final-model",
    help="last: the model at the end of training (the default, unless the task averages checkpoints, as "
    "Multi30k's train-sub does); best: the kept checkpoint with the lowest validation loss, for corpora small "
    "enough to overfit.")


def _run_with_progress(run, title: str):
    # Lazily: torch.
    from hat_cli.training.loop import train

    show = _is_main_process()
    with make_progress() as progress:
        bar = progress.add_task(title, total=run.config.max_updates, info="", visible=show)

        def on_progress(p) -> None:
            if p.valid_loss is not None:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in p.valid_loss.items())
                progress.console.print(f"update {p.updates}: valid loss (bits/token) {shown}", highlight=False)
                return
            info = f"loss {p.loss:.3f}  lr {p.lr:.2e}  {p.tokens_per_second / 1000:.1f}k tok/s"
            progress.update(bar, completed=p.updates, info=info)

        result = train(run, on_progress)
    for warning in result.warnings:
        warn(warning)
    return result


def _report(result, json_output: bool, single_valid: bool) -> None:
    if not _is_main_process():
        return
    valid = result.valid_loss.get("arch") if single_valid else {k: result.valid_loss.get(k) for k in ("largest", "smallest")}
    doc = {
        "checkpoint": str(result.checkpoint),
        "updates": result.updates,
        "valid_loss": valid,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        "resumed_from": result.resumed_from,
        "train_seconds": round(result.train_seconds, 3),
        "target_tokens": result.target_tokens,
        "precision": result.precision,
        "world_size": result.world_size,
        "averaged_checkpoints": result.averaged,
        "final_checkpoint": result.final_checkpoint,
    }
    if json_output:
        emit_json(doc)
    shown = f"{valid:.3f}" if single_valid and valid is not None else ", ".join(
        f"{k} {v:.3f}" for k, v in (valid or {}).items() if v is not None)
    console.print(
        f"[green]done[/]: {result.updates} updates, valid loss {shown} bits/token, "
        f"{result.tokens_per_second / 1000:.1f}k target tokens/s ({result.precision}); model in {result.checkpoint}",
        highlight=False,
    )


@handle_errors
def train_super(
    task: str = TASK,
    data_dir: Optional[Path] = DATA_DIR,
    save_dir: Optional[Path] = SAVE_DIR,
    space: Optional[str] = typer.Option(None, "--space", help="Search space (built-in name or YAML; default: the task's)."),
    max_updates: Optional[int] = MAX_UPDATES,
    max_tokens: Optional[int] = MAX_TOKENS,
    update_freq: Optional[int] = UPDATE_FREQ,
    lr: Optional[float] = LR,
    warmup_updates: Optional[int] = WARMUP,
    precision: Optional[str] = PRECISION,
    config: Optional[Path] = CONFIG,
    seed: Optional[int] = SEED,
    keep_last: Optional[int] = KEEP_LAST,
    final_model: Optional[str] = FINAL_MODEL,
    sampling: Optional[str] = typer.Option(
        None, "--sampling",
        help="random: one uniformly drawn SubTransformer per update (HAT's); sandwich: the largest, the smallest "
        "and --sandwich-random random ones on every update's batches (ranks architectures better, costs more per update)."),
    sandwich_random: Optional[int] = typer.Option(None, "--sandwich-random", help="Random SubTransformers per sandwich update (default 2)."),
    sandwich_hand_scaled: Optional[int] = typer.Option(
        None, "--sandwich-hand-scaled",
        help="Plain (hand-scaled) Transformers of the space drawn per sandwich update, after the random ones (default 0; "
             "1 ordered Multi30k's architectures best, in H100 runs with two seeds, docs/METHOD.md §3.1)."),
    distill: Optional[float] = typer.Option(
        None, "--distill",
        help="With --sampling sandwich: weight (0-1) of in-place distillation from the largest SubTransformer for the others (0: off)."),
    resume: bool = RESUME,
    validate_every: Optional[int] = VALIDATE_EVERY,
    save_interval: Optional[int] = SAVE_INTERVAL,
    device: Optional[str] = DEVICE,
    json_output: bool = JSON,
) -> None:
    """Train a SuperTransformer: one uniformly sampled SubTransformer per update (docs/METHOD.md §3.1), or the sandwich rule with --sampling sandwich."""
    # Lazily: torch and the library load when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.training.config import resolve_training_config
    from hat_cli.training.loop import TrainRun

    the_task = resolve.task(task)
    cfg = resolve_training_config(the_task.name, "super", config, _overrides(
        max_updates=max_updates, max_tokens=max_tokens, update_freq=update_freq, lr=lr, warmup_updates=warmup_updates,
        precision=precision, seed=seed, keep_last=keep_last, validate_every=validate_every,
        save_interval_updates=save_interval, final_model=final_model, sampling=sampling,
        sandwich_random=sandwich_random, sandwich_hand_scaled=sandwich_hand_scaled, distill=distill))
    run = TrainRun(
        task=the_task, kind="super", config=cfg, space=resolve.search_space(space, the_task),
        data_dir=resolve.data_dir(data_dir, the_task), save_dir=resolve.train_save_dir(save_dir, the_task),
        device=device, resume=resume,
    )
    result = _run_with_progress(run, f"train-super {the_task.name}")
    _report(result, json_output, single_valid=False)


@handle_errors
def train_sub(
    task: str = TASK,
    arch: str = typer.Option(..., "--arch", help="SubTransformer architecture: a HAT YAML file or a published model name."),
    inside_supernet: bool = typer.Option(
        False, "--inside-supernet/--compact",
        help="Train as a slice of a freshly initialised super-shaped model (the published way, docs/METHOD.md §3.3) "
        "instead of as a compact model of its own size (default)."),
    data_dir: Optional[Path] = DATA_DIR,
    save_dir: Optional[Path] = SAVE_DIR,
    max_updates: Optional[int] = MAX_UPDATES,
    max_tokens: Optional[int] = MAX_TOKENS,
    update_freq: Optional[int] = UPDATE_FREQ,
    lr: Optional[float] = LR,
    warmup_updates: Optional[int] = WARMUP,
    precision: Optional[str] = PRECISION,
    config: Optional[Path] = CONFIG,
    seed: Optional[int] = SEED,
    keep_last: Optional[int] = KEEP_LAST,
    average_last: Optional[int] = typer.Option(None, "--average-last", help="Final model = mean of the last N checkpoints (IWSLT published: 10; Multi30k train-sub default: 4)."),
    final_model: Optional[str] = FINAL_MODEL,
    resume: bool = RESUME,
    validate_every: Optional[int] = VALIDATE_EVERY,
    save_interval: Optional[int] = SAVE_INTERVAL,
    device: Optional[str] = DEVICE,
    json_output: bool = JSON,
) -> None:
    """Train a searched SubTransformer from scratch with the task's published common.yml settings."""
    # Lazily: torch and the library load when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.training.config import resolve_training_config
    from hat_cli.training.loop import TrainRun

    the_task = resolve.task(task)
    the_arch = resolve.architecture(arch, the_task)
    cfg = resolve_training_config(the_task.name, "sub", config, _overrides(
        max_updates=max_updates, max_tokens=max_tokens, update_freq=update_freq, lr=lr, warmup_updates=warmup_updates,
        precision=precision, seed=seed, keep_last=keep_last, validate_every=validate_every,
        save_interval_updates=save_interval, average_last=average_last, final_model=final_model))
    if cfg.average_last > cfg.keep_last:
        raise HatError(f"--average-last {cfg.average_last} needs at least that many kept checkpoints (--keep-last is {cfg.keep_last}).")
    run = TrainRun(
        task=the_task, kind="sub", config=cfg, space=resolve.search_space(None, the_task), arch=the_arch,
        inside_supernet=inside_supernet, data_dir=resolve.data_dir(data_dir, the_task),
        save_dir=resolve.train_save_dir(save_dir, the_task, arch), device=device, resume=resume,
    )
    result = _run_with_progress(run, f"train-sub {resolve.architecture_name(arch)}")
    _report(result, json_output, single_valid=True)

