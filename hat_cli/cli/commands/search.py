"""`hat search`: evolutionary search for the best SubTransformer under a latency budget."""

from __future__ import annotations

from typing import Optional

import typer

from hat_cli.cli.commands._options import DATA_DIR, DEVICE, JSON, REMOTE, REMOTE_BACKEND, SEED, TASK, THREADS
from hat_cli.cli.console import console, emit_json, handle_errors, make_progress, parse_latency


@handle_errors
def search(
    task: str = TASK,
    hw: str = typer.Option(..., "--hw", help="Hardware whose latency bounds the search (see `hat hw list`)."),
    latency: str = typer.Option(..., "--latency", help="Latency budget with units: 200ms, 3.5s (bare numbers are ms)."),
    supernet: Optional[str] = typer.Option(None, "--supernet", help="SuperTransformer: a model directory or a published name (default: `hat train-super`'s checkpoints/<task>/supertransformer/model, else the task's published one)."),
    data_dir: Optional[str] = DATA_DIR,
    predictor: Optional[str] = typer.Option(None, "--predictor", help="Latency predictor file (default: the hardware backend's one for this task)."),
    population: int = typer.Option(125, "--population", help="Population size (= parents + mutations + crossovers)."),
    parents: int = typer.Option(25, "--parents", help="Best architectures kept each iteration."),
    mutations: int = typer.Option(50, "--mutations", help="Mutants bred each iteration."),
    mutation_prob: float = typer.Option(0.3, "--mutation-prob", help="Probability that a gene is redrawn in a mutant."),
    crossovers: int = typer.Option(50, "--crossovers", help="Crossovers bred each iteration."),
    iterations: int = typer.Option(30, "--iterations", help="Generations scored."),
    max_redraws: int = typer.Option(1000, "--max-redraws", help="Rejection sampling gives up after this many draws per architecture."),
    start: str = typer.Option(
        "hand-scaled", "--start",
        help="The first population: hand-scaled (the space's plain Transformers that fit the budget, at most half of it; the rest random) "
        "or random (HAT's)."),
    valid_subset: Optional[int] = typer.Option(None, "--valid-subset", help="Score on the first N validation sentences only (quick searches)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Tokens per validation batch (default 16384 on GPU, 4096 on CPU)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="bf16 (GPU default) or fp32 (exact; CPU default)."),
    device: Optional[str] = DEVICE,
    seed: int = SEED,
    out: Optional[str] = typer.Option(None, "--out", help="Output folder (default runs/search/<task>-<hw>-<budget>)."),
    verify: bool = typer.Option(
        False, "--verify",
        help="Measure the winner with the hardware's meter as a later measurement would: fresh model instances, each right "
        "after the latency collection's reference architecture (cancels drift where the device got faster; a slower phase "
        "is not credited); reports the noise band. A winner over budget gives way to the best candidate whose prediction, "
        "scaled by the misses' measured/predicted ratio, fits (up to four measured)."),
    verify_rounds: int = typer.Option(5, "--verify-rounds", help="Rounds of --verify (winner and reference, fresh instances each); up to three times as many while the verdict is in doubt."),
    margin: Optional[str] = typer.Option(
        None, "--margin",
        help="Share of the budget kept free so that the winner still fits when measured again: auto (default: "
        "1.645 x the predictor's cross-validated relative error and the device's run-to-run spread combined), a "
        "fraction or a percentage; 0 searches up to the budget, as HAT did."),
    rerank: int = typer.Option(
        0, "--rerank",
        help="Second stage: train the best candidate of up to N coarse cells (encoder width, decoder width, "
        "decoder depth) from scratch for --rerank-updates updates and keep the best by --rerank-metric; with N >= 2 one "
        "place goes to the largest plain Transformer that fits, unless it is a candidate already (0: off, HAT's search)."),
    rerank_updates: Optional[int] = typer.Option(
        None, "--rerank-updates",
        help="Training updates per re-ranked candidate (default: 60% of the task's train-sub updates, where the "
        "validation loss ranks like the finished models'; Multi30k: 1800)."),
    rerank_metric: str = typer.Option(
        "loss", "--rerank-metric",
        help="What picks the re-ranked winner: loss (lowest validation loss) or bleu (highest BLEU of its beam-search "
        "translation of the validation set, the measure the finished model is judged by)."),
    rerank_seeds: int = typer.Option(
        1, "--rerank-seeds",
        help="Trainings per re-ranked candidate, with seeds --seed, --seed + 1, ...; the candidates are ranked by "
        "their means (on Multi30k two seeds of one model differ by 0.6 BLEU, more than a budget's candidates do)."),
    rerank_jobs: int = typer.Option(
        1, "--rerank-jobs",
        help="Re-ranked candidates trained at once, each in its own process (a small model leaves most of a large GPU idle)."),
    threads: Optional[int] = THREADS,
    remote: Optional[str] = REMOTE,
    remote_backend: Optional[str] = REMOTE_BACKEND,
    fresh: bool = typer.Option(False, "--fresh", help="Ignore the scores an earlier (interrupted) run saved in --out."),
    json_output: bool = JSON,
) -> None:
    """Find the SubTransformer with the lowest validation loss whose predicted latency fits the budget.

    HAT's evolutionary search (population 125, 25 parents, 50 mutations, 50 crossovers, 30 iterations), seeded; its first population starts with the plain Transformers that fit (--start random: HAT's). Each architecture is scored once: HAT re-scores the parents every iteration, but the score is deterministic, so the cache changes only the time.

    It searches under the budget less a safety margin (--margin), so that the winner still fits when measured again; --rerank adds a second stage that trains the best candidates briefly from scratch.

    Writes subtransformer.yml (HAT's format), search.json, history.csv, explored.csv and front.png to --out; scores.json there lets an interrupted search resume (--fresh ignores it).
    """
    # Lazily: torch and the library load when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.search.evolution import EvolutionarySearch, EvolutionSettings
    from hat_cli.search.budget import parse_margin
    from hat_cli.search.rerank import RerankSettings
    from hat_cli.search.run import run_search

    algorithm = EvolutionarySearch(EvolutionSettings(
        population=population, parents=parents, mutations=mutations, mutation_prob=mutation_prob,
        crossovers=crossovers, iterations=iterations, seed=seed, max_redraws=max_redraws, start=start,
    ))  # first: its settings are checked before anything is resolved
    request = resolve.search_request(
        task, hw, parse_latency(latency), seed=algorithm.seed, supernet_word=supernet, data_dir_word=data_dir,
        predictor_word=predictor, valid_subset=valid_subset, max_tokens=max_tokens, precision=precision,
        device=device, out=out, verify=verify, fresh=fresh, margin=parse_margin(margin),
        rerank=RerankSettings(candidates=rerank, updates=rerank_updates, jobs=rerank_jobs, metric=rerank_metric,
                              seeds=rerank_seeds), verify_rounds=verify_rounds,
        meter_options=resolve.meter_options(remote, remote_backend, threads),
    )
    with make_progress() as progress:
        summary = run_search(request, algorithm, progress=progress, log=lambda message: console.print(message, highlight=False, soft_wrap=True))
    console.print(
        f"[bold green]best[/] valid loss {summary['valid_loss']:.4f} bits at {summary['predicted_latency_ms']:.1f} ms predicted "
        f"(budget {summary['latency_budget_ms']:g} ms); {summary['evaluations']} architectures scored "
        f"(HAT would score {summary['hat_evaluations']}) in {summary['seconds']:.1f} s -> {summary['config']}",
        highlight=False,
    )
    if "verify" in summary:
        v = summary["verify"]
        console.print(
            f"measured {v['measured_latency_ms']:.2f} ms on {v['measured_on']} (±{100 * v['noise_band']:.1f}%, "
            f"{'drift checked against the reference' if v['drift_corrected'] else 'no reference to check drift'}) "
            f"vs {v['predicted_latency_ms']:.2f} ms predicted; margin kept {100 * summary['margin']['fraction']:.1f}%"
            + (f"; {len(v['rejected'])} better candidate(s) measured over budget first, predictions then scaled by "
               f"{v.get('prediction_scale', 1.0):.3f}" if v.get("rejected") else ""),
            highlight=False)
    if json_output:
        emit_json(summary)
