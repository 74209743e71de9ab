"""What a search leaves behind besides its winner: the per-iteration history, every scored architecture,
the (latency, loss) Pareto front and its plot.
"""

from __future__ import annotations

import csv
import json
import math
from typing import Sequence

from hat_cli.core.files import atomic_open, replacing
from hat_cli.core.paths import budget_label
from hat_cli.model.space import SubTransformerConfig
from hat_cli.search.algorithm import SearchResult


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, loss) points no other point beats on both, by increasing latency."""
    front: list[tuple[float, float]] = []
    for latency, loss in sorted(points):
        if not front or loss < front[-1][1]:
            front.append((latency, loss))
    return front


def write_history_csv(path, result: SearchResult) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("iteration,best_loss,best_latency_ms,parents_mean_loss,new_evaluations,evaluations\n")
        for h in result.history:
            handle.write(f"{h.iteration},{h.best_loss!r},{h.best_latency_ms!r},{h.parents_mean_loss!r},{h.new_evaluations},{h.evaluations}\n")


def write_explored_csv(path, result: SearchResult) -> None:
    """Every scored architecture in scoring order: loss, predicted latency, and the architecture (JSON)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order", "valid_loss", "predicted_latency_ms", "arch"])
        for i, (config, (loss, latency)) in enumerate(result.explored.items()):
            writer.writerow([i, repr(loss), repr(latency), json.dumps(config.to_dict(), separators=(",", ":"))])


def read_explored_csv(path) -> list[tuple[SubTransformerConfig, float, float]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [
            (SubTransformerConfig.from_dict(json.loads(row["arch"])), float(row["valid_loss"]), float(row["predicted_latency_ms"]))
            for row in csv.DictReader(handle)
        ]


def plot_front(path, result: SearchResult, title: str) -> bool:
    """PNG of every scored architecture, the latency/loss front and the budget; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = [(lat, loss) for loss, lat in result.explored.values() if math.isfinite(loss)]
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=6, alpha=0.35, label=f"scored ({len(points)})")
    ax.plot([p[0] for p in front], [p[1] for p in front], "-o", ms=3, color="C1", drawstyle="steps-post", label="front")
    ax.axvline(result.budget_ms, ls="--", color="C3", label=f"budget {budget_label(result.budget_ms)}")
    ax.scatter([result.best_latency_ms], [result.best_loss], marker="*", s=160, color="C2", zorder=5, label="winner")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("validation loss (bits/token, label-smoothed)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return True
