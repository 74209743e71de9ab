"""The real-data result of issue 6: a latency/BLEU front on Multi30k De-En with one GPU as the device.

Everything goes through the `hat` CLI (with --json), so this is also an end-to-end test of the workflow:

  stage "super":   hat data (if needed) -> hat train-super -> hat collect-latency --hw cuda -> hat fit-predictor
  stage "search":  hat search at each budget (--verify measures the winner)
  stage "train":   hat train-sub for every searched winner and for plain Transformers (uniform layers, standard
                   attention) scaled down by depth and width to the same measured latency, all with the same
                   update budget; hat test on test_2016_flickr; a table and a PNG

Usage (on the GPU machine; stages can run in separate calls while the machine stays warm):
  python bench/multi30k_front.py --work runs/m30k --stage super --out $OUT
  python bench/multi30k_front.py --work runs/m30k --stage search --out $OUT
  python bench/multi30k_front.py --work runs/m30k --stage train --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TASK = "multi30k.de-en"
HW = os.environ.get("HAT_FRONT_HW", "cuda")


def hat(*args: str, log: Path) -> dict:
    """Run one hat command with --json; return its document, record wall time, fail loudly."""
    started = time.perf_counter()
    cmd = ["hat", *args, "--json"] if shutil_which("hat") else [sys.executable, "-m", "hat_cli.entry", *args, "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(cmd)}\n# {seconds:.1f} s, exit {result.returncode}\n{result.stderr[-3000:]}\n")
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-2000:]}")
    doc = json.loads(result.stdout)
    if isinstance(doc, dict):
        doc["_seconds"] = round(seconds, 2)
    return doc


def shutil_which(name: str):
    import shutil

    return shutil.which(name)


def stage_super(work: Path, args, log: Path, state: dict) -> None:
    data = work / "data"
    if not (data / "dict.de.txt").exists():
        state["data"] = hat("data", "--task", TASK, "--from-dir", args.multi30k_raw, "--data-dir", str(data), log=log)
    state["train_super"] = hat(
        "train-super", "--task", TASK, "--data-dir", str(data), "--save-dir", str(work / "super"),
        "--max-updates", str(args.super_updates), "--max-tokens", str(args.max_tokens), "--seed", "1", log=log,
    )
    csv = work / "latency_cuda.csv"
    state["collect"] = hat(
        "collect-latency", "--hw", HW, "--task", TASK, "--samples", str(args.latency_samples),
        "--csv", str(csv), "--seed", "1", "--repetitions", str(args.repetitions), log=log,
    )
    state["fresh"] = hat(
        "collect-latency", "--hw", HW, "--task", TASK, "--samples", str(args.fresh_samples),
        "--csv", str(work / "latency_cuda_fresh.csv"), "--seed", "999", "--repetitions", str(args.repetitions), log=log,
    )
    state["predictor"] = hat(
        "fit-predictor", "--dataset", str(csv), "--test", str(work / "latency_cuda_fresh.csv"),
        "--out", str(work / "cuda.predictor"), "--seed", "1", log=log,
    )


def stage_search(work: Path, args, log: Path, state: dict) -> None:
    supernet = state["train_super"]["checkpoint"]
    state["searches"] = {}
    budgets = args.budgets
    if budgets == ["auto"]:  # the 25th, 50th and 75th percentiles of what collect-latency measured
        import csv

        with open(work / "latency_cuda.csv") as handle:
            totals = sorted(
                float(r["latency_mean_encoder"]) + float(r["latency_mean_decoder"])
                for r in csv.DictReader(handle)
                if r.get("reference", "0") in ("0", "", "False", "false")
            )
        budgets = [f"{totals[int(q * (len(totals) - 1))]:.2f}ms" for q in (0.25, 0.5, 0.75)]
    state["budgets"] = budgets
    for budget in budgets:
        state["searches"][budget] = hat(
            "search", "--task", TASK, "--hw", HW, "--latency", budget, "--supernet", supernet,
            "--data-dir", str(work / "data"), "--predictor", str(work / "cuda.predictor"),
            "--population", str(args.population), "--parents", str(args.population // 5),
            "--mutations", str(2 * args.population // 5), "--crossovers", str(2 * args.population // 5),
            "--iterations", str(args.iterations), "--seed", "1", "--out", str(work / f"search-{budget}"), "--verify",
            log=log,
        )


def plain_candidates() -> list[dict]:
    """Plain Transformers of the Multi30k space: uniform layers, 8 heads, standard encoder attention."""
    out = []
    for width, ffn in ((512, 2048), (256, 1024)):
        for depth in range(1, 7):
            out.append(
                {
                    "encoder-embed-dim-subtransformer": width,
                    "decoder-embed-dim-subtransformer": width,
                    "encoder-ffn-embed-dim-all-subtransformer": [ffn] * 6,
                    "decoder-ffn-embed-dim-all-subtransformer": [ffn] * depth,
                    "encoder-layer-num-subtransformer": 6,
                    "decoder-layer-num-subtransformer": depth,
                    "encoder-self-attention-heads-all-subtransformer": [8] * 6,
                    "decoder-self-attention-heads-all-subtransformer": [8] * depth,
                    "decoder-ende-attention-heads-all-subtransformer": [8] * depth,
                    "decoder-arbitrary-ende-attn-all-subtransformer": [-1] * depth,
                }
            )
    return out


def stage_train(work: Path, args, log: Path, state: dict) -> None:
    from hat_cli.space import SubTransformerConfig

    models = {}
    for budget, search in state["searches"].items():
        models[f"HAT@{budget}"] = {"arch": search["config"], "budget": budget, "kind": "searched"}
    # Measure every plain candidate once; pair each searched winner with the largest plain model that is
    # not slower than the winner's measured latency.
    plain_dir = work / "plain"
    plain_dir.mkdir(exist_ok=True)
    measured = []
    for i, mapping in enumerate(plain_candidates()):
        path = plain_dir / f"plain{i}.yml"
        SubTransformerConfig.from_mapping(mapping).save_yaml(path)
        doc = hat("profile", str(path), "--task", TASK, "--hw", HW, log=log)
        measured.append((doc["latency_ms"]["total"], doc["params"], str(path)))
    state["plain_measured"] = measured
    for budget, search in state["searches"].items():
        limit = search.get("verify", {}).get("measured_ms") or search["predicted_latency_ms"]
        fitting = [m for m in measured if m[0] <= limit] or [min(measured)]
        latency, _, path = max(fitting, key=lambda m: (m[1], m[0]))
        models[f"plain@{budget}"] = {"arch": path, "budget": budget, "kind": "plain"}
    results = {}
    for name, spec in models.items():
        save = work / "sub" / name.replace("@", "_")
        trained = hat(
            "train-sub", "--task", TASK, "--arch", spec["arch"], "--data-dir", str(work / "data"),
            "--save-dir", str(save), "--max-updates", str(args.sub_updates), "--max-tokens", str(args.max_tokens),
            "--seed", "1", log=log,
        )
        tested = hat("test", trained["checkpoint"], "--task", TASK, "--data-dir", str(work / "data"), log=log)
        profiled = hat("profile", spec["arch"], "--task", TASK, "--hw", HW, log=log)
        results[name] = {
            **spec,
            "bleu": tested["bleu"],
            "sacrebleu": tested["sacrebleu"],
            "latency_ms": profiled["latency_ms"]["total"],
            "params": profiled["params"],
            "train_seconds": trained["_seconds"],
            "valid_loss": trained.get("valid_loss"),
        }
    state["front"] = results


def report(state: dict, out: Path) -> None:
    front = state.get("front", {})
    lines = ["| model | budget | measured latency (ms) | params | BLEU | SacreBLEU |", "|---|---|---|---|---|---|"]
    for name, r in sorted(front.items(), key=lambda kv: (kv[1]["budget"], kv[1]["kind"])):
        lines.append(f"| {name} | {r['budget']} | {r['latency_ms']:.2f} | {r['params'] / 1e6:.1f}M | {r['bleu']:.2f} | {r['sacrebleu']:.2f} |")
    table = "\n".join(lines)
    print(table)
    (out / "front.md").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, marker in (("searched", "o"), ("plain", "s")):
        pts = sorted((r["latency_ms"], r["bleu"]) for r in front.values() if r["kind"] == kind)
        if pts:
            ax.plot(*zip(*pts), marker=marker, label="HAT searched" if kind == "searched" else "plain Transformer")
    ax.set_xlabel("measured latency on H200 (ms, batch 1, beam 5)")
    ax.set_ylabel("BLEU (test_2016_flickr)")
    ax.set_title("Multi30k De-En: latency/BLEU front")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "multi30k_front.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="runs/m30k")
    parser.add_argument("--stage", choices=["super", "search", "train", "report", "all"], default="all")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/m30k/out"))
    parser.add_argument("--multi30k-raw", default=str(Path(__file__).resolve().parents[2] / "shared/data/multi30k/raw"))
    parser.add_argument("--super-updates", type=int, default=3000)
    parser.add_argument("--sub-updates", type=int, default=1500)
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--latency-samples", type=int, default=150)
    parser.add_argument("--fresh-samples", type=int, default=50)
    parser.add_argument("--budgets", nargs="+", default=["auto"], help="latency budgets, or auto (quartiles of the measured range)")
    parser.add_argument("--repetitions", type=int, default=10, help="timed runs per latency measurement")
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=15)
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    log = out / "multi30k_commands.log"
    stages = ["super", "search", "train"] if args.stage == "all" else [args.stage]
    for stage in stages:
        started = time.perf_counter()
        {"super": stage_super, "search": stage_search, "train": stage_train, "report": lambda *a: None}[stage](
            work, args, log, state
        )
        state.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - started, 1)
        state_path.write_text(json.dumps(state, indent=2))
    (out / "multi30k_state.json").write_text(json.dumps(state, indent=2))
    report(state, out)


if __name__ == "__main__":
    main()
