"""`hat search`: evolutionary search for the best SubTransformer under a latency budget."""

from __future__ import annotations

from typing import Optional

import typer

from hat_cli.cli.commands._options import DATA_DIR, DEVICE, JSON, SEED, TASK
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
    valid_subset: Optional[int] = typer.Option(None, "--valid-subset", help="Score on the first N validation sentences only (quick searches)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Tokens per validation batch (default 16384 on GPU, 4096 on CPU)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="bf16 (GPU default) or fp32 (exact; CPU default)."),
    device: Optional[str] = DEVICE,
    seed: int = SEED,
    out: Optional[str] = typer.Option(None, "--out", help="Output folder (default runs/search/<task>-<hw>-<budget>)."),
    verify: bool = typer.Option(False, "--verify", help="Measure the winner on this machine and compare with the prediction."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore the scores an earlier (interrupted) run saved in --out."),
    json_output: bool = JSON,
) -> None:
    """Find the SubTransformer with the lowest validation loss whose predicted latency fits the budget.

    HAT's evolutionary search (population 125, 25 parents, 50 mutations, 50 crossovers, 30 iterations), seeded. Each architecture is scored once: HAT re-scores the parents every iteration, but the score is deterministic, so the cache changes only the time.

    Writes subtransformer.yml (HAT's format), search.json, history.csv, explored.csv and front.png to --out; scores.json there lets an interrupted search resume (--fresh ignores it).
    """
    # Lazily: torch and the library load when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.search.evolution import EvolutionarySearch, EvolutionSettings
    from hat_cli.search.run import run_search

    algorithm = EvolutionarySearch(EvolutionSettings(
        population=population, parents=parents, mutations=mutations, mutation_prob=mutation_prob,
        crossovers=crossovers, iterations=iterations, seed=seed, max_redraws=max_redraws,
    ))  # first: its settings are checked before anything is resolved
    request = resolve.search_request(
        task, hw, parse_latency(latency), seed=algorithm.seed, supernet_word=supernet, data_dir_word=data_dir,
        predictor_word=predictor, valid_subset=valid_subset, max_tokens=max_tokens, precision=precision,
        device=device, out=out, verify=verify, fresh=fresh,
    )
    with make_progress() as progress:
        summary = run_search(request, algorithm, progress=progress, log=lambda message: console.print(message, highlight=False))
    console.print(
        f"[bold green]best[/] valid loss {summary['valid_loss']:.4f} bits at {summary['predicted_latency_ms']:.1f} ms predicted "
        f"(budget {summary['latency_budget_ms']:g} ms); {summary['evaluations']} architectures scored "
        f"(HAT would score {summary['hat_evaluations']}) in {summary['seconds']:.1f} s -> {summary['config']}",
        highlight=False,
    )
    if "verify" in summary:
        v = summary["verify"]
        console.print(f"measured {v['measured_latency_ms']:.1f} ms on this machine vs {v['predicted_latency_ms']:.1f} ms predicted", highlight=False)
    if json_output:
        emit_json(summary)
