"""Is a latency measurement's spread a property of the architecture or of the model instance? (issue 4)

Measures A architectures K times each, every time on a fresh randomly initialised model instance (as
`collect-latency` does), round-robin so that slow drift falls on every architecture alike. Reports each
architecture's spread across instances, the pooled spread, and how much the round means drift. The H200
predictor's fresh-sample error (0.038 ms) is 2.2x the reference architecture's spread across a collection;
if the per-instance spread of *other* architectures is that large, averaging several instances per sample
(`collect-latency --instances K`, not built yet) is the fix; if it is small, the predictor lacks features.

    python bench/bench_latency_instances.py --hw cuda --task multi30k.de-en --out DIR          # on a GPU
    python bench/bench_latency_instances.py --hw cpu --task demo --archs 3 --times 2 --out DIR   # smoke test

The architectures: the space's largest and smallest, the reference, decoders of 6 layers at the smallest
width, and seeded samples for the rest.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np


def architectures(space, count: int, seed: int):
    from hat_cli.latency.dataset import reference_config, sample_config

    chosen = [space.largest(), space.smallest(), reference_config(space)]
    narrow_deep = [c for c in (sample_config(space, seed, i) for i in range(2000))
                   if c.decoder_layer_num == max(space.choices["decoder_layer_num"])
                   and c.decoder_embed_dim == min(space.choices["decoder_embed_dim"])]
    chosen += narrow_deep[:2]
    index = 0
    while len(chosen) < count:
        chosen.append(sample_config(space, seed + 7, index))
        index += 1
    return chosen[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", default="cuda")
    parser.add_argument("--task", default="multi30k.de-en")
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--times", type=int, default=5, help="fresh instances per architecture")
    parser.add_argument("--instances", type=int, default=None, help="placements pooled per measurement (default: backend's)")
    parser.add_argument("--repetitions", type=int, default=None, help="timed runs per placement (default: backend's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from hat_cli import resolve
    from hat_cli.latency.meters import LatencyMeter

    task = resolve.task(args.task)
    space = resolve.latency_space(task)
    meter = LatencyMeter(resolve.backend(args.hw), task, space.shape,
                         overrides={"instances": args.instances, "repetitions": args.repetitions})
    configs = architectures(space, args.archs, args.seed)
    order = list(range(len(configs)))
    random.Random(args.seed).shuffle(order)
    ms = np.zeros((args.times, len(configs)))
    start = time.perf_counter()
    for round_ in range(args.times):
        for i in order:
            ms[round_, i] = meter.measure(configs[i]).total_ms  # a fresh model instance each time
        print(f"round {round_ + 1}/{args.times}: {time.perf_counter() - start:.0f} s", flush=True)

    per_arch = ms.std(axis=0, ddof=1)
    drift = ms.mean(axis=1) / ms.mean() - 1.0  # each round's mean relative to the overall mean
    report = {
        "meta": meter.csv_metadata(),
        "archs": [{"arch": c.to_dict(), "mean_ms": float(ms[:, i].mean()), "std_ms": float(per_arch[i]),
                   "values_ms": ms[:, i].tolist()} for i, c in enumerate(configs)],
        "pooled_std_ms": float(np.sqrt(np.mean(per_arch**2))),
        "largest_std_ms": float(per_arch.max()),
        "round_drift_pct": (100 * drift).tolist(),
        "seconds": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "instances.json").write_text(json.dumps(report, indent=2))
    print(f"{'mean ms':>9} {'std ms':>8}  decoder (layers x width)")
    for entry, c in zip(report["archs"], configs):
        print(f"{entry['mean_ms']:9.3f} {entry['std_ms']:8.4f}  {c.decoder_layer_num} x {c.decoder_embed_dim}")
    print(f"pooled std across instances: {report['pooled_std_ms']:.4f} ms (largest {report['largest_std_ms']:.4f}); "
          f"round means drift {min(report['round_drift_pct']):+.2f}% .. {max(report['round_drift_pct']):+.2f}%")


if __name__ == "__main__":
    main()
