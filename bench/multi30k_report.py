"""Tables and the front plot from a `bench/bench_multi30k.sh front` run directory (the JSON of every hat command).

    python bench/multi30k_report.py RUN_DIR [--plain-run RUN2] [--out DIR]

RUN2 is a `bench/bench_multi30k.sh widths` run: its width-scaled plain Transformers join the front.

Prints three Markdown tables (searches, the front, the issue-7 models) and writes multi30k_front.png.
Missing pieces (a run cut short) show as "-".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(run: Path, name: str):
    try:
        return json.loads((run / "json" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def searches(run: Path) -> list[str]:
    lines = [
        "| budget (= plain model) | predicted ms | measured ms | pred. error | meets budget | valid loss (bits) | decoder layers | scored | search s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for depth in (1, 2, 3):
        s = load(run, f"search-{depth}")
        if not s:
            continue
        v = s.get("verify", {})
        layers = s.get("arch", {}).get("decoder-layer-num-subtransformer", "-")
        lines.append(
            f"| {s.get('latency_budget_ms', 0):.2f} ms (plain{depth}) | {fmt(s.get('predicted_latency_ms'), '.2f')} | "
            f"{fmt(v.get('measured_latency_ms'), '.2f')} | {fmt(100 * v['prediction_error'] if v.get('prediction_error') is not None else None, '+.1f')}% | "
            f"{'yes' if v.get('within_budget') else 'no'} | {fmt(s.get('valid_loss'), '.3f')} | {layers} | "
            f"{fmt(s.get('computed_evaluations'), 'd')} | {fmt(s.get('seconds'), '.1f')} |"
        )
    return lines


def model_row(run: Path, name: str, latency_ms) -> dict:
    train, test = load(run, f"train-{name}") or {}, load(run, f"test-{name}") or {}
    valid = train.get("valid_loss")
    if isinstance(valid, dict):
        valid = next(iter(valid.values()), None)
    return {
        "name": name, "latency": latency_ms, "bleu": test.get("bleu"), "sacrebleu": test.get("sacrebleu"),
        "valid": valid, "updates": train.get("updates"), "tokps": train.get("tokens_per_second"),
    }


def front(run: Path) -> tuple[list[str], list[dict]]:
    rows = []
    lines = ["| budget | model | measured latency (ms) | valid loss (bits) | BLEU | SacreBLEU |", "|---|---|---|---|---|---|"]
    for depth in (1, 2, 3):
        plain_profile, search = load(run, f"profile-plain{depth}"), load(run, f"search-{depth}")
        plain_ms = plain_profile["latency_ms"]["total"] if plain_profile else None
        hat_ms = (search or {}).get("verify", {}).get("measured_latency_ms")
        for kind, name, ms in (("searched", f"hat{depth}", hat_ms), ("plain", f"plain{depth}", plain_ms)):
            row = model_row(run, name, ms) | {"kind": kind, "budget": plain_ms}
            rows.append(row)
            label = f"HAT searched (`search-{depth}`)" if kind == "searched" else f"plain, {depth} decoder layer{'s' if depth > 1 else ''}"
            lines.append(f"| {fmt(plain_ms, '.2f')} ms | {label} | {fmt(ms, '.2f')} | {fmt(row['valid'], '.3f')} | {fmt(row['bleu'], '.2f')} | {fmt(row['sacrebleu'], '.2f')} |")
    return lines, rows


def issue7(run: Path) -> list[str]:
    lines = ["| model | how | measured latency (ms) | updates | k target tok/s | valid loss (bits) | BLEU | SacreBLEU |", "|---|---|---|---|---|---|---|---|"]
    for name, how in (("largest", "from scratch"), ("smallest", "from scratch"), ("plain6", "from scratch (sanity bar)")):
        prof = load(run, f"profile-{name}")
        r = model_row(run, name, prof["latency_ms"]["total"] if prof else None)
        lines.append(f"| {name} | {how} | {fmt(r['latency'], '.2f')} | {fmt(r['updates'], 'd')} | {fmt((r['tokps'] or 0) / 1e3 or None, '.1f')} | "
                     f"{fmt(r['valid'], '.3f')} | {fmt(r['bleu'], '.2f')} | {fmt(r['sacrebleu'], '.2f')} |")
    sup = load(run, "train-super") or {}
    for name in ("largest", "smallest"):
        t = load(run, f"test-inherited-{name}") or {}
        valid = (sup.get("valid_loss") or {}).get(name) if isinstance(sup.get("valid_loss"), dict) else None
        lines.append(f"| {name} | inherited from the SuperTransformer | - | {fmt(sup.get('updates'), 'd')} | {fmt((sup.get('tokens_per_second') or 0) / 1e3 or None, '.1f')} | "
                     f"{fmt(valid, '.3f')} | {fmt(t.get('bleu'), '.2f')} | {fmt(t.get('sacrebleu'), '.2f')} |")
    return lines


WIDTH_SCALED = (("w384", "plain, 384 wide (FFN 2048, 8 heads)"), ("w256", "plain, 256 wide (FFN 1024, 4 heads)"))


def width_scaled(run: Path) -> tuple[list[str], list[dict]]:
    rows, lines = [], ["| model | measured latency (ms) | valid loss (bits) | BLEU | SacreBLEU |", "|---|---|---|---|---|"]
    for prefix, label in WIDTH_SCALED:
        for depth in (1, 2, 3):
            name = f"{prefix}d{depth}"
            prof = load(run, f"profile-{name}")
            r = model_row(run, name, prof["latency_ms"]["total"] if prof else None) | {"kind": prefix, "budget": None}
            rows.append(r)
            lines.append(f"| {label}, {depth} decoder layer{'s' if depth > 1 else ''} | {fmt(r['latency'], '.2f')} | {fmt(r['valid'], '.3f')} | "
                         f"{fmt(r['bleu'], '.2f')} | {fmt(r['sacrebleu'], '.2f')} |")
    return lines, rows


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    series = (("searched", "o", "HAT searched"), ("plain", "s", "plain, 512 wide (depth-scaled)"),
              ("w384", "^", "plain, 384 wide"), ("w256", "v", "plain, 256 wide"))
    for kind, marker, label in series:
        pts = sorted((r["latency"], r["bleu"]) for r in rows if r["kind"] == kind and r["latency"] and r["bleu"] is not None)
        if pts:
            ax.plot(*zip(*pts), marker=marker, label=label)
    for r in rows:
        if r["kind"] == "plain" and r["budget"]:
            ax.axvline(r["budget"], color="grey", alpha=0.25, lw=1)
    ax.set_xlabel("measured latency on H200 (ms; batch 1, beam 5, CUDA graphs)")
    ax.set_ylabel("BLEU, test_2016_flickr")
    ax.set_title("Multi30k De-En: latency/BLEU front (grey: budgets)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--plain-run", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or args.run
    front_lines, rows = front(args.run)
    text = "\n".join(["## searches", *searches(args.run), "", "## front", *front_lines, "", "## issue 7 models", *issue7(args.run)])
    if args.plain_run:
        lines, extra = width_scaled(args.plain_run)
        rows += extra
        text += "\n\n## width-scaled plain Transformers\n" + "\n".join(lines)
    timeline = args.run / "timeline.txt"
    if timeline.exists():
        text += "\n\n## timeline\n" + timeline.read_text()
    print(text)
    (out / "multi30k_report.md").write_text(text + "\n")
    plot(rows, out / "multi30k_front.png")


if __name__ == "__main__":
    main()
