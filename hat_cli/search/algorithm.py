"""The interface a search algorithm implements, and the registry of algorithms.

`run_search` prepares everything a search needs (the validation-loss fitness, the latency predictor, the
budget, scores saved by an interrupted run) as a :class:`SearchProblem`, hands it to a
:class:`SearchAlgorithm` and writes out the :class:`SearchResult`. HAT's evolutionary search
(``evolution.py``) is one implementation; another is a class with a ``name`` and a ``search`` method,
registered with :func:`register_search_algorithm`.

Pure Python, no torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

from hat_cli.core.registry import Registry
from hat_cli.model.space import SearchSpace, SubTransformerConfig

# score(configs) -> one loss per config (lower is better); predict(configs) -> one latency (ms) per config.
ScoreFn = Callable[[list[SubTransformerConfig]], Sequence[float]]
PredictFn = Callable[[list[SubTransformerConfig]], Sequence[float]]


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
    settings: Any = None  # the algorithm's settings (EvolutionSettings for HAT's search)


@dataclass
class SearchProblem:
    """What an algorithm searches: the lowest ``score`` in ``space`` whose ``predict``ed latency fits the budget."""

    space: SearchSpace
    score: ScoreFn  # call it only with architectures not scored before (each call costs a validation pass)
    predict: PredictFn
    budget_ms: float
    min_latency_ms: float  # the smallest predicted latency found in the space (the budget is at least this)
    # Scores an earlier run computed with the same fitness: reuse them instead of calling ``score``.
    known: Mapping[SubTransformerConfig, float] = field(default_factory=dict)
    on_iteration: Callable[[IterationRecord], None] | None = None  # after each iteration (progress)
    on_scored: Callable[[dict[SubTransformerConfig, float]], None] | None = None  # new scores, to persist them


class SearchAlgorithm(ABC):
    """A search algorithm: `run_search` calls ``search(problem)`` once."""

    name: ClassVar[str] = ""

    @property
    @abstractmethod
    def seed(self) -> int:
        """The seed of every random draw (recorded in search.json)."""

    @property
    def iterations(self) -> int:
        """How many times the search calls ``problem.on_iteration`` (a progress bar's length)."""
        return 1

    @abstractmethod
    def search(self, problem: SearchProblem) -> SearchResult:
        """The best architecture found, with every architecture scored on the way (``explored``)."""

    def settings(self) -> dict[str, Any]:
        """The algorithm's settings as written to search.json."""
        return {"seed": self.seed}


SEARCH_ALGORITHMS: Registry[type[SearchAlgorithm]] = Registry("search algorithm")


def register_search_algorithm(cls: type[SearchAlgorithm]) -> type[SearchAlgorithm]:
    """Class decorator: make ``cls`` available by its ``name``."""
    return SEARCH_ALGORITHMS.add(cls.name, cls)


def search_algorithm(name: str) -> type[SearchAlgorithm]:
    return SEARCH_ALGORITHMS.lookup(name)
