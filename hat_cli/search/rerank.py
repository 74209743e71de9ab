"""The search's second stage: re-rank the best candidates by a short training from scratch.

The SuperTransformer's inherited validation loss is a cheap proxy, but a biased one across the coarse
knobs: shared weights favour wide slices, while trained alone, narrower models can do as well or better on a
small corpus (bench/RESULTS.md, "Rank fidelity"). So the evolutionary search proposes, and a short
standalone training disposes:

1. candidates: among the scored architectures that meet the (margined) budget, the best of every coarse cell
   (encoder width, decoder width, decoder depth), best cells first, ``count`` of them; with two or more, the
   last place goes to the plain Transformer a person would pick (the hand-scaled one of the largest predicted
   latency within the budget) unless it is a candidate already, so that the stage can only hand back
   something its own training ranks above the hand-scaled answer;
2. each candidate is trained alone for ``updates`` updates with the task's SubTransformer recipe (its first
   ``updates`` updates, the same learning-rate schedule as the full run), and validated at the end; with
   ``jobs`` > 1 that many candidates train side by side, each in its own process (a small model leaves most
   of a large GPU idle, so side by side the stage ends sooner; the numbers are the same either way);
3. the winner is the candidate with the lowest validation loss, or with ``metric="bleu"`` the highest BLEU on
   the validation set (the task's beam search), which is what the finished model is judged by: on Multi30k the
   validation loss orders finished models' BLEU with a Kendall tau of only about 0.5 (bench/RESULTS.md). With
   ``seeds`` > 1 every candidate is trained that many times (seeds seed, seed + 1, ...) and ranked by the means:
   on Multi30k two seeds of one architecture differ by 0.6 BLEU, more than the candidates of a budget do.

Results are saved after every candidate (``rerank.json``), so an interrupted stage resumes where it was.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.training.config import published_defaults, resolve_training_config

RERANK_FILE = "rerank.json"
METRICS = ("loss", "bleu")


# Share of the task's SubTransformer training that a candidate gets by default. On Multi30k (H100, ten
# architectures trained alone, bench/RESULTS.md "Rank fidelity") the validation loss after N of 3000 updates
# ordered them like the final models' with Kendall tau 0.51 at N = 1000, 0.73 at 1500 and 0.91 at 1750-2000.
DEFAULT_SHARE = 0.6


@dataclass(frozen=True)
class RerankSettings:
    candidates: int = 0  # 0: no second stage (HAT's search)
    updates: Optional[int] = None  # None: DEFAULT_SHARE of the task's train-sub updates
    jobs: int = 1  # candidates trained at once, each in its own process
    metric: str = "loss"  # "loss": lowest validation loss wins; "bleu": highest validation BLEU
    seeds: int = 1  # trainings per candidate (seeds seed, seed+1, ...): the candidates are ranked by their means

    def check(self) -> None:
        if self.candidates < 0:
            raise HatError(f"--rerank must not be negative, got {self.candidates}.")
        if self.metric not in METRICS:
            raise HatError(f"--rerank-metric must be one of {', '.join(METRICS)}, got '{self.metric}'.")
        if self.jobs < 1:
            raise HatError(f"--rerank-jobs must be at least 1, got {self.jobs}.")
        if self.seeds < 1:
            raise HatError(f"--rerank-seeds must be at least 1, got {self.seeds}.")
        if self.candidates and self.updates is not None and self.updates < 1:
            raise HatError(f"--rerank-updates must be at least 1, got {self.updates}.")

    def updates_for(self, task_name: str) -> int:
        if self.updates is not None:
            return self.updates
        return max(1, round(DEFAULT_SHARE * published_defaults(task_name, "sub")["max_updates"]))


def cell(config: SubTransformerConfig) -> tuple[int, int, int]:
    """The coarse knobs whose ranking the shared weights bias most."""
    return (config.encoder_embed_dim, config.decoder_embed_dim, config.decoder_layer_num)


def best_first(explored: Mapping[SubTransformerConfig, tuple[float, float]], budget_ms: float) -> list[SubTransformerConfig]:
    """The scored architectures whose (loss, predicted latency) fits ``budget_ms``, lowest loss first (then
    fastest); NaN losses left out."""
    feasible = [(loss, latency, config) for config, (loss, latency) in explored.items() if latency <= budget_ms and loss == loss]
    return [config for _, _, config in sorted(feasible, key=lambda row: (row[0], row[1]))]


def pick_candidates(explored: Mapping[SubTransformerConfig, tuple[float, float]], budget_ms: float,
                    count: int) -> list[SubTransformerConfig]:
    """The best feasible architecture of each coarse cell, best cells first, at most ``count``; with ``count``
    >= 2 the last place goes to the largest feasible plain Transformer unless it is picked already."""
    ranked = best_first(explored, budget_ms)
    best_of_cell: dict[tuple[int, int, int], SubTransformerConfig] = {}
    for config in ranked:
        best_of_cell.setdefault(cell(config), config)
    picked = list(best_of_cell.values())[:count]
    plain = [config for config in ranked if config.is_hand_scaled()]
    if count >= 2 and plain:
        largest = max(plain, key=lambda config: (explored[config][1], -explored[config][0]))
        if largest not in picked:
            picked = picked[: count - 1] + [largest]
    return picked


def _fingerprint(config: SubTransformerConfig, updates: int, data_dir: Path, seed: int, metric: str) -> dict[str, Any]:
    key = {"arch": config.to_dict(), "updates": updates, "data_dir": str(Path(data_dir).resolve()), "seed": seed}
    if metric != "loss":  # records of loss-ranked runs (which hold no BLEU) stay valid for them
        key["metric"] = metric
    return key


def rank(records: list[dict[str, Any]], metric: str) -> list[int]:
    """Indices of ``records``, best first: lowest validation loss, or highest validation BLEU."""
    if metric == "bleu":
        return sorted(range(len(records)), key=lambda i: (-records[i]["valid_bleu"], records[i]["valid_loss"]))
    return sorted(range(len(records)), key=lambda i: records[i]["valid_loss"])


def rerank(
    candidates: list[SubTransformerConfig],
    task,
    space: SearchSpace,
    data_dir: Path,
    out: Path,
    settings: RerankSettings,
    device: Optional[str] = None,
    seed: int = 1,
    log: Callable[[str], None] = lambda message: None,
) -> list[dict[str, Any]]:
    """Train every candidate ``settings.seeds`` times for ``settings.updates`` updates; one record per candidate,
    in input order, holding the means over its seeds (and each seed's numbers under ``seed_*`` keys)."""
    # Lazily: torch (run.py's module level stays light for hat_cli.resolve, see load_fitness).
    from hat_cli.training.loop import TrainRun

    out.mkdir(parents=True, exist_ok=True)
    record_path = out / RERANK_FILE
    try:
        done = json.loads(record_path.read_text(encoding="utf-8")).get("candidates", [])
    except (OSError, ValueError, AttributeError):
        done = []
    n = settings.updates_for(task.name)
    seeds = [seed + k for k in range(settings.seeds)]
    configs = {s: resolve_training_config(task.name, "sub", None, {
        "max_updates": n, "final_model": "last", "keep_last": 1, "validate_every": n, "save_interval_updates": n,
        "seed": s}) for s in seeds}
    if configs[seed].lr_scheduler == "cosine":  # a cosine schedule would decay over the short run, unlike the full one
        log("note: the task's cosine schedule is stretched over the short re-ranking run.")
    todo: list[tuple[tuple[int, int], TrainRun]] = []
    measured_runs: dict[tuple[int, int], dict[str, Any]] = {}
    for i, config in enumerate(candidates):
        for s in seeds:
            key = _fingerprint(config, n, data_dir, s, settings.metric)
            previous = next((r for r in done if r.get("fingerprint") == key), None)
            if previous is not None:  # records of earlier runs are reused seed by seed
                measured_runs[(i, s)] = previous
                continue
            # The first seed keeps the folder name of a one-seed stage, so that its records stay where they were.
            save_dir = out / (f"candidate-{i}" if s == seed else f"candidate-{i}-seed{s}")
            todo.append(((i, s), TrainRun(task=task, kind="sub", data_dir=Path(data_dir), save_dir=save_dir,
                                          config=configs[s], space=space, arch=config, device=device, resume=False)))

    def finished(run_key: tuple[int, int], save_dir: Path, measured: dict[str, Any]) -> None:
        i, s = run_key
        measured_runs[run_key] = {"fingerprint": _fingerprint(candidates[i], n, data_dir, s, settings.metric),
                                  "arch": candidates[i].to_dict(), **measured}
        _drop_weights(save_dir)
        kept = list(measured_runs.values())
        atomic_write_text(record_path, json.dumps({"candidates": kept + [r for r in done if r not in kept]}, indent=2) + "\n")
        bleu = f", valid BLEU {measured['valid_bleu']:.2f}" if "valid_bleu" in measured else ""
        which = f" seed {s}" if len(seeds) > 1 else ""
        log(f"re-rank {len(measured_runs)}/{len(candidates) * len(seeds)}: candidate {i + 1}{which} valid loss "
            f"{measured['valid_loss']:.3f}{bleu} after {n} updates")

    if settings.jobs <= 1 or len(todo) <= 1:
        for run_key, run in todo:
            finished(run_key, run.save_dir, _train_one(run, settings.metric))
    else:
        # spawn, not fork: a forked child would inherit this process's CUDA state, which CUDA does not allow.
        # The workers use this process's CPU thread count: a different one sums in another order on a CPU,
        # and the candidates' numbers would then depend on --rerank-jobs.
        import torch  # lazily, as TrainRun above

        with ProcessPoolExecutor(max_workers=min(settings.jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_use_threads, initargs=(torch.get_num_threads(),)) as pool:
            futures = {pool.submit(_train_one, run, settings.metric): (run_key, run.save_dir) for run_key, run in todo}
            for future in as_completed(futures):
                run_key, save_dir = futures[future]
                finished(run_key, save_dir, future.result())
    return [_mean_over_seeds([measured_runs[(i, s)] for s in seeds]) for i in range(len(candidates))]


def _mean_over_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One candidate's record: its seeds' means, and with several seeds each seed's numbers."""
    record = dict(runs[0])
    if len(runs) == 1:
        return record
    for measure in ("valid_loss", "valid_bleu", "train_seconds"):
        if all(measure in run for run in runs):
            values = [run[measure] for run in runs]
            record[measure] = sum(values) / len(values)
            record[f"seed_{measure}"] = values
    return record


def _use_threads(count: int) -> None:
    """A worker's start: the parent's CPU thread count."""
    import torch  # lazily, as in rerank()

    torch.set_num_threads(count)


def _train_one(run, metric: str = "loss") -> dict[str, Any]:
    """Train one candidate: its validation loss, training seconds and, with metric "bleu", the BLEU of its
    translation of the validation set. Module level, so a worker process can run it."""
    from hat_cli.training.loop import train  # lazily: torch, as in rerank()

    result = train(run)
    measured: dict[str, Any] = {"valid_loss": result.valid_loss["arch"], "train_seconds": result.train_seconds}
    if metric == "bleu":
        from hat_cli.evaluation.translate import evaluate  # lazily: torch

        scored = evaluate(result.checkpoint, run.task, run.data_dir, subset="valid", device=run.device,
                          output=run.save_dir / "valid.hyp.txt", label=f"re-ranked candidate {run.save_dir.name}")
        measured["valid_bleu"] = scored.bleu
    return measured


def _drop_weights(save_dir: Path) -> None:
    """Only the number matters: drop the weights and the pointer to them, keep the log."""
    for path in save_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    (save_dir / "last.json").unlink(missing_ok=True)
