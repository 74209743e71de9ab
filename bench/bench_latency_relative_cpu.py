"""Exploration for issue 4: would latency *relative to an interleaved reference* be predictable on a noisy CPU?

On the shared 2-core VM the reference architecture drifted by 54% over a 300-sample collection, so absolute
milliseconds measured minutes apart disagree by ~16% and no predictor can beat that. Here every sample is
timed between two measurements of the fixed reference architecture (ref, sample, ref, sample, ref, ...: each
reference run serves both neighbours) and stored as the ratio sample / mean(ref before, ref after). The
layer-cost predictor is fitted on the ratios of N architectures and scored on M fresh ones; repeatability is
measured the same way (one architecture R times, and K fresh architectures a second time later).

    OMP_NUM_THREADS=2 python bench/bench_latency_relative_cpu.py --out DIR [--task demo --train 200 --fresh 60]

Nothing in `hat` uses this yet: it measures whether a relative protocol is worth building.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="demo")
    p.add_argument("--hw", default="cpu")
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--fresh", type=int, default=60)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--retest", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args()


class RelativeMeter:
    """Times architectures between runs of a fixed reference; returns (sample ms, reference ms)."""

    def __init__(self, meter, reference):
        self.meter, self.reference = meter, reference
        self.reference_model = meter.build(reference)
        self.last_reference = self._reference()

    def _reference(self) -> float:
        return self.meter.measure(self.reference, self.reference_model).total_ms

    def measure(self, config) -> tuple[float, float]:
        before = self.last_reference
        sample = self.meter.measure(config).total_ms
        self.last_reference = self._reference()
        return sample, (before + self.last_reference) / 2


def main() -> None:
    args = parse()
    from hat_cli.latency import dataset as LD
    from hat_cli import resolve
    from hat_cli.latency.meters import LatencyMeter
    from hat_cli.latency.predictors.base import LatencyRows, metrics
    from hat_cli.latency.predictors.fitting import fit_predictor

    task = resolve.task(args.task)
    space = resolve.latency_space(task)
    backend = resolve.backend(args.hw)
    meter = LatencyMeter(backend, task, space.shape)
    relative = RelativeMeter(meter, LD.reference_config(space))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def run(name: str, configs):
        rows = []
        for i, config in enumerate(configs):
            sample, ref = relative.measure(config)
            rows.append((sample, ref))
            if (i + 1) % 25 == 0:
                print(f"  {name} {i + 1}/{len(configs)}: {sample:.2f} ms, reference {ref:.2f} ms", flush=True)
        data = np.array(rows)
        np.savetxt(args.out / f"{name}.txt", data, header="sample_ms reference_ms")
        return data

    train_configs = [LD.sample_config(space, args.seed, i) for i in range(args.train)]
    fresh_configs = [LD.sample_config(space, args.seed + 1000, i) for i in range(args.fresh)]
    train = run("train", train_configs)
    fresh = run("fresh", fresh_configs)
    same = run("repeat", [fresh_configs[0]] * args.repeat)
    again = run("retest", fresh_configs[: args.retest])

    def rows(configs, values):
        out = LatencyRows.from_configs(configs)
        return LatencyRows(out.features, out.configs, np.asarray(values, float), np.zeros(len(configs)))

    report = {"task": task.name, "device": meter.describe_device(), "seconds": round(time.perf_counter() - started, 1)}
    for label, train_y, fresh_y, unit in (("relative", train[:, 0] / train[:, 1], fresh[:, 0] / fresh[:, 1], "x reference"),
                                          ("absolute", train[:, 0], fresh[:, 0], "ms")):
        predictor = fit_predictor(rows(train_configs, train_y), "layer-cost", 1.0, args.seed)
        predicted = predictor.predict(fresh_configs)
        report[label] = metrics(predicted, fresh_y) | {"unit": unit}
    ratio_same = same[:, 0] / same[:, 1]
    report["repeat_one_arch"] = {"relative_std": float(ratio_same.std(ddof=1)), "relative_rel_std": float(ratio_same.std(ddof=1) / ratio_same.mean()),
                                 "absolute_std_ms": float(same[:, 0].std(ddof=1)), "absolute_rel_std": float(same[:, 0].std(ddof=1) / same[:, 0].mean())}
    k = len(again)
    first_rel, again_rel = fresh[:k, 0] / fresh[:k, 1], again[:, 0] / again[:, 1]
    report["retest"] = {"relative_rel": float(np.sqrt(np.mean(((again_rel - first_rel) / first_rel) ** 2) / 2)),
                        "absolute_rel": float(np.sqrt(np.mean(((again[:, 0] - fresh[:k, 0]) / fresh[:k, 0]) ** 2) / 2)),
                        "relative_within_10pct": float(np.mean(np.abs(again_rel - first_rel) / first_rel <= 0.10)), "n": k}
    refs = np.concatenate([train[:, 1], fresh[:, 1]])
    report["reference_ms"] = {"min": float(refs.min()), "median": float(np.median(refs)), "max": float(refs.max())}
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
