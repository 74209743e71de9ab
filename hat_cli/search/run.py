"""One search, from resolved inputs to written outputs.

`run_search` takes a :class:`SearchRequest` (every input already resolved: `hat_cli.resolve.search_request`
turns `hat search`'s words into one) and a search algorithm (HAT's evolutionary search by default), and
goes through four stages, each its own function:

1. the budget check (:func:`check_budget`, cheap: the predictor only) -- usually done by resolve already;
2. the fitness (:func:`load_fitness`): the SuperTransformer and the validation data, checked against each
   other, as a validation-loss scorer with inherited weights;
3. the search itself, with scores cached in the output folder so an interrupted search resumes;
4. optionally, a second stage that re-ranks the best candidates by a short training from scratch
   (rerank.py);
5. the outputs (HAT's YAML, search.json, history/explored CSVs, the front plot) and, when asked, a
   measurement of the winner as a later, independent one would make it (:func:`verify_latency`).

The search runs under the budget less a safety margin (budget.py), so that the winner still fits when
measured again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from hat_cli.core import paths
from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text
from hat_cli.core.locks import exclusive
from hat_cli.core.paths import budget_label
from hat_cli.data.batching import load_split
from hat_cli.latency.backends import Backend
from hat_cli.latency.meters import LatencyMeter
from hat_cli.model.directory import check_data_matches, load_model
from hat_cli.model.space import SearchSpace, SubTransformerConfig, SuperShape
from hat_cli.search.algorithm import IterationRecord, PredictFn, SearchAlgorithm, SearchProblem
from hat_cli.search.budget import Margin, budget_margin, verify_against_reference
from hat_cli.search.evolution import EvolutionarySearch, fmt_ms, minimum_latency
from hat_cli.search.outputs import plot_front, write_explored_csv, write_history_csv
from hat_cli.search.rerank import RerankSettings, best_first, pick_candidates, rank, rerank
from hat_cli.tasks import Task

SCORES_FILE = "scores.json"


@dataclass
class SearchRequest:
    """A search with every input resolved."""

    task: Task
    space: SearchSpace  # the task's search space; the SuperTransformer must have its shape
    hardware: str  # the latency backend's name (labels, the default output folder)
    budget_ms: float
    predictor: Any  # an object with .predict(configs) -> one latency (ms) per architecture
    data_dir: Path  # `hat data` output: the validation split is scored
    supernet_dir: Path  # a SuperTransformer model directory
    supernet_label: str = ""  # how the SuperTransformer is named in messages and search.json
    predictor_label: str = ""
    valid_subset: int | None = None
    max_tokens: int | None = None
    precision: str | None = None  # bf16 | fp32; None = bf16 on GPU, fp32 on CPU
    device: str | None = None
    out: Path | None = None  # None = runs/search/<task>-<hw>-<budget>
    verify: Backend | None = None  # measure the winner with this backend's protocol
    timed_shape: SuperShape | None = None  # the shape that protocol times (needed with verify)
    meter_options: Any = None  # hat_cli.latency.meters.MeterOptions of the verifying meter (e.g. a remote device's URL)
    fresh: bool = False  # ignore scores an earlier run left in the output folder
    min_latency_ms: float | None = None  # the budget check's result, when the caller made it
    margin: Margin | None = None  # the share of the budget kept free; None = derived from the predictor
    rerank: RerankSettings = field(default_factory=RerankSettings)  # candidates 0: no second stage
    verify_rounds: int = 5

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else paths.search_dir(self.task.name, self.hardware, self.budget_ms)


def predict_fn(predictor) -> PredictFn:
    def predict(configs):
        return [float(v) for v in predictor.predict(list(configs))]

    return predict


# ======================================================================================= 1. the budget
def check_budget(space: SearchSpace, predictor, budget_ms: float, seed: int, task: str, hardware: str,
                 margin: Margin | None = None) -> float:
    """The smallest predicted latency reachable in ``space``; a HatError when the budget, less the margin,
    is below it."""
    min_latency, _ = minimum_latency(space, predict_fn(predictor), seed=seed)
    searched = budget_ms * (1.0 - (margin.fraction if margin else 0.0))
    if searched < min_latency:
        kept = f" after keeping a {margin.fraction:.1%} margin ({fmt_ms(searched)}; --margin sets it)" if margin and margin.fraction else ""
        raise HatError(
            f"No architecture of task '{task}' meets {fmt_ms(budget_ms)} on '{hardware}'{kept}: "
            f"the smallest reachable predicted latency is {fmt_ms(min_latency)}."
        )
    return min_latency


# ======================================================================================= 2. the fitness
@dataclass
class Fitness:
    """The scorer and what it was built from (recorded in search.json and in the score cache's fingerprint)."""

    score: Any  # hat_cli.search.fitness.ValidationLoss
    device: Any
    precision: str
    max_tokens: int
    sentences: int
    target_tokens: int
    fingerprint: dict
    warnings: list[str] = field(default_factory=list)  # what could not be checked (e.g. unrecorded dictionaries)


def load_fitness(request: SearchRequest) -> Fitness:
    """Validation loss with weights inherited from the SuperTransformer, checked against the space and data."""
    # Lazily: torch. hat_cli.resolve imports this module to build requests, and commands such as
    # `hat zoo list` use resolve without ever needing torch.
    from hat_cli.core.devices import resolve_device
    from hat_cli.search import fitness as fitness_module

    task, space, label = request.task, request.space, request.supernet_label or str(request.supernet_dir)
    data = load_split(request.data_dir, "valid", task.src, task.tgt)
    model, meta = load_model(request.supernet_dir)
    if meta.get("kind") != "supertransformer":
        raise HatError(f"{label} is a SubTransformer; search needs a SuperTransformer (--supernet).")
    if model.super_shape != space.shape:
        raise HatError(f"SuperTransformer {label} does not have the shape of search space '{space.name}' that task '{task.name}' uses.")
    warnings = check_data_matches(meta, data, label, model)

    device = resolve_device(request.device)
    precision = request.precision or fitness_module.default_precision(device)
    max_tokens = request.max_tokens or fitness_module.default_max_tokens(device)
    valid = fitness_module.prepare_validation(data, max_tokens, device, request.valid_subset)
    score = fitness_module.ValidationLoss(model, valid, precision)
    fingerprint = {
        "supernet": str(Path(request.supernet_dir).resolve()),
        "supernet_weights": _file_stamp(Path(request.supernet_dir) / "model.safetensors"),
        "data_dir": str(Path(request.data_dir).resolve()),
        "valid_subset": request.valid_subset,
        "max_tokens": max_tokens,
        "precision": precision,
        "device": device.type,
        "label_smoothing": score.epsilon,
        "scorer": score.settings(),
    }
    return Fitness(score, device, precision, max_tokens, valid.sentences, valid.target_tokens, fingerprint, warnings)


# ======================================================================================= the whole run
def run_search(request: SearchRequest, algorithm: SearchAlgorithm | None = None, progress=None,
               log: Callable[[str], None] = lambda message: None) -> dict:
    """Search with ``algorithm`` (HAT's evolutionary search with its published settings by default), write
    the outputs; returns the JSON summary (CLI.md fields first)."""
    algorithm = algorithm or EvolutionarySearch()
    request.rerank.check()
    started = time.perf_counter()
    task, space = request.task, request.space
    margin = request.margin or budget_margin(request.predictor)
    search_budget = request.budget_ms * (1.0 - margin.fraction)
    min_latency = request.min_latency_ms
    if min_latency is None:
        min_latency = check_budget(space, request.predictor, request.budget_ms, algorithm.seed, task.name, request.hardware, margin)
    if min_latency <= 0:
        log(
            f"warning: the latency predictor gives {fmt_ms(min_latency)} for some architectures of '{space.name}'; "
            f"it extrapolates badly (too few measurements?), so treat its budget check with care."
        )

    out = request.out_dir()
    # One search per output folder: a second one would interleave its scores with this one's.
    with exclusive(out, "a search", "wait for it to finish or choose another --out", folder=True):
        return _search_and_write(request, algorithm, progress, log, started, min_latency, margin, search_budget)


def _search_and_write(request: SearchRequest, algorithm: SearchAlgorithm, progress, log: Callable[[str], None],
                      started: float, min_latency: float, margin: Margin, search_budget: float) -> dict:
    task, space = request.task, request.space
    predict = predict_fn(request.predictor)
    fitness = load_fitness(request)
    for warning in fitness.warnings:
        log(f"warning: {warning}")
    setup_seconds = time.perf_counter() - started
    log(
        f"search in '{space.name}' under {fmt_ms(request.budget_ms)} on {request.hardware}: {fitness.sentences} validation sentences "
        f"({fitness.target_tokens} target tokens), {fitness.precision} on {fitness.device}, smallest reachable {fmt_ms(min_latency)}"
    )

    out = request.out_dir()
    fingerprint = fitness.fingerprint
    known = {} if request.fresh else load_scores(out / SCORES_FILE, fingerprint)
    if known:
        log(f"reusing {len(known)} scores of an earlier run with the same SuperTransformer, data and precision in {out} (--fresh ignores them)")
    saved_scores = dict(known)

    def on_scored(computed: dict) -> None:
        saved_scores.update(computed)
        save_scores(out / SCORES_FILE, fingerprint, saved_scores)

    task_id = None
    if progress is not None:
        task_id = progress.add_task(algorithm.name, total=algorithm.iterations, info="")

    def on_iteration(record: IterationRecord) -> None:
        if progress is not None:
            progress.update(task_id, advance=1, info=f"best {record.best_loss:.4f} @ {record.best_latency_ms:.1f} ms, {record.evaluations} scored")

    search_started = time.perf_counter()
    problem = SearchProblem(space, fitness.score, predict, search_budget, min_latency, known, on_iteration, on_scored)
    result = algorithm.search(problem)
    search_seconds = time.perf_counter() - search_started
    compiler_warning = fitness.score.compile_warning()
    if compiler_warning:
        log(f"warning: {compiler_warning}")
    fitness_settings = {"precision": fitness.precision, "device": str(fitness.device), "max_tokens": fitness.max_tokens,
                        "valid_sentences": fitness.sentences, "valid_target_tokens": fitness.target_tokens,
                        "label_smoothing": fitness.score.epsilon}
    del fitness, problem  # the SuperTransformer's memory goes back before any re-ranking training

    out.mkdir(parents=True, exist_ok=True)
    winner, ranked = result.best, None  # ranked: the candidates best first, which --verify falls back along
    rerank_report = None
    if request.rerank.candidates:
        rerank_report = _rerank(request, result, search_budget, out, algorithm.seed, log)
        ranked = [SubTransformerConfig.from_dict(arch) for arch in rerank_report.pop("ranked")]
        winner = ranked[0]
    verify_report = None
    if request.verify is not None:
        if request.timed_shape is None:
            raise HatError("Verifying the winner's latency needs the task's timed shape (SearchRequest.timed_shape).")
        ranked = ranked or best_first(result.explored, search_budget) or [winner]
        winner, verify_report = _verified_winner(request, task, ranked, result.explored, log)
    winner_loss, winner_latency = result.explored[winner]
    yaml_path = out / "subtransformer.yml"
    winner.save_yaml(yaml_path)
    write_history_csv(out / "history.csv", result)
    write_explored_csv(out / "explored.csv", result)
    plotted = plot_front(out / "front.png", result, f"{task.name} on {request.hardware}, budget {budget_label(request.budget_ms)}")
    if not plotted:
        log("matplotlib is not installed, so front.png was not drawn (pip install 'hat-cli[plot]').")

    summary = {
        "config": str(yaml_path),
        "arch": winner.to_hat_keys(),
        "predicted_latency_ms": winner_latency,
        "valid_loss": winner_loss,
        "evaluations": result.evaluations,
        "seconds": search_seconds,
        "task": task.name,
        "hardware": request.hardware,
        "latency_budget_ms": request.budget_ms,
        "search_budget_ms": search_budget,
        "margin": margin.to_dict(),
        "rerank": rerank_report,
        "min_reachable_latency_ms": min_latency,
        "hat_evaluations": result.hat_evaluations,
        "computed_evaluations": result.computed,
        "reused_evaluations": result.evaluations - result.computed,
        "rejection_sampling": {"draws": result.draws, "rejected": result.rejected, "fallbacks": result.fallbacks},
        "setup_seconds": setup_seconds,
        "seed": algorithm.seed,
        "settings": {
            **algorithm.settings(),
            "algorithm": algorithm.name,
            "supernet": request.supernet_label or str(request.supernet_dir),
            "supernet_dir": str(request.supernet_dir),
            "data_dir": str(request.data_dir),
            "predictor": request.predictor_label or type(request.predictor).__name__,
            **fitness_settings,
            "valid_subset": request.valid_subset,
            "loss_unit": "bits per target token (label-smoothed, as HAT's valid_loss)",
            "space": space.name,
            "out": str(out),
        },
        "files": {"history": str(out / "history.csv"), "explored": str(out / "explored.csv"), "front": str(out / "front.png") if plotted else None},
    }
    if verify_report is not None:
        summary["verify"] = verify_report
    atomic_write_text(out / "search.json", json.dumps(summary, indent=2) + "\n")
    return summary


# ======================================================================================= 4. re-ranking
def _rerank(request: SearchRequest, result, search_budget: float, out: Path, seed: int, log) -> dict:
    """Train the best candidate of each coarse cell briefly from scratch; the lowest validation loss (or the
    highest validation BLEU) wins."""
    settings = request.rerank
    updates = settings.updates_for(request.task.name)
    candidates = pick_candidates(result.explored, search_budget, settings.candidates)
    seeds = f" with {settings.seeds} seeds" if settings.seeds > 1 else ""
    log(f"re-ranking {len(candidates)} candidates by {updates} updates of training each{seeds}, by validation {settings.metric}")
    started = time.perf_counter()
    records = rerank(candidates, request.task, request.space, request.data_dir, out / "rerank", settings, request.device,
                     seed=seed, log=log)
    order = rank(records, settings.metric)
    best = order[0]
    return {
        "candidates": [{"arch": c.to_hat_keys(), "inherited_valid_loss": result.explored[c][0],
                        "predicted_latency_ms": result.explored[c][1], "hand_scaled": c.is_hand_scaled(),
                        "rerank_valid_loss": r["valid_loss"],
                        **({"rerank_valid_bleu": r["valid_bleu"]} if "valid_bleu" in r else {}),
                        **({"rerank_seed_valid_losses": r["seed_valid_loss"]} if "seed_valid_loss" in r else {}),
                        **({"rerank_seed_valid_bleus": r["seed_valid_bleu"]} if "seed_valid_bleu" in r else {})}
                       for c, r in zip(candidates, records)],
        "metric": settings.metric,
        "updates": updates,
        "seeds": settings.seeds,
        "chosen": best,
        "ranked": [candidates[i].to_dict() for i in order],  # best first: the winner, then --verify's fallbacks
        "seconds": time.perf_counter() - started,
    }


# ======================================================================================= the score cache
def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def load_scores(path: Path, fingerprint: dict) -> dict[SubTransformerConfig, float]:
    """Scores an earlier (possibly interrupted) run saved, if it scored with the same fitness; else {}."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("fingerprint") != fingerprint:
        return {}
    try:
        return {SubTransformerConfig.from_dict(row["arch"]): float(row["valid_loss"]) for row in doc.get("scores", [])}
    except (KeyError, TypeError, ValueError):
        return {}


def save_scores(path: Path, fingerprint: dict, scores: Mapping[SubTransformerConfig, float]) -> None:
    """Every score so far, rewritten atomically after each generation, so an interrupted search resumes."""
    rows = [{"arch": c.to_dict(), "valid_loss": loss} for c, loss in scores.items()]
    atomic_write_text(path, json.dumps({"fingerprint": fingerprint, "scores": rows}) + "\n")


# ======================================================================================= 5. verification
# How many candidates --verify measures before it gives up looking for one that fits.
VERIFY_CANDIDATES = 4


def _verified_winner(request: SearchRequest, task: Task, ranked: list[SubTransformerConfig],
                     explored: Mapping[SubTransformerConfig, tuple[float, float]], log) -> tuple[SubTransformerConfig, dict]:
    """The best candidate that measures within the budget; the first one (with its report) if none does.

    The predictor's error is not the same everywhere: candidates near the budget often share it, so after a miss
    the next best one predicted as fast usually misses too (a demo run measured four such 11-13% over their
    predictions in a row). So every miss scales the predictions by the largest measured/predicted ratio seen so
    far, and the next candidate is the best one (in ``ranked`` order, then any other scored one by loss) whose
    scaled prediction fits the budget. Measuring, not predicting, decides what is delivered."""
    backend = request.verify
    warning = backend.foreign_device_warning()
    if warning:
        log(f"warning: {warning}")
    rejected: list[dict] = []
    first = None
    slowdown = 1.0  # the largest measured / predicted ratio of the candidates that missed
    in_ranked = set(ranked)
    pool = list(ranked) + [c for c in best_first(explored, request.budget_ms) if c not in in_ranked]
    # One meter for every candidate (a remote device's connection, a GPU's warm state); each measurement still
    # builds a fresh model instance.
    meter = LatencyMeter(backend, task, request.timed_shape, options=request.meter_options)
    tried: set[SubTransformerConfig] = set()
    try:
        for _ in range(VERIFY_CANDIDATES):
            # The search's own choice first, whatever its prediction; then only what fits once scaled.
            config = next((c for c in pool if c not in tried and (not tried or explored[c][1] * slowdown <= request.budget_ms)), None)
            if config is None:
                break
            tried.add(config)
            loss, predicted = explored[config]
            report = verify_latency(meter, config, predicted, request.budget_ms, log, request.predictor, request.verify_rounds)
            first = first or (config, report)
            if report["within_budget"]:
                if rejected:
                    log(f"the candidate ranked {pool.index(config) + 1} measures within the budget and is the winner "
                        f"(predictions scaled by {slowdown:.3f} after {len(rejected)} miss{'es' if len(rejected) > 1 else ''}).")
                return config, {**report, "rejected": rejected, "prediction_scale": slowdown}
            rejected.append({"arch": config.to_hat_keys(), "valid_loss": loss, "measured_latency_ms": report["measured_latency_ms"],
                             "predicted_latency_ms": predicted})
            if predicted > 0:
                slowdown = max(slowdown, report["measured_latency_ms"] / predicted)
    finally:
        meter.close()
    config, report = first
    log(f"warning: none of the {len(rejected)} candidates measured fits the budget; the best one is kept.")
    return config, {**report, "rejected": rejected, "prediction_scale": slowdown}


def verify_latency(meter: LatencyMeter, config: SubTransformerConfig, predicted_ms: float, budget_ms: float, log,
                   predictor: Any = None, rounds: int = 5) -> dict:
    """Measure the winner as a later, independent measurement would (budget.py), with ``meter`` (the backend's):
    fresh model instances, each round right after the latency collection's reference architecture, whose
    latency then is known."""
    backend = meter.backend
    reference_record = (getattr(predictor, "training", None) or {}).get("reference") or {}
    reference = SubTransformerConfig.from_dict(reference_record["arch"]) if reference_record.get("arch") else None
    measurements: list[dict] = []

    def measure(arch: SubTransformerConfig) -> float:
        measured = meter.measure(arch)  # a fresh model instance every time
        if arch is config:
            measurements.append(measured.to_dict())
        return measured.total_ms

    checked = verify_against_reference(measure, config, reference, reference_record.get("median_ms"), budget_ms, rounds)
    hw = backend.name
    total = checked["measured_latency_ms"]
    where = meter.describe_device() if backend.local else f"this machine, with {hw}'s protocol (not {hw} itself)"
    report = {
        **checked,
        "predicted_latency_ms": predicted_ms,
        "prediction_error": (predicted_ms - total) / total if total else None,
        "measured": measurements[-1] if measurements else None,
        "measured_on": where,
    }
    if total > budget_ms:
        log(
            f"warning: the candidate measures {total:.2f} ms on {where}, over the {budget_label(budget_ms)} budget "
            f"(predicted {predicted_ms:.2f} ms, noise band ±{100 * checked['noise_band']:.1f}%)."
        )
    return report
