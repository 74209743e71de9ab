"""Latency on fresh samples: is the predictor as good as the device's own measurements?

    python bench/bench_latency_fresh.py --hw cpu --task demo --out /tmp/latcpu                 # this CPU
    python bench/bench_latency_fresh.py --hw cuda --task multi30k.de-en --out DIR              # one GPU
    python bench/bench_latency_fresh.py --hw cpu --task demo --train 30 --fresh 10 --repeat 5 --retest 5 --repetitions 5 --out DIR  # smoke

1. `collect` N training architectures (resumable CSV in OUT), 2. fit the default predictor (and HAT's MLP
for comparison, optional), 3. `collect` M *fresh* architectures from another seed and score the predictor
on them, 4. repeatability: (a) one architecture measured R times, (b) test-retest: K of the fresh
architectures measured a second time. Prints RMSE on fresh samples next to the measurement spread.

Everything measured goes to CSVs in OUT, so a run cut short (e.g. by a time limit) resumes when started
again with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", required=True, help="hardware backend, e.g. cpu or cuda")
    parser.add_argument("--task", required=True, help="task whose latency space and timed shape are measured")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--fresh", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20, help="measurements of one architecture for its spread")
    parser.add_argument("--retest", type=int, default=20, help="fresh architectures measured a second time")
    parser.add_argument("--repetitions", type=int, default=None, help="timed runs per measurement (default: backend's)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--instances", type=int, default=None, help="placements pooled per measurement (default: backend's)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the meter (default: backend's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hat-mlp", action="store_true", help="also fit HAT's MLP recipe for comparison")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def run(args) -> dict:
    import torch

    from hat_cli import resolve
    from hat_cli.latency import dataset as LD
    from hat_cli.latency.backends import MeterOptions
    from hat_cli.latency.meters import LatencyMeter
    from hat_cli.latency.predictors.base import LatencyRows, metrics
    from hat_cli.latency.predictors.fitting import fit_predictor, plot_predictions, repeat_spread

    backend = resolve.backend(args.hw)
    task = resolve.task(args.task)
    space = resolve.latency_space(task)
    meter = LatencyMeter(backend, task, space.shape, options=MeterOptions(threads=args.threads),
                         overrides={"repetitions": args.repetitions, "warmup": args.warmup, "instances": args.instances})
    protocol = meter.protocol
    args.out.mkdir(parents=True, exist_ok=True)
    meta = meter.csv_metadata()
    print(f"{meta['device']} | task {task.name} | {protocol.repetitions} timed runs x {protocol.instances} placements, {protocol.warmup} warm-up | torch {torch.__version__}", flush=True)

    def collect(name: str, seed: int, n: int):
        start = time.perf_counter()
        path = args.out / f"{name}.csv"
        result = LD.collect(path, space, meter.measure, n, seed, {**meta, "seed": str(seed)}, reference_every=50,
                            on_progress=lambda done, total, ms: print(f"  {name} {done}/{total} ({ms:.2f} ms)", flush=True) if done % 25 == 0 else None)
        print(f"{name}: {result.rows} rows ({result.new_rows} new, {time.perf_counter() - start:.0f} s); drift {result.drift()}", flush=True)
        return LatencyRows.from_table(LD.read_latency_csv(path)), result

    train, train_result = collect("train", args.seed, args.train)
    fresh, fresh_result = collect("fresh", args.seed + 1000, args.fresh)

    report = {"meta": meta, "train_rows": len(train), "fresh_rows": len(fresh), "drift_train": train_result.drift(), "drift_fresh": fresh_result.drift()}
    # The learning curve: the same predictor fitted on the first N training rows (a shorter collection).
    for n in sorted({n for n in (100, 200, 300, 400) if n < len(train)}):
        partial = fit_predictor(train.subset(range(n)), "layer-cost", backend.lat_norm, args.seed)
        report[f"layer-cost, first {n} rows"] = metrics(partial.predict_rows(fresh), fresh.total_ms)
    for kind in ["layer-cost"] + (["hat-mlp"] if args.hat_mlp else []):
        start = time.perf_counter()
        predictor = fit_predictor(train, kind, backend.lat_norm, args.seed)
        fit_s = time.perf_counter() - start
        predicted = predictor.predict_rows(fresh)
        report[kind] = metrics(predicted, fresh.total_ms) | {"fit_seconds": fit_s}
        if kind == "layer-cost":
            predictor.save(args.out / "predictor")
            plot_predictions(predicted, fresh.total_ms, args.out / "fresh_predicted_vs_measured.png", f"{backend.name} {task.name}: fresh samples")

    # (a) one architecture, measured again and again (a fresh random model each time, as collection does)
    config = LD.reference_config(space)
    repeats = [meter.measure(config).total_ms for _ in range(args.repeat)]
    report["repeat_one_arch"] = repeat_spread(repeats)
    # (b) test-retest on fresh architectures: the per-measurement noise over the whole range
    configs = [LD.sample_config(space, args.seed + 1000, i) for i in range(min(args.retest, len(fresh)))]
    again = np.array([meter.measure(c).total_ms for c in configs])
    first = fresh.total_ms[: len(configs)]
    diff = again - first
    report["retest"] = {"rmse_ms": float(np.sqrt(np.mean(diff**2) / 2)), "rel": float(np.sqrt(np.mean((diff / first) ** 2) / 2)),
                        "within_10pct_of_first": float(np.mean(np.abs(diff) / first <= 0.10)), "n": len(configs),
                        "first_ms": first.tolist(), "again_ms": again.tolist()}
    report["repeat_one_arch"]["values_ms"] = repeats
    (args.out / "results.json").write_text(json.dumps(report, indent=2))

    lc = report["layer-cost"]
    rep, rt = report["repeat_one_arch"], report["retest"]
    print()
    print(f"{'':32s} {'RMSE ms':>9s} {'MAPE':>7s} {'within10%':>9s} {'n':>4s}")
    print(f"{'layer-cost on fresh samples':32s} {lc['rmse_ms']:9.3f} {lc['mape']:7.2%} {lc['within_10pct']:9.1%} {lc['n']:4d}  (fit {lc['fit_seconds']:.2f} s)")
    if "hat-mlp" in report:
        m = report["hat-mlp"]
        print(f"{'hat-mlp on fresh samples':32s} {m['rmse_ms']:9.3f} {m['mape']:7.2%} {m['within_10pct']:9.1%} {m['n']:4d}  (fit {m['fit_seconds']:.1f} s)")
    print(f"{'repeatability, one arch (std)':32s} {rep['std_ms']:9.3f} {rep['rel_std']:7.2%} {'':9s} {rep['n']:4d}  (mean {rep['mean_ms']:.2f} ms)")
    print(f"{'test-retest noise (per meas.)':32s} {rt['rmse_ms']:9.3f} {rt['rel']:7.2%} {rt['within_10pct_of_first']:9.1%} {rt['n']:4d}")
    print(f"\nRMSE / repeatability std = {lc['rmse_ms'] / max(rep['std_ms'], 1e-12):.2f} (target <= 1.5); "
          f"RMSE / test-retest = {lc['rmse_ms'] / max(rt['rmse_ms'], 1e-12):.2f}; within ±10% = {lc['within_10pct']:.1%} (target >= 99%)")
    return report


if __name__ == "__main__":
    run(parse())
