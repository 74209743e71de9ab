"""Tables and plot of a bench/bench_search_front.py run.

    python bench/search_front_report.py --work DIR [--png bench/multi30k_search_front.png]

Prints markdown: the budgets; per budget, the searched winners (ours: margin + re-ranking; HAT's search as
published, where the run has it: the fifth session's did, bench_search_front.py no longer runs it) against
every plain model whose fresh-process latency fits, BLEU and SacreBLEU per seed (every seed tested, 1-4) and their mean; whether each
winner fits its budget when measured again; the rank-fidelity table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def latency(work: Path, name: str) -> float | None:
    doc = load(work / "json" / f"profile-{name}.json")
    return float(doc["latency_ms"]["total"]) if doc else None


SEEDS = (1, 2, 3, 4)


def scores(work: Path, prefix: str) -> dict[int, tuple[float, float]]:
    """(BLEU, SacreBLEU) of every seed of ``prefix`` that was trained and tested."""
    out = {}
    for seed in SEEDS:
        doc = load(work / "json" / f"{prefix}-s{seed}.1.json")
        if doc:
            out[seed] = (float(doc["bleu"]), float(doc["sacrebleu"]))
    return out


def per_seed(found: dict[int, tuple[float, float]]) -> str:
    last = max([2, *found])
    return " / ".join(fmt(found[s][0]) if s in found else "–" for s in range(1, last + 1))


def mean_bleu(found: dict[int, tuple[float, float]]) -> float | None:
    return statistics.fmean(b for b, _ in found.values()) if found else None


def fmt(value, digits=2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    work = args.work
    budgets = {int(k): float(v) for k, v in load(work / "budgets.json").items()}
    plains = [f"{f}{d}" for f in ("w256d", "w384d", "plain") for d in (1, 2, 3)]
    plain_rows = {name: (latency(work, name), scores(work, f"{name}")) for name in plains}

    print("| model | measured latency (ms) | BLEU per seed | mean BLEU | SacreBLEU mean |")
    print("|---|---|---|---|---|")
    for name, (lat, found) in plain_rows.items():
        seeds = per_seed(found)
        sacre = statistics.fmean(v for _, v in found.values()) if found else None
        print(f"| plain {name} | {fmt(lat, 3)} | {seeds} | {fmt(mean_bleu(found))} | {fmt(sacre)} |")

    verdicts = []
    for depth, budget in sorted(budgets.items()):
        print(f"\n### Budget {budget:.3f} ms (plain 256-wide, {depth} decoder layer{'s' if depth > 1 else ''})\n")
        print("| model | predicted (ms) | --verify (ms) | fresh process (ms) | within budget | BLEU per seed | mean BLEU |")
        print("|---|---|---|---|---|---|---|")
        best_plain = None
        for method in ("ours", "hat"):
            # the search run again with --verify on a quiet GPU (its scores and re-ranking reused), else the first run
            search = load(work / "json" / f"verify-{method}-d{depth}.0.json") or load(work / "json" / f"search-{method}-d{depth}.0.json")
            fresh = latency(work, f"search-{method}-d{depth}")
            found = scores(work, f"{method}-d{depth}")
            verify = (search.get("verify") or {}).get("measured_latency_ms")
            if method == "hat" and not search:
                continue  # this run searched only with our settings
            within = None if fresh is None else fresh <= budget
            seeds = per_seed(found)
            label = "searched (margin + re-ranking)" if method == "ours" else "searched as HAT published"
            print(f"| {label} | {fmt(search.get('predicted_latency_ms'), 3)} | {fmt(verify, 3)} | {fmt(fresh, 3)} | "
                  f"{'–' if within is None else ('yes' if within else 'NO')} | {seeds} | {fmt(mean_bleu(found))} |")
            if method == "ours":
                ours = (mean_bleu(found), within)
        for name, (lat, found) in plain_rows.items():
            if lat is not None and lat <= budget:
                seeds = per_seed(found)
                print(f"| plain {name} | | | {fmt(lat, 3)} | yes | {seeds} | {fmt(mean_bleu(found))} |")
                m = mean_bleu(found)
                if m is not None and (best_plain is None or m > best_plain[1]):
                    best_plain = (name, m)
        print_rerank(load(work / "json" / f"verify-ours-d{depth}.0.json") or load(work / "json" / f"search-ours-d{depth}.0.json"))
        if ours[0] is not None and best_plain is not None:
            verdicts.append((depth, ours[0] - best_plain[1], best_plain[0], ours[1]))
    if verdicts:
        print("\n| budget | searched mean BLEU − best fitting plain | best plain | winner within budget |")
        print("|---|---|---|---|")
        for depth, gain, name, within in verdicts:
            print(f"| d{depth} | {gain:+.2f} | {name} | {within} |")

    fidelity = load(work / "rank_fidelity.json")
    if fidelity:
        print(f"\nKendall tau against standalone validation loss ({fidelity['count']} architectures):")
        for label, tau in fidelity["kendall_tau"].items():
            print(f"- {label}: {tau:+.3f}")
    if args.png:
        plot(args.png, budgets, plain_rows, work)


def print_rerank(search: dict) -> None:
    """The second stage's candidates: what each scored inherited, after its short training, and which won."""
    report = search.get("rerank") or {}
    if not report.get("candidates"):
        return
    print(f"\nRe-ranked by validation {report['metric']} after {report['updates']} updates:\n")
    print("| candidate (enc / dec width, dec layers; FFN enc / dec) | plain | predicted (ms) | inherited loss | loss after training | valid BLEU | chosen |")
    print("|---|---|---|---|---|---|---|")
    for i, c in enumerate(report["candidates"]):
        a = c["arch"]
        ffn = f"{sorted(set(a['encoder-ffn-embed-dim-all-subtransformer']))} / {sorted(set(a['decoder-ffn-embed-dim-all-subtransformer']))}"
        print(f"| {a['encoder-embed-dim-subtransformer']} / {a['decoder-embed-dim-subtransformer']}, "
              f"{a['decoder-layer-num-subtransformer']}; {ffn} | {'yes' if c.get('hand_scaled') else ''} | "
              f"{c['predicted_latency_ms']:.3f} | {c['inherited_valid_loss']:.3f} | {c['rerank_valid_loss']:.3f} | "
              f"{fmt(c.get('rerank_valid_bleu'))} | {'**yes**' if i == report['chosen'] else ''} |")


def plot(png: Path, budgets, plain_rows, work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for family, label in (("w256d", "plain 256 wide"), ("w384d", "plain 384 wide"), ("plain", "plain 512 wide")):
        pts = [(plain_rows[f"{family}{d}"][0], mean_bleu(plain_rows[f"{family}{d}"][1])) for d in (1, 2, 3)]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], "-o", ms=4, label=f"{label} (1-3 decoder layers)")
    for method, marker, label in (("ours", "*", "searched: margin + re-ranking"), ("hat", "x", "searched as HAT published")):
        pts = [(latency(work, f"search-{method}-d{d}"), mean_bleu(scores(work, f"{method}-d{d}"))) for d in sorted(budgets)]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            ax.scatter([x for x, _ in pts], [y for _, y in pts], marker=marker, s=120 if marker == "*" else 60, zorder=5, label=label)
    for budget in budgets.values():
        ax.axvline(budget, ls="--", color="grey", lw=0.8)
    ax.set_xlabel("latency measured in a fresh process (ms, H100, CUDA graphs)")
    ax.set_ylabel("test_2016_flickr BLEU (mean of seeds)")
    ax.set_title("Multi30k De-En: searched vs hand-scaled Transformers", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    main()
