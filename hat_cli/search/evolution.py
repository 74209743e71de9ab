"""HAT's evolutionary search: one implementation of :class:`~hat_cli.search.algorithm.SearchAlgorithm`.

The algorithm is HAT's (docs/METHOD.md §6): a flat gene per architecture, a population of 125 drawn uniformly
and kept only if the predicted latency meets the budget, then per iteration: score the population, keep
the best 25 as parents, add 50 mutants (each gene redrawn with probability 0.3) and 50 crossovers (each
gene from one of two distinct parents with probability 0.5), redrawing any child over the budget.
The answer is the best of the last scored population; the last iteration's children are never scored.

Where we differ from the original, on purpose:
- the first population starts with the space's hand-scaled (plain) Transformers that meet the budget (at most
  half of it, spread over the family when more fit, unless random draws cannot fill the rest), the rest drawn at
  random (``start="hand-scaled"``): the search starts from what a person would try as well as from random
  points; ``start="random"`` is HAT's; when random draws cannot fill it, mutants of the architectures that
  fit do (HAT would draw forever);
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
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

from hat_cli.core.errors import HatError
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.search.algorithm import (
    IterationRecord, PredictFn, ScoreFn, SearchAlgorithm, SearchProblem, SearchResult, register_search_algorithm,
)

Gene = tuple[int, ...]
STARTS = ("hand-scaled", "random")


class Genome:
    """HAT's gene layout (docs/METHOD.md §6) for one search space.

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
    """HAT's published search settings (docs/METHOD.md §6) plus the bound on redraws."""

    population: int = 125
    parents: int = 25
    mutations: int = 50
    mutation_prob: float = 0.3
    crossovers: int = 50
    iterations: int = 30
    seed: int = 1
    # Rejection sampling gives up after this many draws per wanted architecture (HAT loops forever).
    max_redraws: int = 1000
    start: str = "hand-scaled"  # the first population: "hand-scaled" (plain Transformers first) or "random" (HAT's)

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
        if self.start not in STARTS:
            raise HatError(f"--start must be one of {', '.join(STARTS)}, got '{self.start}'.")

    def to_dict(self) -> dict:
        return asdict(self)


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
    if not all(math.isfinite(v) for v in latencies):
        # NaN compares false with every budget: unchecked, it would let any architecture through.
        raise HatError("The latency predictor returned NaN or infinite latencies; refit it with `hat fit-predictor`.")
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
            f"No architecture in search space '{space.name}' meets the {fmt_ms(budget_ms)} budget: "
            f"the smallest reachable predicted latency is {fmt_ms(min_latency)}."
        )
    rng = random.Random(settings.seed)
    sampler = _FeasibleSampler(genome, predict, budget_ms, settings.max_redraws)

    plain = _hand_scaled_within(genome, predict, budget_ms) if settings.start == "hand-scaled" else []
    seeds = _spread(plain, settings.population // 2)
    drawn = sampler.draw(lambda: genome.random(rng), settings.population - len(seeds))
    random_draws = sampler.draws
    # Under a tight budget random draws rarely fit: the other plain models that fit make up the shortfall,
    # then mutants of what fits (near a feasible architecture, far more of them fit than random ones).
    seeds += [pair for pair in plain if pair not in seeds][: settings.population - len(seeds) - len(drawn)]
    initial = seeds + drawn
    if initial and len(initial) < settings.population:
        fitting_genes = [gene for gene, _ in initial]
        initial += sampler.draw(lambda: _mutate_one(genome, fitting_genes, rng, settings.mutation_prob),
                                settings.population - len(initial))
    if len(initial) < settings.population:
        rate = len(drawn) / max(random_draws, 1)
        raise HatError(
            f"Only {len(drawn)} of {random_draws} random architectures met the {fmt_ms(budget_ms)} budget "
            f"(acceptance {rate:.2%}, smallest reachable {fmt_ms(min_latency)}"
            f"{f'; besides {len(seeds)} hand-scaled ones' if seeds else ''}"
            f"{f', and {len(initial) - len(seeds) - len(drawn)} mutants of them' if initial else ''}); "
            f"raise the budget or --max-redraws."
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


def _hand_scaled_within(genome: Genome, predict: PredictFn, budget_ms: float) -> list[tuple[Gene, float]]:
    """The space's plain Transformers whose predicted latency meets the budget, largest first."""
    genes = [genome.from_config(config) for config in genome.space.hand_scaled()]
    if not genes:
        return []
    return [(gene, latency) for gene, latency in zip(genes, _predict(predict, genome, genes)) if latency <= budget_ms]


def _spread(items: list, at_most: int) -> list:
    """All of ``items`` if they are at most ``at_most``, else ``at_most`` of them evenly spread over the list
    (the rest of the first population stays random, for variety)."""
    if len(items) <= at_most:
        return list(items)
    return [items[i * len(items) // at_most] for i in range(at_most)]


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


def fmt_ms(ms: float) -> str:
    return f"{ms / 1000:.3g} s" if ms >= 10000 else f"{ms:.1f} ms"


@register_search_algorithm
class EvolutionarySearch(SearchAlgorithm):
    """HAT's evolutionary search with the given settings (HAT's published ones by default)."""

    name = "evolution"

    def __init__(self, settings: EvolutionSettings = EvolutionSettings()):
        settings.check()
        self.evolution = settings

    @property
    def seed(self) -> int:
        return self.evolution.seed

    @property
    def iterations(self) -> int:
        return self.evolution.iterations

    def settings(self) -> dict:
        return self.evolution.to_dict()

    def search(self, problem: SearchProblem) -> SearchResult:
        return evolutionary_search(
            problem.space, problem.score, problem.predict, problem.budget_ms, self.evolution,
            on_iteration=problem.on_iteration, on_scored=problem.on_scored, min_latency=problem.min_latency_ms,
            known=problem.known,
        )
