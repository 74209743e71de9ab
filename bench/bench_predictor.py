"""Default latency predictor (layer-cost) vs HAT's MLP recipe on HAT's published latency CSVs.

For each CSV in ../shared/data/hat-latency: the same seeded 80/10/10 split, both models fitted on the
80 %, RMSE / MAPE / within-10 % on the held-out 10 %, fit time. Also a noise-floor analysis: how much of
the residual is temporal drift (rows are in measurement order), which no architecture-only predictor
can remove. Prints a table; --out DIR also writes results.json.

    OMP_NUM_THREADS=2 python bench/bench_predictor.py [--seeds 1 2 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from hat_cli.latency.dataset import read_latency_csv
from hat_cli.latency.predictors.base import LatencyRows
from hat_cli.latency.predictors.fitting import fit_and_evaluate
from hat_cli.latency.predictors.layer_cost import averaged_terms

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hat-latency"
LAT_NORM = {"titanxp": 200.0, "xeon": 300.0, "raspberrypi": 5000.0}


def drift_floor(rows: LatencyRows) -> dict[str, float]:
    """Residual of a least-squares fit of the cost terms, without and with per-200-row offsets (drift)."""
    X = np.concatenate([np.ones((len(rows), 1)), averaged_terms(rows.features)], axis=1)
    y = rows.total_ms
    plain = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    blocks = np.eye(len(y) // 200 + 1)[np.arange(len(y)) // 200][:, 1:]
    Xb = np.concatenate([X, blocks], axis=1)
    with_drift = y - Xb @ np.linalg.lstsq(Xb, y, rcond=None)[0]
    return {
        "residual_rmse_ms": float(np.sqrt(np.mean(plain**2))),
        "residual_rmse_with_200row_offsets_ms": float(np.sqrt(np.mean(with_drift**2))),
        "residual_lag1_autocorr": float(np.corrcoef(plain[:-1], plain[1:])[0, 1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    files = sorted(args.data.glob("*.csv"))
    if not files:
        raise SystemExit(f"no CSVs in {args.data}")
    results = []
    for path in files:
        rows = LatencyRows.from_table(read_latency_csv(path))
        norm = next(v for k, v in LAT_NORM.items() if k in path.name)
        for seed in args.seeds:
            entry = {"file": path.name, "seed": seed}
            for kind in ("layer-cost", "hat-mlp"):
                start = time.perf_counter()
                report = fit_and_evaluate(rows, kind, seed, norm)
                entry[kind] = report.test | {"fit_seconds": time.perf_counter() - start}
            entry["ratio"] = entry["layer-cost"]["rmse_ms"] / entry["hat-mlp"]["rmse_ms"]
            entry["floor"] = drift_floor(rows)
            results.append(entry)
            print(f"{path.name} seed {seed}: ratio {entry['ratio']:.3f}", flush=True)

    print()
    print(f"{'file':36s} {'seed':>4s} {'layer-cost RMSE':>15s} {'hat-mlp RMSE':>12s} {'ratio':>6s} "
          f"{'MAPE lc/mlp':>13s} {'w10 lc/mlp':>11s} {'fit s lc/mlp':>13s} {'lag1 ac':>7s} {'floor*':>8s}")
    for e in results:
        lc, mlp, fl = e["layer-cost"], e["hat-mlp"], e["floor"]
        print(f"{e['file']:36s} {e['seed']:4d} {lc['rmse_ms']:15.2f} {mlp['rmse_ms']:12.2f} {e['ratio']:6.3f} "
              f"{lc['mape']:6.2%}/{mlp['mape']:6.2%} {lc['within_10pct']:5.1%}/{mlp['within_10pct']:5.1%} "
              f"{lc['fit_seconds']:6.2f}/{mlp['fit_seconds']:6.1f} {fl['residual_lag1_autocorr']:7.2f} "
              f"{fl['residual_rmse_with_200row_offsets_ms']:8.2f}")
    ratios = [e["ratio"] for e in results]
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\nmax ratio {max(ratios):.3f} (target <= 1.05), geometric mean {geo:.3f} (target <= 0.9), "
          f"max layer-cost fit {max(e['layer-cost']['fit_seconds'] for e in results):.2f} s (target <= 10 s)")
    print("floor* = in-sample residual RMSE once each 200-row stretch gets its own offset: what drift costs.")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps({"results": results, "geomean_ratio": geo}, indent=2))


if __name__ == "__main__":
    main()
