"""PyTorch eager against ONNX Runtime on this CPU: published WMT'14 En-De architectures, same run.

Each round measures every architecture with `--hw cpu` (PyTorch eager, inference mode) and `--hw onnxruntime`
(the same architecture exported to ONNX, CPU execution provider), in alternating order, with the same
protocol (HAT's: batch 1, beam 5, 30-token dummy sentence, encoder once, decoder step by step with the
vocabulary projection). The ratio ORT / eager is taken within each round, so slow drifts of a shared
machine cancel; the median over rounds is reported.

    python bench/bench_onnxruntime.py --rounds 3 --repetitions 10 --out bench/out/onnxruntime.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

MODELS = ("HAT_wmt14ende_xeon@204.2ms", "HAT_wmt14ende_raspberrypi@3.5s", "HAT_wmt14ende_titanxp@126.0ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="threads for both runtimes (default: each one's default)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import onnxruntime
    import torch

    from hat_cli.latency.backends import MeterOptions, get_backend
    from hat_cli.latency.meters import LatencyMeter
    from hat_cli.model.space import SearchSpace
    from hat_cli.tasks import get_task
    from hat_cli.zoo import catalogue

    task = get_task("wmt14.en-de")
    shape = SearchSpace.builtin(task.latency_space).shape
    options = MeterOptions(threads=args.threads)
    overrides = {"repetitions": args.repetitions, "warmup": args.warmup}
    meters = {hw: LatencyMeter(get_backend(hw), task, shape, options=options, overrides=overrides) for hw in ("cpu", "onnxruntime")}
    configs = {name: catalogue.architecture_of(name) for name in args.models}
    report = {"load_before": _uptime(), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "threads": args.threads,
              "protocol": overrides, "devices": {hw: m.describe_device() for hw, m in meters.items()}, "rounds": []}
    started = time.perf_counter()
    for round_ in range(args.rounds):
        order = ("cpu", "onnxruntime") if round_ % 2 == 0 else ("onnxruntime", "cpu")
        row = {}
        for name, config in configs.items():
            ms = {hw: meters[hw].measure(config).to_dict() for hw in order}
            row[name] = ms | {"ratio_total": ms["onnxruntime"]["total"] / ms["cpu"]["total"],
                              "ratio_encoder": ms["onnxruntime"]["encoder"] / ms["cpu"]["encoder"],
                              "ratio_decoder": ms["onnxruntime"]["decoder"] / ms["cpu"]["decoder"]}
            print(f"round {round_} {name}: eager {ms['cpu']['total']:.1f} ms, ORT {ms['onnxruntime']['total']:.1f} ms, "
                  f"ratio {row[name]['ratio_total']:.3f}", flush=True)
        report["rounds"].append(row)
    report["median_ratio"] = {name: {k: statistics.median(r[name][k] for r in report["rounds"]) for k in ("ratio_total", "ratio_encoder", "ratio_decoder")}
                              for name in configs}
    report["median_ms"] = {name: {hw: statistics.median(r[name][hw]["total"] for r in report["rounds"]) for hw in ("cpu", "onnxruntime")}
                           for name in configs}
    report["load_after"], report["seconds"] = _uptime(), round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'model':34s} {'eager ms':>9s} {'ORT ms':>8s} {'ORT/eager':>9s} {'enc':>6s} {'dec':>6s}")
    for name in configs:
        m, r = report["median_ms"][name], report["median_ratio"][name]
        print(f"{name:34s} {m['cpu']:9.1f} {m['onnxruntime']:8.1f} {r['ratio_total']:9.3f} {r['ratio_encoder']:6.3f} {r['ratio_decoder']:6.3f}")
    print(f"load: {report['load_before']} -> {report['load_after']}")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
