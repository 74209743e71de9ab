"""How much of the held-out error on HAT's published CSVs is drift in time, for each predictor? (issue 4)

HAT's CSVs are in measurement order, and neighbouring rows' residuals correlate (0.78-0.84): the device
drifted while it measured. This bench gives *both* predictors the same treatment: fit on the training
rows, smooth the training residuals over row position (a Gaussian kernel, --bandwidth rows) as a drift
estimate, refit on the targets minus that drift, and score held-out rows as prediction + drift at their
position. What remains is what each model gets wrong about architectures. This is an analysis, not a
product feature: at deployment nobody knows the drift of the moment.

    OMP_NUM_THREADS=2 python bench/bench_predictor_drift.py [--bandwidth 25] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from bench_predictor import DATA, LAT_NORM
from hat_cli.latency.predictors.base import LatencyRows, metrics, split_indices
from hat_cli.latency.predictors.fitting import fit_predictor
from hat_cli.latency.dataset import read_latency_csv


def smooth(positions: np.ndarray, values: np.ndarray, at: np.ndarray, bandwidth: float) -> np.ndarray:
    weights = np.exp(-0.5 * ((at[:, None] - positions[None, :]) / bandwidth) ** 2)
    return weights @ values / weights.sum(1)


def with_drift(rows: LatencyRows, train_idx, test_idx, kind: str, norm: float, bandwidth: float, seed: int):
    train, test = rows.subset(train_idx), rows.subset(test_idx)
    first = fit_predictor(train, kind, norm, seed)
    residual = train.total_ms - first.predict_rows(train)
    drift_train = smooth(train_idx.astype(float), residual, train_idx.astype(float), bandwidth)
    drift_test = smooth(train_idx.astype(float), residual, test_idx.astype(float), bandwidth)
    corrected = rows.subset(train_idx)
    corrected.decoder_ms = corrected.decoder_ms - drift_train  # total = encoder + decoder: shift one part
    second = fit_predictor(corrected, kind, norm, seed)
    return {"plain": metrics(first.predict_rows(test), test.total_ms),
            "drift_corrected": metrics(second.predict_rows(test) + drift_test, test.total_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandwidth", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for path in sorted(DATA.glob("*.csv")):
        rows = LatencyRows.from_table(read_latency_csv(path))
        norm = next(v for k, v in LAT_NORM.items() if k in path.name)
        train_idx, _, test_idx = split_indices(len(rows), args.seed)
        entry = {"file": path.name}
        for kind in ("layer-cost", "hat-mlp"):
            start = time.perf_counter()
            entry[kind] = with_drift(rows, np.asarray(train_idx), np.asarray(test_idx), kind, norm, args.bandwidth, args.seed)
            entry[kind]["seconds"] = time.perf_counter() - start
        for part in ("plain", "drift_corrected"):
            entry[f"ratio_{part}"] = entry["layer-cost"][part]["rmse_ms"] / entry["hat-mlp"][part]["rmse_ms"]
        results.append(entry)
        lc, mlp = entry["layer-cost"], entry["hat-mlp"]
        print(f"{path.name:36s} plain {lc['plain']['rmse_ms']:8.2f} / {mlp['plain']['rmse_ms']:8.2f} = {entry['ratio_plain']:.3f}   "
              f"drift-corrected {lc['drift_corrected']['rmse_ms']:8.2f} / {mlp['drift_corrected']['rmse_ms']:8.2f} = "
              f"{entry['ratio_drift_corrected']:.3f}", flush=True)
    for part in ("plain", "drift_corrected"):
        ratios = [e[f"ratio_{part}"] for e in results]
        print(f"{part}: max ratio {max(ratios):.3f}, geometric mean {math.exp(np.mean(np.log(ratios))):.3f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
