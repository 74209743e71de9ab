"""What measuring through `--hw remote` costs per sample, against measuring the same way locally.

A `hat latency-server` runs on 127.0.0.1 (its own process, its `--backend` meter); the same sampled
architectures are measured by that backend in this process and through the server, alternating which goes
first, and the wall time of each sample (what `collect-latency` waits for) is compared: overhead =
remote / local - 1, per architecture, median and mean reported. Both sides measure on this one CPU, so that
ratio also carries the measurements' own noise; the transport's share alone is the client's wall time less
the time the server spent measuring (its own clock), per sample. The latencies themselves are compared too.

    python bench/bench_remote_overhead.py --task multi30k.de-en --backend cpu --samples 20 --out bench/out/remote.json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="multi30k.de-en")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads of both meters (the same, or they time different things)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from hat_cli.latency import dataset as LD
    from hat_cli.latency.backends import MeterOptions, get_backend
    from hat_cli.latency.meters import LatencyMeter
    from hat_cli.model.space import SearchSpace
    from hat_cli.tasks import get_task

    token = secrets.token_hex(16)
    env = dict(os.environ, HAT_LATENCY_TOKEN=token, HAT_NO_PROGRESS="1")
    server = subprocess.Popen([sys.executable, "-m", "hat_cli.cli.app", "latency-server", "--host", "127.0.0.1", "--port", "0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        url = line.split("listening on ")[1].split()[0]
        os.environ["HAT_LATENCY_TOKEN"] = token
        task = get_task(args.task)
        space = SearchSpace.builtin(task.latency_space)
        overrides = {"repetitions": args.repetitions, "warmup": args.warmup}
        local = LatencyMeter(get_backend(args.backend), task, space.shape, overrides=overrides, options=MeterOptions(threads=args.threads))
        remote = LatencyMeter(get_backend("remote"), task, space.shape, overrides=overrides,
                              options=MeterOptions(remote=url, remote_backend=args.backend, threads=args.threads))
        warm = LD.reference_config(space)  # both sides load their libraries and warm up before anything is timed
        local.measure(warm)
        remote.measure(warm)
        load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        rows = []
        for i in range(args.samples):
            config = LD.sample_config(space, 7, i)
            order = (("local", local), ("remote", remote)) if i % 2 == 0 else (("remote", remote), ("local", local))
            row = {}
            for name, meter in order:
                started = time.perf_counter()
                total = meter.measure(config).total_ms
                row[name] = {"wall_s": time.perf_counter() - started, "latency_ms": total}
                if name == "remote":
                    row[name]["device_s"] = remote.meter.last_device_seconds
            row["overhead"] = row["remote"]["wall_s"] / row["local"]["wall_s"] - 1
            row["latency_ratio"] = row["remote"]["latency_ms"] / row["local"]["latency_ms"]
            row["transport_s"] = row["remote"]["wall_s"] - row["remote"]["device_s"]
            row["transport_share"] = row["transport_s"] / row["remote"]["wall_s"]
            rows.append(row)
            print(f"{i}: local {row['local']['wall_s']:.2f} s, remote {row['remote']['wall_s']:.2f} s ({row['overhead']:+.1%}); "
                  f"latency {row['local']['latency_ms']:.1f} vs {row['remote']['latency_ms']:.1f} ms", flush=True)
        local_s = sum(r["local"]["wall_s"] for r in rows)
        remote_s = sum(r["remote"]["wall_s"] for r in rows)
        report = {
            "task": task.name, "backend": args.backend, "samples": args.samples, "protocol": overrides, "threads": args.threads,
            "load_before": load_before, "load_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "local_s_per_sample": local_s / len(rows), "remote_s_per_sample": remote_s / len(rows),
            "overhead_total": remote_s / local_s - 1,
            "overhead_median": statistics.median(r["overhead"] for r in rows),
            "transport_ms_median": 1000 * statistics.median(r["transport_s"] for r in rows),
            "transport_share_median": statistics.median(r["transport_share"] for r in rows),
            "transport_share_max": max(r["transport_share"] for r in rows),
            "latency_ratio_median": statistics.median(r["latency_ratio"] for r in rows),
            "rows": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nper sample: local {report['local_s_per_sample']:.3f} s, remote {report['remote_s_per_sample']:.3f} s; "
              f"overhead {report['overhead_total']:+.2%} in total, median {report['overhead_median']:+.2%}; "
              f"transport (wall less the server's measuring time) median {report['transport_ms_median']:.1f} ms = "
              f"{report['transport_share_median']:.2%} of a sample (max {report['transport_share_max']:.2%}); "
              f"remote/local latency median {report['latency_ratio_median']:.3f}")
        print(f"load: {report['load_before']} -> {report['load_after']}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
