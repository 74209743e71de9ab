"""`hat search` at several latency budgets, each winner verified by measurement on this machine.

For bench/RESULTS.md: the Multi30k SuperTransformer on one H200 with `--hw cuda`, and the same on a CPU
with a predictor from `hat collect-latency --hw cpu` + `hat fit-predictor`. Example (H200):

    hat collect-latency --hw cuda --task multi30k.de-en --samples 300 && hat fit-predictor --hw cuda --task multi30k.de-en
    python bench/bench_search_budgets.py --task multi30k.de-en --hw cuda \\
        --supernet checkpoints/multi30k.de-en/supertransformer/model --out bench/out/search_budgets_cuda

Budgets default to the 20th, 50th and 80th percentiles of the predictor over 2000 random architectures of
the task's space (so they are feasible and different on any machine); `--budgets 20ms,30ms,45ms` fixes them.
Prints a compact table and writes results.json and results.md (a table for RESULTS.md) to --out.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="multi30k.de-en")
    p.add_argument("--hw", default="cuda")
    p.add_argument("--supernet", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--predictor", default=None)
    p.add_argument("--budgets", default=None, help="comma list with units, e.g. 20ms,30ms,45ms")
    p.add_argument("--population", type=int, default=125)
    p.add_argument("--parents", type=int, default=25)
    p.add_argument("--mutations", type=int, default=50)
    p.add_argument("--crossovers", type=int, default=50)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--valid-subset", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="bench/out/search_budgets")
    args = p.parse_args(argv)

    from hat_cli import resolve
    from hat_cli.cli.console import parse_latency
    from hat_cli.search.evolution import EvolutionarySearch, EvolutionSettings
    from hat_cli.search.run import predict_fn, run_search

    task = resolve.task(args.task)
    space = resolve.search_space(None, task)
    predictor = resolve.predictor(args.predictor, resolve.backend(args.hw), task, space)
    if args.budgets:
        budgets = [parse_latency(b) for b in args.budgets.split(",")]
    else:
        rng = random.Random(0)
        predicted = sorted(predict_fn(predictor)([space.sample(rng) for _ in range(2000)]))
        budgets = [round(predicted[int(q * (len(predicted) - 1))], 1) for q in (0.2, 0.5, 0.8)]
    settings = EvolutionSettings(
        population=args.population, parents=args.parents, mutations=args.mutations,
        crossovers=args.crossovers, iterations=args.iterations, seed=args.seed,
    )
    out = Path(args.out)
    rows = []
    for budget in budgets:
        started = time.perf_counter()
        request = resolve.search_request(
            task.name, args.hw, budget, settings.seed, supernet_word=args.supernet, data_dir_word=args.data_dir,
            predictor_word=predictor, valid_subset=args.valid_subset, device=args.device, out=out / f"{budget:g}ms",
            verify=True,
        )
        summary = run_search(request, EvolutionarySearch(settings), log=lambda message: print("  " + message, flush=True))
        v = summary["verify"]
        rows.append({
            "budget_ms": budget,
            "predicted_ms": summary["predicted_latency_ms"],
            "measured_ms": v["measured_latency_ms"],
            "error_pct": 100 * v["prediction_error"],
            "within_budget": v["within_budget"],
            "valid_loss": summary["valid_loss"],
            "evaluations": summary["evaluations"],
            "search_s": summary["seconds"],
            "total_s": time.perf_counter() - started,
            "decoder_layers": summary["arch"]["decoder-layer-num-subtransformer"],
            "config": summary["config"],
        })
        print(f"  {budget:g} ms done: loss {summary['valid_loss']:.4f}, predicted {summary['predicted_latency_ms']:.1f} ms, "
              f"measured {v['measured_latency_ms']:.1f} ms", flush=True)

    header = ["budget ms", "predicted ms", "measured ms", "pred. error", "meets budget", "valid loss (bits)", "dec layers", "scored", "search s"]
    table = [
        [f"{r['budget_ms']:g}", f"{r['predicted_ms']:.1f}", f"{r['measured_ms']:.1f}", f"{r['error_pct']:+.1f}%",
         "yes" if r["within_budget"] else "NO", f"{r['valid_loss']:.4f}", str(r["decoder_layers"]), str(r["evaluations"]), f"{r['search_s']:.1f}"]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("\n" + " | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"task": task.name, "hw": args.hw, "args": vars(args), "rows": rows}, indent=2) + "\n")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(row) + " |" for row in table]
    (out / "results.md").write_text("\n".join(md) + "\n")
    return rows


if __name__ == "__main__":
    main()
