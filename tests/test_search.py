"""The evolutionary algorithm (hat_cli/search/evolution.py) with a synthetic fitness and a synthetic predictor.

Both stand-ins are deterministic functions of the architecture: a latency that grows with every
knob (like a real device) and a loss that falls with capacity, so the search has a real trade-off.
"""

from __future__ import annotations

import random
import re
import time

import pytest

from hat_cli.core.errors import HatError
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.search.evolution import EvolutionSettings, Genome, evolutionary_search, minimum_latency


def synthetic_latency(config: SubTransformerConfig) -> float:
    f = config.features()
    # encoder: embed, layers, ffn, heads; decoder: embed, layers, ffn, self heads, ende heads, arbitrary
    encoder = f[1] * (f[0] / 640 + f[2] / 3072 + 0.1 * f[3] / 8)
    decoder = f[5] * (2 * f[4] / 640 + 2 * f[6] / 3072 + 0.2 * (f[7] + f[8]) / 8 + 0.3 * f[9])
    return 10.0 * encoder + 25.0 * decoder


def synthetic_loss(config: SubTransformerConfig) -> float:
    capacity = (
        config.encoder_embed_dim / 640
        + config.decoder_embed_dim / 640
        + sum(config.encoder_ffn_embed_dim) / 3072 / 6
        + 1.5 * sum(d / 3072 for d in config.decoder_ffn_embed_dim) / 6
        + 0.8 * config.decoder_layer_num / 6
        + 0.1 * sum(config.decoder_arbitrary_ende_attn) / 6
    )
    # a small deterministic "noise" so that ties are rare and the landscape is not trivially monotone
    jitter = (hash(config.to_yaml()) % 1000) / 1e5
    return 6.0 - capacity + jitter


def predict(configs):
    return [synthetic_latency(c) for c in configs]


class RecordingFitness:
    def __init__(self):
        self.calls: list[list[SubTransformerConfig]] = []

    def __call__(self, configs):
        self.calls.append(list(configs))
        return [synthetic_loss(c) for c in configs]

    @property
    def scored(self):
        return [c for call in self.calls for c in call]


@pytest.fixture(scope="module")
def space0():
    return SearchSpace.builtin("space0")


SMALL = EvolutionSettings(population=20, parents=5, mutations=8, crossovers=7, iterations=6, seed=3)


def test_gene_layout_matches_hat(space0):
    genome = Genome(space0)
    assert len(genome) == 2 + 2 * 6 + 2 + 4 * 6 == 40
    rng = random.Random(0)
    for _ in range(200):
        config = space0.sample(rng)
        gene = genome.from_config(config)
        assert genome.to_config(gene) == config
        assert all(v in options for v, options in zip(gene, genome.choices))


def test_unused_positions_do_not_change_the_architecture(space0):
    genome = Genome(space0)
    gene = list(genome.from_config(space0.smallest()))  # 1 decoder layer
    other = list(gene)
    ffn_start = 2 + 2 * 6 + 2
    other[ffn_start + 3] = 3072  # decoder FFN of layer 4: unused
    assert genome.to_config(tuple(gene)) == genome.to_config(tuple(other))


def test_mutation_and_crossover_stay_in_the_space(space0):
    genome = Genome(space0)
    rng = random.Random(1)
    a, b = genome.random(rng), genome.random(rng)
    for _ in range(100):
        for child in (genome.mutate(a, rng, 0.3), genome.crossover(a, b, rng)):
            genome.to_config(child).validate(space0)
        crossed = genome.crossover(a, b, rng)
        assert all(x in (p, q) for x, p, q in zip(crossed, a, b))
    assert genome.mutate(a, rng, 0.0) == a


def test_seeded_runs_reproduce_the_same_winner(space0):
    runs = [evolutionary_search(space0, RecordingFitness(), predict, 300.0, SMALL) for _ in range(2)]
    assert runs[0].best == runs[1].best
    assert [h.best_loss for h in runs[0].history] == [h.best_loss for h in runs[1].history]
    assert list(runs[0].explored) == list(runs[1].explored)
    other = evolutionary_search(space0, RecordingFitness(), predict, 300.0, EvolutionSettings(**{**SMALL.to_dict(), "seed": 4}))
    assert list(other.explored) != list(runs[0].explored)


def test_every_candidate_meets_the_budget_and_best_improves(space0):
    budget = 300.0
    result = evolutionary_search(space0, RecordingFitness(), predict, budget, EvolutionSettings(seed=1, iterations=10))
    assert all(lat <= budget for _, lat in result.explored.values())
    assert result.best_latency_ms <= budget
    assert synthetic_latency(result.best) == pytest.approx(result.best_latency_ms)
    losses = [h.best_loss for h in result.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # parents survive, so the best never gets worse
    assert losses[-1] < losses[0]
    # every scored architecture was in some population and the best always survives as a parent
    assert result.best_loss == min(loss for loss, _ in result.explored.values())


def test_winner_beats_random_feasible_architectures(space0):
    budget = 300.0
    result = evolutionary_search(space0, RecordingFitness(), predict, budget, EvolutionSettings(seed=2, iterations=15))
    rng = random.Random(99)
    feasible = [c for c in (space0.sample(rng) for _ in range(3000)) if synthetic_latency(c) <= budget]
    assert len(feasible) > 100
    assert result.best_loss <= min(synthetic_loss(c) for c in feasible)


def test_cache_scores_each_architecture_once(space0):
    fitness = RecordingFitness()
    settings = EvolutionSettings(seed=5, iterations=12)
    result = evolutionary_search(space0, fitness, predict, 300.0, settings)
    scored = fitness.scored
    assert len(scored) == len(set(scored)) == result.evaluations
    # HAT scores the whole population every iteration; the parents at least are never re-scored here,
    # and the last generation's children are discarded unscored, as in HAT.
    assert result.hat_evaluations == 12 * 125
    assert result.evaluations <= 125 + 11 * 100
    assert [h.evaluations for h in result.history][-1] == result.evaluations
    assert len(fitness.calls) == 12  # one batched call per generation


def test_infeasible_budget_fails_fast_with_the_smallest_latency(space0):
    smallest = min(synthetic_latency(space0.smallest(a)) for a in (-1, 1, 2))
    started = time.perf_counter()
    with pytest.raises(HatError, match=r"smallest reachable predicted latency is ([0-9.]+) ms") as info:
        evolutionary_search(space0, RecordingFitness(), predict, smallest * 0.9, SMALL)
    assert time.perf_counter() - started < 30  # not a timing assertion on speed: it must not hang
    assert f"{smallest:.1f} ms" in str(info.value)


def test_minimum_latency_is_found_for_a_non_monotone_predictor(space0):
    # A predictor whose minimum is not the smallest architecture: 4 heads are cheaper than 8 *and* than 4/2 mix.
    def odd(configs):
        return [synthetic_latency(c) + (5.0 if c.decoder_layer_num == 1 else 0.0) for c in configs]

    found, config = minimum_latency(space0, odd)
    rng = random.Random(7)
    sampled = min(odd([space0.sample(rng) for _ in range(5000)]))
    assert found <= sampled + 1e-9
    assert odd([config])[0] == pytest.approx(found)


def test_children_fall_back_to_parents_when_redraws_run_out(space0):
    from hat_cli.search.evolution import _breed, _FeasibleSampler

    genome = Genome(space0)
    rng = random.Random(0)
    parents = [genome.random(rng) for _ in range(4)]
    allowed = {genome.to_config(g) for g in parents}

    def only_parents(configs):  # nothing but the parents meets the budget
        return [0.0 if c in allowed else 1e9 for c in configs]

    sampler = _FeasibleSampler(genome, only_parents, 1.0, max_redraws=3)
    children, bred = _breed(sampler, 5, parents, rng, lambda: genome.mutate(rng.choice(parents), rng, 1.0))
    assert bred == 0 and len(children) == 5
    assert all(gene in parents and lat == 0.0 for gene, lat in children)
    assert sampler.draws == 15  # bounded: 3 redraws per wanted child


def test_too_rare_feasible_architectures_fail_with_a_sentence(space0):
    minimum, _ = minimum_latency(space0, predict)
    with pytest.raises(HatError, match="met the .* budget"):
        evolutionary_search(space0, RecordingFitness(), predict, minimum * 1.001, EvolutionSettings(
            population=10, parents=4, mutations=3, crossovers=3, iterations=2, max_redraws=5))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"population": 100}, "must equal parents"),
        ({"parents": 0, "mutations": 75}, "--parents"),
        ({"mutation_prob": 1.5}, "--mutation-prob"),
        ({"iterations": 0}, "at least 1"),
        ({"start": "largest"}, "--start"),
    ],
)
def test_bad_settings_are_rejected(space0, changes, message):
    with pytest.raises(HatError, match=message):
        evolutionary_search(space0, RecordingFitness(), predict, 300.0, EvolutionSettings(**{**EvolutionSettings().to_dict(), **changes}))


def test_first_population_starts_with_every_hand_scaled_transformer_that_fits(space0):
    settings = EvolutionSettings(population=100, parents=20, mutations=40, crossovers=40, iterations=1, seed=3)
    budget = 300.0
    fitting = {c for c in space0.hand_scaled() if synthetic_latency(c) <= budget}
    assert 0 < len(fitting) <= settings.population // 2
    seeded, random_start = RecordingFitness(), RecordingFitness()
    evolutionary_search(space0, seeded, predict, budget, settings)
    evolutionary_search(space0, random_start, predict, budget, EvolutionSettings(**{**settings.to_dict(), "start": "random"}))
    assert fitting <= set(seeded.calls[0])
    assert all(synthetic_latency(c) <= budget for c in seeded.calls[0])
    assert sum(c.is_hand_scaled() for c in random_start.calls[0]) < len(fitting)  # HAT's start: random draws only


def test_hand_scaled_start_takes_at_most_half_the_population_spread_over_the_family(space0):
    settings = EvolutionSettings(population=20, parents=4, mutations=8, crossovers=8, iterations=1, seed=3)
    budget = 400.0  # 34 plain models fit: more than half of 20
    fitting = [c for c in space0.hand_scaled() if synthetic_latency(c) <= budget]
    assert len(fitting) > settings.population // 2
    fitness = RecordingFitness()
    evolutionary_search(space0, fitness, predict, budget, settings)
    first = fitness.calls[0]
    seeded = [c for c in first if c in set(fitting)]
    assert len(seeded) >= settings.population // 2  # all 10 kept places (a random draw may add a plain one by chance)
    assert len({(c.encoder_embed_dim, c.decoder_layer_num) for c in seeded}) > 2  # spread, not just the largest ones
    assert len(first) - len(seeded) >= settings.population // 2 - 1  # the rest random (some may repeat)


def test_under_a_tight_budget_plain_models_and_mutants_fill_what_random_draws_cannot(space0):
    settings = EvolutionSettings(population=20, parents=4, mutations=8, crossovers=8, iterations=1, max_redraws=1)
    budget = 300.0  # 21 plain models fit; with one draw per place, random draws rarely do
    fitting = {c for c in space0.hand_scaled() if synthetic_latency(c) <= budget}
    fitness = RecordingFitness()
    evolutionary_search(space0, fitness, predict, budget, settings)  # HAT's random start would refuse this
    first = fitness.calls[0]
    assert sum(c in fitting for c in first) > settings.population // 2
    # HAT's random start draws too few that fit; mutants of those fill the rest instead of a refusal.
    random_start = RecordingFitness()
    evolutionary_search(space0, random_start, predict, budget, EvolutionSettings(**{**settings.to_dict(), "start": "random"}))
    assert random_start.calls[0] and all(synthetic_latency(c) <= budget for c in random_start.calls[0])


def test_an_infeasible_start_names_its_random_draws_apart_from_the_hand_scaled_ones(space0):
    settings = EvolutionSettings(population=20, parents=4, mutations=8, crossovers=8, iterations=1, max_redraws=1)
    budget = 150.0
    plain = sum(synthetic_latency(c) <= budget for c in space0.hand_scaled())
    with pytest.raises(HatError) as refused:
        evolutionary_search(space0, RecordingFitness(), predict, budget, settings)
    sentence = str(refused.value)
    drawn, draws = (int(n) for n in re.search(r"Only (\d+) of (\d+) random", sentence).groups())
    assert drawn + plain < settings.population and drawn <= draws == (settings.population - plain) * settings.max_redraws
    assert f"besides {plain} hand-scaled ones" in sentence


def test_hand_scaled_family_holds_the_plain_models_the_benchmarks_train():
    space = SearchSpace.builtin("multi30k")
    family = space.hand_scaled()
    assert len(family) == len(set(family)) == 3 * 6 * 3 * 2  # widths x decoder depths x FFN sizes x head counts
    for width, ffn, heads, depth in ((256, 1024, 4, 2), (384, 2048, 8, 1), (512, 2048, 8, 3)):
        plain = SubTransformerConfig.from_mapping({
            "encoder-embed-dim-subtransformer": width, "decoder-embed-dim-subtransformer": width,
            "encoder-layer-num-subtransformer": 6, "decoder-layer-num-subtransformer": depth,
            "encoder-ffn-embed-dim-all-subtransformer": [ffn] * 6, "decoder-ffn-embed-dim-all-subtransformer": [ffn] * depth,
            "encoder-self-attention-heads-all-subtransformer": [heads] * 6,
            "decoder-self-attention-heads-all-subtransformer": [heads] * depth,
            "decoder-ende-attention-heads-all-subtransformer": [heads] * depth,
            "decoder-arbitrary-ende-attn-all-subtransformer": [-1] * depth,
        })
        assert plain in family and plain.is_hand_scaled()
    assert all(c.validate(space).is_hand_scaled() for c in family)
    assert not space.largest().is_hand_scaled()  # it attends to the last two encoder layers
    assert space.largest(arbitrary=-1).is_hand_scaled()
    rng = random.Random(0)
    assert sum(space.sample(rng).is_hand_scaled() for _ in range(500)) < 5  # a rare accident in a random draw


def test_demo_space_search(space0):
    demo = SearchSpace.builtin("demo")
    assert len(Genome(demo)) == 2 + 2 * 3 + 2 + 4 * 3
    result = evolutionary_search(demo, RecordingFitness(), predict, 60.0, SMALL)
    result.best.validate(demo)


def test_outputs_round_trip(space0, tmp_path):
    from hat_cli.search.outputs import pareto_front, plot_front, read_explored_csv, write_explored_csv, write_history_csv

    result = evolutionary_search(space0, RecordingFitness(), predict, 300.0, SMALL)
    yaml_path = tmp_path / "subtransformer.yml"
    result.best.save_yaml(yaml_path)
    assert SubTransformerConfig.from_yaml(yaml_path) == result.best
    text = yaml_path.read_text()
    assert text == result.best.to_yaml() and text.count("\n\n") == 4  # HAT's five groups

    write_history_csv(tmp_path / "history.csv", result)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,best_loss") and len(lines) == SMALL.iterations + 1
    assert float(lines[-1].split(",")[1]) == result.best_loss

    write_explored_csv(tmp_path / "explored.csv", result)
    rows = read_explored_csv(tmp_path / "explored.csv")
    assert [(c, loss, lat) for c, loss, lat in rows] == [(c, v[0], v[1]) for c, v in result.explored.items()]

    front = pareto_front([(lat, loss) for loss, lat in result.explored.values()])
    assert all(a[0] <= b[0] and a[1] > b[1] for a, b in zip(front, front[1:]))
    assert front[-1][1] == result.best_loss  # the winner is the front's low-loss end within the budget

    pytest.importorskip("matplotlib")
    assert plot_front(tmp_path / "front.png", result, "test")
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
