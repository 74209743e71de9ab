"""How often does `hat demo`'s winner fit its budget when measured again in a fresh process? (issue 17)

    python bench/bench_demo_budget.py --runs 10 --out DIR

Runs `hat demo` ``--runs`` times from scratch (a new work folder each: data, SuperTransformer, latency
collection, predictor, search with the default margin, training, test, and the winner measured again by
`hat profile` in a fresh process) and counts the runs whose fresh measurement fits the budget. Run it on an
otherwise idle machine: `hat demo` refuses to search when the CPU is too busy to measure (those runs are
counted apart, not as over budget). Writes DIR/runs.json and prints one line per run and the count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.runs):
        work = args.out / f"run{i}"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hat_cli.cli.entry", "demo", "--workdir", str(work), "--json"],
                              capture_output=True, text=True, env=dict(os.environ, HAT_NO_PROGRESS="1"))
        load = os.getloadavg()[0]
        if done.returncode != 0:
            line = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            rows.append({"run": i, "ok": False, "error": line, "load": load})
            print(f"run {i}: failed ({line})", flush=True)
            continue
        doc = json.loads(done.stdout)
        row = {"run": i, "ok": True, "within_budget": doc["within_budget"], "budget_ms": doc["latency_budget_ms"],
               "measured_ms": doc["measured_latency_ms"], "predicted_ms": doc["predicted_latency_ms"],
               "margin": (doc.get("margin") or {}).get("fraction"), "noise": doc["measurement_noise"], "bleu": doc["bleu"],
               "seconds": round(time.perf_counter() - started, 1), "load": load}
        rows.append(row)
        print(f"run {i}: budget {row['budget_ms']:.2f} ms, predicted {row['predicted_ms']:.2f}, measured {row['measured_ms']:.2f} "
              f"({'within' if row['within_budget'] else 'OVER'}), margin {100 * (row['margin'] or 0):.1f}%, "
              f"BLEU {row['bleu']:.1f}, {row['seconds']:.0f} s, load {load:.1f}", flush=True)
    finished = [r for r in rows if r["ok"]]
    within = sum(r["within_budget"] for r in finished)
    (args.out / "runs.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nwithin budget in {within} of {len(finished)} finished runs ({len(rows) - len(finished)} refused or failed)")


if __name__ == "__main__":
    main()
