"""Would another clock or thread count make this CPU's latency repeatable? (issue 4)

Measures 8 sampled architectures of a task's latency space 4 times each, round-robin (so the repeats are
tens of seconds apart), with `--hw cpu`'s protocol under three settings: wall clock with 2 intra-op threads
(what `cpu` does on this 2-core machine), wall clock with 1 thread, and the calling thread's CPU time with 1
thread (which leaves out time the thread was not running). Prints each setting's per-architecture
relative spread and every measurement relative to its architecture's mean.

    python bench/bench_cpu_clocks.py [--task demo]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hat_cli import resolve
from hat_cli.latency.dataset import sample_config
from hat_cli.latency.meters import LatencyMeter

SETTINGS = (("wall clock, 2 threads", 2, "wall"), ("wall clock, 1 thread", 1, "wall"), ("thread CPU time, 1 thread", 1, "cpu"))


class ThreadTimeTimer:
    def start(self) -> None:
        self._t0 = time.thread_time()

    def stop(self) -> float:
        return (time.thread_time() - self._t0) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="demo")
    parser.add_argument("--archs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    task = resolve.task(args.task)
    space = resolve.latency_space(task)
    configs = [sample_config(space, 5, i) for i in range(args.archs)]
    ms = {name: np.zeros((args.rounds, len(configs))) for name, _, _ in SETTINGS}
    for round_ in range(args.rounds):
        for name, threads, clock in SETTINGS:
            torch.set_num_threads(threads)
            meter = LatencyMeter(resolve.backend("cpu"), task, space.shape)
            if clock == "cpu":
                meter._timer = ThreadTimeTimer
            for i, config in enumerate(configs):
                ms[name][round_, i] = meter.measure(config).total_ms
        print(f"round {round_ + 1}/{args.rounds}", flush=True)
    for name, values in ms.items():
        relative = values.std(0, ddof=1) / values.mean(0)
        print(f"{name}: pooled relative spread {100 * np.sqrt(np.mean(relative**2)):.1f}% "
              f"(per architecture {np.round(100 * relative, 1)})")
        print(np.round(values / values.mean(0), 2))


if __name__ == "__main__":
    main()
