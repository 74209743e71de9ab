"""`hat collect-latency` and `hat fit-predictor`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hat_cli.cli.commands._options import JSON, REMOTE, REMOTE_BACKEND, THREADS
from hat_cli.cli.console import console, emit_json, handle_errors, make_progress, warn
from hat_cli.core.errors import HatError


@handle_errors
def collect_latency(
    hw: str = typer.Option(..., "--hw", help="Hardware backend (see `hat hw list`)."),
    task: str = typer.Option(..., "--task", "-t", help="Task whose latency space, dummy length and vocabulary are used."),
    samples: int = typer.Option(..., "--samples", "-n", help="Sampled architectures the CSV should hold (a resumed run continues up to this many)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="CSV to append to (default: latency_dataset/<task>_<hw>.csv)."),
    seed: int = typer.Option(1, "--seed", help="Sample i is drawn from (seed, i), so resuming continues the same sequence."),
    reference_every: int = typer.Option(
        10, "--reference-every",
        help="Re-measure a fixed reference architecture every K samples (0 = off): it exposes drift, and its spread and latency set the search's margin and let --verify take drift out."),
    mode: Optional[str] = typer.Option(None, "--mode", help="inference (eval + torch.inference_mode, default) or published (HAT's training mode + autograd)."),
    repetitions: Optional[int] = typer.Option(None, "--repetitions", help="Timed runs per architecture (default: the backend's protocol)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed warm-up runs (default: the backend's protocol)."),
    instances: Optional[int] = typer.Option(None, "--instances", help="Model instances per architecture, each placed elsewhere in memory, their runs pooled (default: the backend's protocol)."),
    threads: Optional[int] = THREADS,
    remote: Optional[str] = REMOTE,
    remote_backend: Optional[str] = REMOTE_BACKEND,
    json_output: bool = JSON,
) -> None:
    """Measure randomly sampled SubTransformers with hardware H's meter and protocol and append them to a CSV."""
    # Lazily: the library loads when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.latency import dataset

    if samples < 1:
        raise HatError(f"--samples must be at least 1, got {samples}.")
    if repetitions is not None and repetitions < 1:
        raise HatError(f"--repetitions must be at least 1, got {repetitions}.")
    if warmup is not None and warmup < 0:
        raise HatError(f"--warmup must be 0 or more, got {warmup}.")
    if instances is not None and instances < 1:
        raise HatError(f"--instances must be at least 1, got {instances}.")
    backend = resolve.backend(hw)
    the_task = resolve.task(task)
    warning = backend.foreign_device_warning()
    if warning:
        warn(warning)
    space = resolve.latency_space(the_task)
    meter = resolve.meter(backend, the_task, resolve.meter_options(remote, remote_backend, threads, mode),
                          {"repetitions": repetitions, "warmup": warmup, "instances": instances})
    path = resolve.latency_csv(csv_path, backend, the_task, meter.hardware)
    metadata = {**meter.csv_metadata(), "seed": str(seed)}
    console.print(f"measuring on {metadata['device']} with '{meter.hardware}' ({meter.mode} mode) -> {path}", highlight=False)
    try:
        with make_progress() as progress:
            bar = progress.add_task("collect-latency", total=samples, info="")

            def on_progress(done: int, total: int, latency_ms):
                progress.update(bar, completed=done, info=f"last {latency_ms:.1f} ms" if latency_ms else "")

            result = dataset.collect(
                path, space, meter.measure, samples, seed, metadata,
                reference_every=reference_every, on_progress=on_progress,
            )
    finally:
        meter.close()
    drift = result.drift()
    if drift and drift["reference_spread_pct"] > 5.0:
        warn(f"the reference architecture varied by {drift['reference_spread_pct']:.1f}% during collection (drift).")
    console.print(f"{result.rows} architectures in {result.csv} ({result.new_rows} rows written now)", highlight=False)
    if json_output:
        emit_json({"csv": str(result.csv), "rows": result.rows, "new_rows": result.new_rows, "hardware": meter.hardware,
                   "task": the_task.name, "seed": seed, "device": metadata["device"], "mode": meter.mode, "drift": drift})


@handle_errors
def fit_predictor(
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Latency CSV (HAT's or hat's)."),
    hw: Optional[str] = typer.Option(None, "--hw", help="With --task: use latency_dataset/<task>_<hw>.csv."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="With --hw: use latency_dataset/<task>_<hw>.csv."),
    test: Optional[Path] = typer.Option(None, "--test", help="Fresh samples measured apart: fit on every row of --dataset and evaluate on this CSV."),
    model: str = typer.Option("layer-cost", "--model", help="layer-cost (default: ridge on per-layer cost terms) or hat-mlp (HAT's recipe)."),
    seed: int = typer.Option(1, "--seed", help="Seed of the 80/10/10 split and of the model."),
    out: Optional[Path] = typer.Option(None, "--out", help="Predictor directory (default: next to the dataset, <name>.predictor)."),
    lat_norm: Optional[float] = typer.Option(None, "--lat-norm", help="HAT's latency normalisation in ms (default: the hardware's, else 300)."),
    json_output: bool = JSON,
) -> None:
    """Fit a latency predictor on a seeded 80/10/10 split (or on every row, with --test) and report held-out RMSE, MAPE and within-10%."""
    # Lazily: the library loads when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.latency.dataset import read_latency_csv
    from hat_cli.latency.predictors import fitting
    from hat_cli.latency.predictors.base import LatencyRows, predictor_kind

    kind = predictor_kind(model)
    dataset, out, backend = resolve.fit_inputs(dataset, hw, task, out)
    table = read_latency_csv(dataset)
    rows = LatencyRows.from_table(table)
    test_rows = LatencyRows.from_table(read_latency_csv(test)) if test else None
    norm = resolve.lat_norm(lat_norm, backend, dataset)
    steps = kind.fit_steps
    with make_progress(transient=True) as progress:
        # The fit, then the cross-validation's folds: what the search's safety margin needs (search/budget.py)
        # is the error on rows a fit did not see, over every row, and how much the device itself varied.
        bar = progress.add_task(f"fit {model}", total=steps * (1 + fitting.CV_FOLDS), info="")
        report = fitting.fit_and_evaluate(rows, model, seed, norm, test_rows, progress=lambda done, total: progress.update(bar, completed=done))
        progress.update(bar, description=f"cross-validate {model}", completed=steps)
        cv = fitting.cross_validated_error(rows, model, seed, norm, progress=lambda fold, done, total: progress.update(
            bar, completed=steps * (1 + fold) + done, info=f"fold {fold + 1}/{fitting.CV_FOLDS}"))
    report.predictor.training.update({"dataset": str(dataset), "test_dataset": str(test) if test else None, "holdout": report.holdout,
                                      "test": report.test, "cv": cv, "reference": table.reference_record()})
    report.predictor.save(out)
    plot = Path(out) / fitting.PLOT_FILE
    title = f"{model} on {Path(test or dataset).name}: RMSE {report.test['rmse_ms']:.2f} ms, within 10% {report.test['within_10pct']:.1%}"
    plotted = fitting.plot_predictions(report.test_predicted, report.test_measured, plot, title)
    t = report.test
    console.print(
        f"{model}: RMSE {t['rmse_ms']:.3f} ms, MAPE {t['mape']:.2%}, within ±10% {t['within_10pct']:.1%} on {t['n']} {'rows of ' + Path(test).name if test else 'held-out rows'} "
        f"(fit {report.seconds:.2f} s) -> {out}",
        highlight=False,
    )
    if json_output:
        emit_json({"predictor": str(out), "model": model, "test": t, "holdout": report.holdout, "split": report.split,
                   "seed": seed, "fit_seconds": report.seconds, "plot": str(plot) if plotted else None, "lat_norm": norm})

