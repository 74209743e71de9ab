"""Start-up time of `hat --help` and `hat CMD --help` against `python -c pass`, same run, same machine.

Usage: python bench/bench_startup.py [--runs 30]
Prints the median of each and its ratio to `python -c pass` (targets: `hat --help` <= 4x `python -c pass`,
every `hat CMD --help` well under 500 ms). The commands are run round-robin, one run of each per round,
so that drift in the machine's speed hits them all alike.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

# Each form entry.py answers from stored pages, plus one it leaves to Typer (an argument before --help).
HELP_FORMS = [
    ["--help"],
    ["data", "--help"],
    ["train-super", "--help"],
    ["search", "--help"],
    ["test", "-h"],
    ["profile", "--help"],
    ["zoo", "--help"],
    ["zoo", "list", "--help"],
    ["zoo", "pull", "--help"],
    ["hw", "list", "--help"],
    ["zoo"],
    ["profile", "arch.yml", "--help"],
]


def run_seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    hat = shutil.which("hat") or sys.exit("`hat` is not on PATH; pip install -e . first")
    cases = {"python -c pass": [sys.executable, "-c", "pass"]}
    cases.update({"hat " + " ".join(form): [hat, *form] for form in HELP_FORMS})
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv in cases.values():  # warm the file cache and .pyc files; not timed
        run_seconds(argv)
    for _ in range(args.runs):
        for name, argv in cases.items():
            times[name].append(run_seconds(argv))
    base = statistics.median(times["python -c pass"])
    width = max(len(name) for name in cases)
    print(f"{args.runs} runs each, medians; `hat` is {hat}")
    for name, samples in times.items():
        median = statistics.median(samples)
        note = "" if name == "python -c pass" else f"  ratio {median / base:5.2f}x"
        if name.startswith("hat ") and name != "hat --help":
            note += "  (< 500 ms)" if median < 0.5 else "  (OVER 500 ms)"
        print(f"{name.ljust(width)}  {median * 1000:7.1f} ms{note}")


if __name__ == "__main__":
    main()
