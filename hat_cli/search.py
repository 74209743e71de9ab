"""Evolutionary search for the SubTransformer with the lowest validation loss under a latency budget.

The algorithm is HAT's (HAT-SPEC §6): a flat gene per architecture, a population of 125 drawn uniformly
and kept only if the predicted latency meets the budget, then per iteration: score the population, keep
the best 25 as parents, add 50 mutants (each gene redrawn with probability 0.3) and 50 crossovers (each
gene from one of two distinct parents with probability 0.5), redrawing any child over the budget.
The answer is the best of the last scored population; the last iteration's children are never scored.

Where we differ from the original, on purpose:
- one seeded ``random.Random`` drives every draw, so a search is reproducible (HAT is unseeded);
- scores are cached per *architecture* (genes that differ only in unused layers are one architecture):
  the original re-scores the 25 parents every iteration and scores duplicates again; we score each
  architecture once, which changes no ranking (the score is deterministic) but saves ~20% of the work;
- rejection sampling draws candidates in chunks (one predictor call per chunk) and is bounded: an
  infeasible budget fails at once with the smallest reachable latency instead of looping forever.

Pure Python, no torch: the fitness and the latency predictor are callables passed in.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

from hat_cli.errors import HatError
from hat_cli.space import SearchSpace, SubTransformerConfig

Gene = tuple[int, ...]
# score(configs) -> one loss per config (lower is better); predict(configs) -> one latency (ms) per config.
ScoreFn = Callable[[list[SubTransformerConfig]], Sequence[float]]
PredictFn = Callable[[list[SubTransformerConfig]], Sequence[float]]


class Genome:
    """HAT's gene layout (HAT-SPEC §6) for one search space.

    [enc embed, enc layers, enc FFN x Le, enc heads x Le, dec embed, dec layers, dec FFN x Ld,
     dec self heads x Ld, dec ende heads x Ld, dec arbitrary x Ld], Le/Ld = the super layer counts.
    Positions past the chosen layer count are carried along but do not change the architecture.
    """

    def __init__(self, space: SearchSpace):
        self.space = space
        c, le, ld = space.choices, space.shape.encoder_layers, space.shape.decoder_layers
        self.encoder_layers, self.decoder_layers = le, ld
        self.choices: tuple[tuple[int, ...], ...] = (
            (c["encoder_embed_dim"], c["encoder_layer_num"])
            + (c["encoder_ffn_embed_dim"],) * le
            + (c["encoder_self_attention_heads"],) * le
            + (c["decoder_embed_dim"], c["decoder_layer_num"])
            + (c["decoder_ffn_embed_dim"],) * ld
            + (c["decoder_self_attention_heads"],) * ld
            + (c["decoder_ende_attention_heads"],) * ld
            + (c["decoder_arbitrary_ende_attn"],) * ld
        )

    def __len__(self) -> int:
        return len(self.choices)

    def to_config(self, gene: Gene) -> SubTransformerConfig:
        le, ld = self.encoder_layers, self.decoder_layers
        enc_layers, dec_layers = gene[1], gene[3 + 2 * le]
        enc_ffn = gene[2 : 2 + le]
        enc_heads = gene[2 + le : 2 + 2 * le]
        d = 2 + 2 * le  # start of the decoder part
        dec_ffn = gene[d + 2 : d + 2 + ld]
        dec_self = gene[d + 2 + ld : d + 2 + 2 * ld]
        dec_ende = gene[d + 2 + 2 * ld : d + 2 + 3 * ld]
        dec_arb = gene[d + 2 + 3 * ld : d + 2 + 4 * ld]
        return SubTransformerConfig(
            encoder_embed_dim=gene[0],
            decoder_embed_dim=gene[d],
            encoder_layer_num=enc_layers,
            decoder_layer_num=dec_layers,
            encoder_ffn_embed_dim=enc_ffn[:enc_layers],
            encoder_self_attention_heads=enc_heads[:enc_layers],
            decoder_ffn_embed_dim=dec_ffn[:dec_layers],
            decoder_self_attention_heads=dec_self[:dec_layers],
            decoder_ende_attention_heads=dec_ende[:dec_layers],
            decoder_arbitrary_ende_attn=dec_arb[:dec_layers],
        )

    def from_config(self, config: SubTransformerConfig) -> Gene:
        """Unused layer positions are filled with the first layer's value, as HAT's converter does."""
        le, ld = self.encoder_layers, self.decoder_layers

        def pad(values: tuple[int, ...], n: int) -> tuple[int, ...]:
            return tuple(values[:n]) + (values[0],) * (n - len(values))

        return (
            (config.encoder_embed_dim, config.encoder_layer_num)
            + pad(config.encoder_ffn_embed_dim, le)
            + pad(config.encoder_self_attention_heads, le)
            + (config.decoder_embed_dim, config.decoder_layer_num)
            + pad(config.decoder_ffn_embed_dim, ld)
            + pad(config.decoder_self_attention_heads, ld)
            + pad(config.decoder_ende_attention_heads, ld)
            + pad(config.decoder_arbitrary_ende_attn, ld)
        )

    def random(self, rng: random.Random) -> Gene:
        return tuple(rng.choice(options) for options in self.choices)

    def mutate(self, gene: Gene, rng: random.Random, prob: float) -> Gene:
        # The coin is flipped for every position; a redraw may give the same value back (as in HAT).
        return tuple(rng.choice(options) if rng.random() < prob else value for value, options in zip(gene, self.choices))

    def crossover(self, first: Gene, second: Gene, rng: random.Random) -> Gene:
        return tuple(a if rng.random() < 0.5 else b for a, b in zip(first, second))


@dataclass(frozen=True)
class EvolutionSettings:
    """HAT's published search settings (HAT-SPEC §6) plus the bound on redraws."""

    population: int = 125
    parents: int = 25
    mutations: int = 50
    mutation_prob: float = 0.3
    crossovers: int = 50
    iterations: int = 30
    seed: int = 1
    # Rejection sampling gives up after this many draws per wanted architecture (HAT loops forever).
    max_redraws: int = 1000

    def check(self) -> None:
        if self.population < 1 or self.iterations < 1:
            raise HatError("--population and --iterations must be at least 1.")
        if not 1 <= self.parents <= self.population:
            raise HatError(f"--parents must be between 1 and the population size {self.population}, got {self.parents}.")
        if self.mutations < 0 or self.crossovers < 0:
            raise HatError("--mutations and --crossovers cannot be negative.")
        if self.parents + self.mutations + self.crossovers != self.population:
            raise HatError(
                f"The population ({self.population}) must equal parents + mutations + crossovers "
                f"({self.parents} + {self.mutations} + {self.crossovers} = {self.parents + self.mutations + self.crossovers}), as in HAT."
            )
        if self.crossovers and self.parents < 2:
            raise HatError("Crossover needs at least 2 parents; raise --parents or set --crossovers 0.")
        if not 0.0 <= self.mutation_prob <= 1.0:
            raise HatError(f"--mutation-prob must be between 0 and 1, got {self.mutation_prob}.")
        if self.max_redraws < 1:
            raise HatError("--max-redraws must be at least 1.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IterationRecord:
    iteration: int
    best_loss: float
    best_latency_ms: float
    parents_mean_loss: float
    new_evaluations: int
    evaluations: int  # cumulative unique architectures scored


@dataclass
class SearchResult:
    best: SubTransformerConfig
    best_loss: float
    best_latency_ms: float
    budget_ms: float
    min_latency_ms: float
    evaluations: int  # unique architectures in this search (each scored once)
    hat_evaluations: int  # what the original would have scored: iterations x population
    history: list[IterationRecord]
    # every scored architecture: config -> (loss, predicted latency); insertion order = scoring order
    explored: dict[SubTransformerConfig, tuple[float, float]]
    draws: int  # candidates drawn by rejection sampling, accepted or not
    rejected: int
    fallbacks: int  # children replaced by their parent after max_redraws rejections
    computed: int = 0  # scores the fitness computed in this run (evaluations minus those reused from `known`)
    settings: EvolutionSettings = field(default_factory=EvolutionSettings)


def minimum_latency(space: SearchSpace, predict: PredictFn, seed: int = 0, samples: int = 512, rounds: int = 30) -> tuple[float, SubTransformerConfig]:
    """The smallest predicted latency we can find in ``space`` (a bounded search, an upper bound on the true one).

    A learned predictor need not be monotonic, so besides the smallest architecture we try random ones
    and then walk downhill one gene at a time from the best, at most ``rounds`` steps.
    """
    genome = Genome(space)
    rng = random.Random(seed)
    starts = [genome.from_config(space.smallest(a)) for a in space.choices["decoder_arbitrary_ende_attn"]]
    starts += [genome.random(rng) for _ in range(samples)]
    latencies = _predict(predict, genome, starts)
    best_index = min(range(len(starts)), key=latencies.__getitem__)
    best, best_latency = starts[best_index], latencies[best_index]
    for _ in range(rounds):
        neighbours = [
            best[:i] + (value,) + best[i + 1 :]
            for i, options in enumerate(genome.choices)
            for value in options
            if value != best[i]
        ]
        if not neighbours:
            break
        lat = _predict(predict, genome, neighbours)
        i = min(range(len(neighbours)), key=lat.__getitem__)
        if lat[i] >= best_latency:
            break
        best, best_latency = neighbours[i], lat[i]
    return best_latency, genome.to_config(best)


def _predict(predict: PredictFn, genome: Genome, genes: Sequence[Gene]) -> list[float]:
    latencies = [float(v) for v in predict([genome.to_config(g) for g in genes])]
    if len(latencies) != len(genes):
        raise HatError(f"The latency predictor returned {len(latencies)} values for {len(genes)} architectures.")
    return latencies


class _FeasibleSampler:
    """Rejection sampling in chunks: draw candidates, predict them in one call, keep those within budget."""

    def __init__(self, genome: Genome, predict: PredictFn, budget_ms: float, max_redraws: int):
        self.genome, self.predict, self.budget_ms, self.max_redraws = genome, predict, budget_ms, max_redraws
        self.draws = 0
        self.rejected = 0

    def draw(self, make: Callable[[], Gene], wanted: int) -> list[tuple[Gene, float]]:
        """Up to ``wanted`` feasible (gene, latency) pairs, in draw order; fewer if the redraw bound is hit."""
        accepted: list[tuple[Gene, float]] = []
        limit = wanted * self.max_redraws
        drawn = 0
        feasible = 0
        while len(accepted) < wanted and drawn < limit:
            missing = wanted - len(accepted)
            # Size the chunk by the acceptance rate seen so far, so tight budgets need few predictor calls.
            rate = feasible / drawn if drawn else 0.5
            chunk = min(max(math.ceil(1.2 * missing / max(rate, 1e-3)), 32), 16384, limit - drawn)
            genes = [make() for _ in range(chunk)]
            drawn += chunk
            for gene, latency in zip(genes, _predict(self.predict, self.genome, genes)):
                if latency > self.budget_ms:
                    self.rejected += 1
                    continue
                feasible += 1
                if len(accepted) < wanted:
                    accepted.append((gene, latency))
        self.draws += drawn
        return accepted


def evolutionary_search(
    space: SearchSpace,
    score: ScoreFn,
    predict: PredictFn,
    budget_ms: float,
    settings: EvolutionSettings = EvolutionSettings(),
    on_iteration: Callable[[IterationRecord], None] | None = None,
    on_scored: Callable[[dict[SubTransformerConfig, float]], None] | None = None,
    min_latency: float | None = None,
    known: Mapping[SubTransformerConfig, float] | None = None,
) -> SearchResult:
    """Run HAT's evolutionary search; ``score`` is only ever called with architectures not scored before.

    ``known`` holds scores computed earlier with the same fitness (a resumed run): they are reused, not
    recomputed. ``on_scored`` sees each generation's newly computed scores (to persist them).
    ``min_latency`` (from :func:`minimum_latency`) may be passed when the caller already checked it.
    """
    known = known or {}
    settings.check()
    genome = Genome(space)
    if min_latency is None:
        min_latency, _ = minimum_latency(space, predict, seed=settings.seed)
    if budget_ms < min_latency:
        raise HatError(
            f"No architecture in search space '{space.name}' meets the {_fmt_ms(budget_ms)} budget: "
            f"the smallest reachable predicted latency is {_fmt_ms(min_latency)}."
        )
    rng = random.Random(settings.seed)
    sampler = _FeasibleSampler(genome, predict, budget_ms, settings.max_redraws)

    initial = sampler.draw(lambda: genome.random(rng), settings.population)
    if len(initial) < settings.population:
        rate = len(initial) / max(sampler.draws, 1)
        raise HatError(
            f"Only {len(initial)} of {sampler.draws} random architectures met the {_fmt_ms(budget_ms)} budget "
            f"(acceptance {rate:.2%}, smallest reachable {_fmt_ms(min_latency)}); raise the budget or --max-redraws."
        )
    population = initial
    explored: dict[SubTransformerConfig, tuple[float, float]] = {}
    history: list[IterationRecord] = []
    fallbacks = 0
    computed_total = 0

    for iteration in range(settings.iterations):
        configs = [genome.to_config(g) for g, _ in population]
        fresh = list(dict.fromkeys(c for c in configs if c not in explored))
        to_score = [c for c in fresh if c not in known]
        computed: dict[SubTransformerConfig, float] = {}
        if to_score:
            losses = [float(v) for v in score(to_score)]
            if len(losses) != len(to_score):
                raise HatError(f"The fitness returned {len(losses)} losses for {len(to_score)} architectures.")
            computed = {c: (loss if math.isfinite(loss) else math.inf) for c, loss in zip(to_score, losses)}
            computed_total += len(computed)
            if on_scored:
                on_scored(computed)
        latency_of = {genome.to_config(g): lat for g, lat in population}
        for config in fresh:
            explored[config] = (computed[config] if config in computed else known[config], latency_of[config])
        # Stable sort: ties keep population order, so the run is deterministic.
        order = sorted(range(len(population)), key=lambda i: explored[configs[i]][0])[: settings.parents]
        parents = [population[i] for i in order]
        best_config = configs[order[0]]
        record = IterationRecord(
            iteration=iteration,
            best_loss=explored[best_config][0],
            best_latency_ms=explored[best_config][1],
            parents_mean_loss=sum(explored[configs[i]][0] for i in order) / len(order),
            new_evaluations=len(fresh),
            evaluations=len(explored),
        )
        history.append(record)
        if on_iteration:
            on_iteration(record)
        if iteration == settings.iterations - 1:
            break  # HAT breeds one more generation here and throws it away; we skip it.

        parent_genes = [g for g, _ in parents]
        mutants = _breed(sampler, settings.mutations, parent_genes, rng, lambda: _mutate_one(genome, parent_genes, rng, settings.mutation_prob))
        crossovers = _breed(sampler, settings.crossovers, parent_genes, rng, lambda: _cross_one(genome, parent_genes, rng))
        fallbacks += (settings.mutations - mutants[1]) + (settings.crossovers - crossovers[1])
        population = parents + mutants[0] + crossovers[0]

    best_config = configs[order[0]]
    best_loss, best_latency = explored[best_config]
    return SearchResult(
        best=best_config,
        best_loss=best_loss,
        best_latency_ms=best_latency,
        budget_ms=budget_ms,
        min_latency_ms=min_latency,
        evaluations=len(explored),
        hat_evaluations=settings.iterations * settings.population,
        history=history,
        explored=explored,
        draws=sampler.draws,
        rejected=sampler.rejected,
        fallbacks=fallbacks,
        computed=computed_total,
        settings=settings,
    )


def _mutate_one(genome: Genome, parents: list[Gene], rng: random.Random, prob: float) -> Gene:
    return genome.mutate(rng.choice(parents), rng, prob)


def _cross_one(genome: Genome, parents: list[Gene], rng: random.Random) -> Gene:
    first, second = rng.sample(parents, 2)
    return genome.crossover(first, second, rng)


def _breed(sampler: _FeasibleSampler, wanted: int, parents: list[Gene], rng: random.Random, make: Callable[[], Gene]) -> tuple[list[tuple[Gene, float]], int]:
    """``wanted`` feasible children; if the redraw bound runs out, the rest are copies of random parents
    (always feasible), so a tight budget slows the search down instead of stopping it."""
    if wanted == 0:
        return [], 0
    children = sampler.draw(make, wanted)
    bred = len(children)
    if bred < wanted:
        latency_of = {}
        for gene, lat in zip(parents, _predict(sampler.predict, sampler.genome, parents)):
            latency_of[gene] = lat
        for _ in range(wanted - bred):
            gene = rng.choice(parents)
            children.append((gene, latency_of[gene]))
    return children, bred


def _fmt_ms(ms: float) -> str:
    return f"{ms / 1000:.3g} s" if ms >= 10000 else f"{ms:.1f} ms"


# ======================================================================================= outputs
def budget_label(budget_ms: float) -> str:
    """``200ms``-style label for file and folder names."""
    return f"{budget_ms:g}ms"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, loss) points no other point beats on both, by increasing latency."""
    front: list[tuple[float, float]] = []
    for latency, loss in sorted(points):
        if not front or loss < front[-1][1]:
            front.append((latency, loss))
    return front


def write_history_csv(path, result: SearchResult) -> None:
    from hat_cli.atomic import atomic_open

    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("iteration,best_loss,best_latency_ms,parents_mean_loss,new_evaluations,evaluations\n")
        for h in result.history:
            handle.write(f"{h.iteration},{h.best_loss!r},{h.best_latency_ms!r},{h.parents_mean_loss!r},{h.new_evaluations},{h.evaluations}\n")


def write_explored_csv(path, result: SearchResult) -> None:
    """Every scored architecture in scoring order: loss, predicted latency, and the architecture (JSON)."""
    import csv
    import json

    from hat_cli.atomic import atomic_open

    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order", "valid_loss", "predicted_latency_ms", "arch"])
        for i, (config, (loss, latency)) in enumerate(result.explored.items()):
            writer.writerow([i, repr(loss), repr(latency), json.dumps(config.to_dict(), separators=(",", ":"))])


def read_explored_csv(path) -> list[tuple[SubTransformerConfig, float, float]]:
    import csv
    import json

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
    from hat_cli.atomic import temporary_sibling

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
    tmp = temporary_sibling(path)
    try:
        fig.savefig(tmp, format="png")
        import os

        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return True


# ======================================================================================= a search from files
@dataclass
class SearchRequest:
    """Everything `hat search` resolves from its options."""

    task: str
    hw: str
    budget_ms: float
    supernet: str | None = None  # model directory or published name; None = trained here by default, else published
    data_dir: str | None = None  # `hat data` output; None = data/<task>
    predictor: Any = None  # predictor file, or an object with .predict(configs); None = the hardware backend's default
    settings: EvolutionSettings = field(default_factory=EvolutionSettings)
    valid_subset: int | None = None
    max_tokens: int | None = None
    precision: str | None = None  # bf16 | fp32; None = bf16 on GPU, fp32 on CPU
    device: str | None = None
    out: str | None = None  # None = runs/search/<task>-<hw>-<budget>
    verify: bool = False
    fresh: bool = False  # ignore scores an earlier run left in the output folder

    def out_dir(self):
        from pathlib import Path

        return Path(self.out) if self.out else Path("runs") / "search" / f"{self.task}-{self.hw}-{budget_label(self.budget_ms)}"


def resolve_predictor(hw: str, task: str, path: Any):
    """The latency predictor: ``--predictor`` or the hardware backend's default for this task."""
    from pathlib import Path

    if hasattr(path, "predict"):  # library callers may pass a predictor object
        return path
    if path:
        if not Path(path).exists():
            raise HatError(f"Latency predictor {path} does not exist; make one with `hat fit-predictor --hw {hw} --task {task}`.")
        from hat_cli.predictor import load_predictor

        return load_predictor(path)
    from hat_cli import hardware

    found = hardware.get_backend(hw).default_predictor(task)
    if found is None:
        raise HatError(
            f"No latency predictor for hardware '{hw}' and task '{task}'; make one with "
            f"`hat collect-latency --hw {hw} --task {task}` then `hat fit-predictor --hw {hw} --task {task}`, "
            f"or pass --predictor FILE."
        )
    return found


def resolve_supernet(task: str, supernet: str | None):
    """(model directory, label) of the SuperTransformer: a path or published name (--supernet), else the one
    `hat train-super` wrote here by default, else the task's published one."""
    from pathlib import Path

    from hat_cli import zoo
    from hat_cli.training_config import FINAL_MODEL_DIR, default_supernet_dir

    if supernet and Path(supernet).exists():
        return Path(supernet), str(supernet)
    trained = default_supernet_dir(task) / FINAL_MODEL_DIR
    if not supernet and (trained / "config.json").is_file():
        return trained, str(trained)
    try:
        entry = zoo.resolve(supernet) if supernet else zoo.supernet_for_task(task)
    except HatError:
        if supernet:
            raise HatError(f"SuperTransformer '{supernet}' is neither a model directory nor a published model name.") from None
        raise HatError(
            f"No SuperTransformer for task '{task}': none was published and none was trained here; train one with "
            f"`hat train-super --task {task}` (it writes {trained}) or pass --supernet DIR."
        ) from None
    if getattr(entry, "kind", "supertransformer") != "supertransformer":
        raise HatError(f"'{entry.name}' is a SubTransformer; search needs a SuperTransformer (--supernet).")
    return zoo.pull(entry.name), entry.name


def _describe_predictor(predictor: Any) -> str:
    if predictor is None:
        return "hardware default"
    return str(predictor) if not hasattr(predictor, "predict") else type(predictor).__name__


def predict_fn(predictor) -> PredictFn:
    def predict(configs):
        return [float(v) for v in predictor.predict(list(configs))]

    return predict


def run_search(request: SearchRequest, progress=None, log: Callable[[str], None] = lambda message: None) -> dict:
    """Resolve the inputs, search, write the outputs; returns the JSON summary (CLI.md fields first)."""
    import json
    import time
    from pathlib import Path

    from hat_cli.atomic import atomic_write_text
    from hat_cli.tasks import get_task

    started = time.perf_counter()
    task = get_task(request.task)
    space = SearchSpace.builtin(task.space)
    request.settings.check()

    # Cheap inputs first, so an impossible budget fails before the model is loaded.
    predictor = resolve_predictor(request.hw, task.name, request.predictor)
    predict = predict_fn(predictor)
    min_latency, min_config = minimum_latency(space, predict, seed=request.settings.seed)
    if request.budget_ms < min_latency:
        raise HatError(
            f"No architecture of task '{task.name}' meets {_fmt_ms(request.budget_ms)} on '{request.hw}': "
            f"the smallest reachable predicted latency is {_fmt_ms(min_latency)}."
        )
    if min_latency <= 0:
        log(
            f"warning: the latency predictor gives {_fmt_ms(min_latency)} for some architectures of '{space.name}'; "
            f"it extrapolates badly (too few measurements?), so treat its budget check with care."
        )
    data_dir = Path(request.data_dir) if request.data_dir else Path("data") / task.name
    if not data_dir.is_dir():
        raise HatError(f"No prepared data for task '{task.name}' at {data_dir}; make it with `hat data --task {task.name}` or pass --data-dir.")
    from hat_cli import fitness as fitness_module  # torch: only once the cheap checks have passed
    from hat_cli.data.batching import load_split
    from hat_cli.modelio import check_data_matches, load_model

    data = load_split(data_dir, "valid", task.src, task.tgt)
    supernet_dir, supernet_label = resolve_supernet(task.name, request.supernet)
    model, meta = load_model(supernet_dir)
    if meta.get("kind") != "supertransformer":
        raise HatError(f"{supernet_label} is a SubTransformer; search needs a SuperTransformer (--supernet).")
    if model.super_shape != space.shape:
        raise HatError(f"SuperTransformer {supernet_label} does not have the shape of search space '{space.name}' that task '{task.name}' uses.")
    check_data_matches(meta, data, supernet_label, model)

    device = fitness_module.resolve_device(request.device)
    precision = request.precision or fitness_module.default_precision(device)
    max_tokens = request.max_tokens or fitness_module.default_max_tokens(device)
    valid = fitness_module.prepare_validation(data, max_tokens, device, request.valid_subset)
    fitness = fitness_module.ValidationLoss(model, valid, precision)
    setup_seconds = time.perf_counter() - started
    log(
        f"search in '{space.name}' under {_fmt_ms(request.budget_ms)} on {request.hw}: {valid.sentences} validation sentences "
        f"({valid.target_tokens} target tokens), {precision} on {device}, smallest reachable {_fmt_ms(min_latency)}"
    )

    out = request.out_dir()
    fingerprint = {
        "supernet": str(Path(supernet_dir).resolve()),
        "supernet_weights": _file_stamp(Path(supernet_dir) / "model.safetensors"),
        "data_dir": str(data_dir.resolve()),
        "valid_subset": request.valid_subset,
        "max_tokens": max_tokens,
        "precision": precision,
        "device": device.type,
        "label_smoothing": fitness.epsilon,
    }
    known = {} if request.fresh else load_scores(out / SCORES_FILE, fingerprint)
    if known:
        log(f"reusing {len(known)} scores of an earlier run with the same SuperTransformer, data and precision in {out} (--fresh ignores them)")
    saved_scores = dict(known)

    def on_scored(computed: dict) -> None:
        saved_scores.update(computed)
        save_scores(out / SCORES_FILE, fingerprint, saved_scores)

    task_id = None
    if progress is not None:
        task_id = progress.add_task("evolution", total=request.settings.iterations, info="")

    def on_iteration(record: IterationRecord) -> None:
        if progress is not None:
            progress.update(task_id, advance=1, info=f"best {record.best_loss:.4f} @ {record.best_latency_ms:.1f} ms, {record.evaluations} scored")

    search_started = time.perf_counter()
    result = evolutionary_search(
        space, fitness, predict, request.budget_ms, request.settings,
        on_iteration=on_iteration, on_scored=on_scored, min_latency=min_latency, known=known,
    )
    search_seconds = time.perf_counter() - search_started

    out.mkdir(parents=True, exist_ok=True)
    yaml_path = out / "subtransformer.yml"
    result.best.save_yaml(yaml_path)
    write_history_csv(out / "history.csv", result)
    write_explored_csv(out / "explored.csv", result)
    plotted = plot_front(out / "front.png", result, f"{task.name} on {request.hw}, budget {budget_label(request.budget_ms)}")
    if not plotted:
        log("matplotlib is not installed, so front.png was not drawn (pip install 'hat-cli[plot]').")

    summary = {
        "config": str(yaml_path),
        "arch": result.best.to_hat_keys(),
        "predicted_latency_ms": result.best_latency_ms,
        "valid_loss": result.best_loss,
        "evaluations": result.evaluations,
        "seconds": search_seconds,
        "task": task.name,
        "hardware": request.hw,
        "latency_budget_ms": request.budget_ms,
        "min_reachable_latency_ms": min_latency,
        "hat_evaluations": result.hat_evaluations,
        "computed_evaluations": result.computed,
        "reused_evaluations": result.evaluations - result.computed,
        "rejection_sampling": {"draws": result.draws, "rejected": result.rejected, "fallbacks": result.fallbacks},
        "setup_seconds": setup_seconds,
        "seed": request.settings.seed,
        "settings": {
            **request.settings.to_dict(),
            "supernet": supernet_label,
            "supernet_dir": str(supernet_dir),
            "data_dir": str(data_dir),
            "predictor": _describe_predictor(request.predictor),
            "precision": precision,
            "device": str(device),
            "max_tokens": max_tokens,
            "valid_subset": request.valid_subset,
            "valid_sentences": valid.sentences,
            "valid_target_tokens": valid.target_tokens,
            "label_smoothing": fitness.epsilon,
            "loss_unit": "bits per target token (label-smoothed, as HAT's valid_loss)",
            "space": space.name,
            "out": str(out),
        },
        "files": {"history": str(out / "history.csv"), "explored": str(out / "explored.csv"), "front": str(out / "front.png") if plotted else None},
    }
    if request.verify:
        summary["verify"] = verify_latency(request.hw, task, result.best, result.best_latency_ms, request.budget_ms, log)
    atomic_write_text(out / "search.json", json.dumps(summary, indent=2) + "\n")
    return summary


SCORES_FILE = "scores.json"


def _file_stamp(path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def load_scores(path, fingerprint: dict) -> dict[SubTransformerConfig, float]:
    """Scores an earlier (possibly interrupted) run saved, if it scored with the same fitness; else {}."""
    import json

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


def save_scores(path, fingerprint: dict, scores: Mapping[SubTransformerConfig, float]) -> None:
    """Every score so far, rewritten atomically after each generation, so an interrupted search resumes."""
    import json

    from hat_cli.atomic import atomic_write_text

    rows = [{"arch": c.to_dict(), "valid_loss": loss} for c, loss in scores.items()]
    atomic_write_text(path, json.dumps({"fingerprint": fingerprint, "scores": rows}) + "\n")


def verify_latency(hw: str, task, config: SubTransformerConfig, predicted_ms: float, budget_ms: float, log) -> dict:
    """Measure the winner on this machine with the hardware backend's protocol; compare with the prediction."""
    from hat_cli.hardware import get_backend
    from hat_cli.latency import measure_latency

    backend = get_backend(hw)
    warning = backend.foreign_device_warning()
    if warning:
        log(f"warning: {warning}")
    measured = measure_latency(config, backend, task)
    total = measured.total_ms
    report = {
        "measured_latency_ms": total,
        "predicted_latency_ms": predicted_ms,
        "prediction_error": (predicted_ms - total) / total if total else None,
        "within_budget": total <= budget_ms,
        "measured": measured.to_dict(),
        "measured_on": "this machine" if backend.local else f"this machine, with {hw}'s protocol (not {hw} itself)",
    }
    if total > budget_ms:
        log(
            f"warning: the winner measures {total:.1f} ms on this machine, over the {budget_label(budget_ms)} budget "
            f"(predicted {predicted_ms:.1f} ms)."
        )
    return report
