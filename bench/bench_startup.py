"""Start-up time of `hat --help` (and `hat profile --help`) against `python -c pass`, same run, same machine.

Usage: python bench/bench_startup.py [--runs 30]
Prints medians and the ratios the issue asks for (target: `hat --help` <= 4x `python -c pass`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    hat = shutil.which("hat") or sys.exit("`hat` is not on PATH; pip install -e . first")
    # Interleave nothing fancy: measure the baseline before and after to see drift.
    base_before = median_seconds([sys.executable, "-c", "pass"], args.runs)
    overview = median_seconds([hat, "--help"], args.runs)
    command_help = median_seconds([hat, "profile", "--help"], max(5, args.runs // 3))
    base_after = median_seconds([sys.executable, "-c", "pass"], args.runs)
    base = (base_before + base_after) / 2
    print(f"python -c pass      {base * 1000:7.1f} ms (before {base_before * 1000:.1f}, after {base_after * 1000:.1f})")
    print(f"hat --help          {overview * 1000:7.1f} ms  ratio {overview / base:.2f}x  (target <= 4x)")
    print(f"hat profile --help  {command_help * 1000:7.1f} ms  ratio {command_help / base:.2f}x  (target < 500 ms)")


if __name__ == "__main__":
    main()
