"""The four extension points of docs/ARCHITECTURE.md, each shown by adding a toy one defined here: a task,
a latency predictor kind, a search algorithm and a hardware backend."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from hat_cli import resolve
from hat_cli.cli.app import app
from hat_cli.core.errors import HatError
from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl, load_hardware
from hat_cli.latency.dataset import config_columns, header_for, read_latency_csv
from hat_cli.latency.meters import LatencyMeter
from hat_cli.latency.predictors.base import PREDICTOR_KINDS, LatencyRows, Predictor, register_predictor_kind
from hat_cli.latency.predictors.fitting import fit_and_evaluate, load_predictor
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.search.algorithm import (
    SEARCH_ALGORITHMS, IterationRecord, SearchAlgorithm, SearchProblem, SearchResult, register_search_algorithm,
    search_algorithm,
)
from hat_cli.search.run import run_search
from hat_cli.tasks import TASKS, Task, register_task

from test_search_cli import FeaturePredictor, demo_inputs  # noqa: F401 (demo_inputs is a fixture)

TOY_SPACE = """\
share-all-embeddings: True
encoder-embed-dim: 32
decoder-embed-dim: 32
encoder-ffn-embed-dim: 64
decoder-ffn-embed-dim: 64
encoder-layers: 2
decoder-layers: 2
encoder-attention-heads: 2
decoder-attention-heads: 2
qkv-dim: 32

encoder-embed-choice: [32, 16]
decoder-embed-choice: [32, 16]
encoder-layer-num-choice: [2]
decoder-layer-num-choice: [2, 1]
encoder-ffn-embed-dim-choice: [64, 32]
decoder-ffn-embed-dim-choice: [64, 32]
encoder-self-attention-heads-choice: [2, 1]
decoder-self-attention-heads-choice: [2, 1]
decoder-ende-attention-heads-choice: [2, 1]
decoder-arbitrary-ende-attn-choice: [-1, 1]
"""


# ======================================================================================= a task
@pytest.fixture
def toy_task(tmp_path):
    """A task is one record; its space may be a YAML file anywhere (a built-in one lives in configs/)."""
    space = tmp_path / "toy.yml"
    space.write_text(TOY_SPACE)
    task = register_task(Task(
        "toy.xx-yy", "xx", "yy", space=str(space), latency_space=str(space), dummy_length=8,
        share_all_embeddings=True, beam=2, lenpen=1.0, timed_vocab=(40, 40),
        train_super=dict(max_updates=2, warmup_updates=1, max_tokens=256, validate_every=2, save_interval_updates=2),
    ))
    yield task
    TASKS.pop(task.name)


def test_a_new_task_is_resolved_profiled_and_prepared(toy_task, tmp_path):
    assert resolve.task("toy.xx-yy") is toy_task
    space = resolve.search_space(None, toy_task)
    assert space.shape.encoder_embed_dim == 32 and resolve.timed_shape(toy_task) == space.shape
    arch = tmp_path / "arch.yml"
    space.smallest().save_yaml(arch)
    assert resolve.architecture(str(arch), toy_task) == space.smallest()
    SearchSpace.builtin("demo").largest().save_yaml(tmp_path / "big.yml")
    with pytest.raises(HatError, match="does not fit the toy.xx-yy SuperTransformer"):
        resolve.architecture(str(tmp_path / "big.yml"), toy_task)

    runner = CliRunner()
    result = runner.invoke(app, ["profile", str(arch), "--task", "toy.xx-yy", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["task"] == "toy.xx-yy" and doc["length"] == 8 and doc["params"] > 0

    # No download recipe: the task is prepared from tokenized text.
    text = tmp_path / "text"
    text.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 40), ("valid", 8), ("test", 8)):
        lines = [" ".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))) for _ in range(n)]
        (text / f"{split}.xx").write_text("\n".join(lines) + "\n")
        (text / f"{split}.yy").write_text("\n".join(line.upper() for line in lines) + "\n")
    result = runner.invoke(app, ["data", "--task", "toy.xx-yy", "--from-dir", str(text), "--data-dir", str(tmp_path / "data"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"]["train"]["sentences"] == 40
    result = runner.invoke(app, ["data", "--task", "toy.xx-yy"])
    assert result.exit_code == 2 and "no download recipe" in result.output


# ======================================================================================= a predictor kind
@pytest.fixture
def toy_kind():
    """A predictor kind: latency proportional to the decoder's depth, fitted by least squares."""

    @register_predictor_kind
    class PerDecoderLayer(Predictor):
        kind = "toy-per-decoder-layer"

        def __init__(self, per_layer: float, lat_norm: float = 1.0, training=None):
            self.per_layer, self.lat_norm, self.training = per_layer, lat_norm, training or {}

        def predict_rows(self, rows: LatencyRows) -> np.ndarray:
            return self.per_layer * rows.features[:, 5]  # feature 6: decoder depth

        def tensors(self) -> dict[str, np.ndarray]:
            return {"per_layer": np.array([self.per_layer])}

        @classmethod
        def fit(cls, train: LatencyRows, lat_norm: float, seed: int, progress=None) -> "PerDecoderLayer":
            depth = train.features[:, 5]
            return cls(float(depth @ train.total_ms / (depth @ depth)), lat_norm)

        @classmethod
        def from_saved(cls, meta, tensors) -> "PerDecoderLayer":
            return cls(float(tensors["per_layer"][0]), meta["lat_norm"], meta.get("training"))

    yield PerDecoderLayer
    PREDICTOR_KINDS.pop(PerDecoderLayer.kind)


def toy_csv(path, space: SearchSpace, n: int = 40) -> None:
    """A latency CSV of ``n`` demo-space architectures whose latency is 2 ms per decoder layer."""
    header = header_for(space)
    rows = []
    for i in range(n):
        config = space.sample(random.Random(i))
        row = config_columns(config, space) | {"latency_mean_encoder": 1.0, "latency_mean_decoder": 2.0 * config.decoder_layer_num - 1.0,
                                               "latency_std_encoder": 0.0, "latency_std_decoder": 0.0, "task": "demo", "reference": 0}
        rows.append(",".join(str(row.get(column, "")) for column in header))
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")


def test_a_new_predictor_kind_is_fitted_saved_loaded_and_used(toy_kind, tmp_path):
    space = SearchSpace.builtin("demo")
    toy_csv(tmp_path / "lat.csv", space)
    result = CliRunner().invoke(app, ["fit-predictor", "--dataset", str(tmp_path / "lat.csv"), "--model", toy_kind.kind,
                                      "--out", str(tmp_path / "toy.predictor"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"]["rmse_ms"] < 1e-9
    loaded = load_predictor(tmp_path / "toy.predictor")
    assert isinstance(loaded, toy_kind) and loaded.training["task"] == "demo"
    three_layers = space.largest()
    assert loaded.predict([three_layers])[0] == pytest.approx(6.0)
    # resolve checks it against the task it is used for, then hands it to the search as any predictor
    cpu = resolve.backend("cpu")
    assert resolve.predictor(str(tmp_path / "toy.predictor"), cpu, resolve.task("demo"), space) is not None
    with pytest.raises(HatError, match="fitted on measurements for task 'demo'"):
        resolve.predictor(str(tmp_path / "toy.predictor"), cpu, resolve.task("multi30k.de-en"), space)
    report = fit_and_evaluate(LatencyRows.from_table(read_latency_csv(tmp_path / "lat.csv")), toy_kind.kind, seed=1, lat_norm=1.0)
    assert report.predictor.per_layer == pytest.approx(2.0, rel=0.3)


# ======================================================================================= a search algorithm
@register_search_algorithm
class RandomSearch(SearchAlgorithm):
    """Score a handful of random architectures that meet the budget; keep the best."""

    name = "toy-random"

    def __init__(self, samples: int = 6, seed: int = 3):
        self.samples, self._seed = samples, seed

    @property
    def seed(self) -> int:
        return self._seed

    def settings(self) -> dict:
        return {"samples": self.samples, "seed": self._seed}

    def search(self, problem: SearchProblem) -> SearchResult:
        rng = random.Random(self._seed)
        drawn = list(dict.fromkeys(problem.space.sample(rng) for _ in range(50 * self.samples)))
        latencies = dict(zip(drawn, problem.predict(drawn)))
        feasible = [c for c in drawn if latencies[c] <= problem.budget_ms][: self.samples]
        fresh = [c for c in feasible if c not in problem.known]
        scores = dict(problem.known) | dict(zip(fresh, problem.score(fresh)))
        if problem.on_scored:
            problem.on_scored({c: scores[c] for c in fresh})
        explored = {c: (scores[c], latencies[c]) for c in feasible}
        best = min(feasible, key=lambda c: scores[c])
        record = IterationRecord(0, scores[best], latencies[best], scores[best], len(fresh), len(explored))
        if problem.on_iteration:
            problem.on_iteration(record)
        return SearchResult(best, scores[best], latencies[best], problem.budget_ms, problem.min_latency_ms,
                            evaluations=len(explored), hat_evaluations=0, history=[record], explored=explored,
                            draws=len(drawn), rejected=len(drawn) - len(feasible), fallbacks=0, computed=len(fresh))


def test_a_new_search_algorithm_runs_through_run_search(demo_inputs, tmp_path):  # noqa: F811 (the imported fixture)
    data_dir, supernet = demo_inputs
    algorithm = search_algorithm("toy-random")(samples=5)
    request = resolve.search_request("demo", "cpu", 25.0, algorithm.seed, supernet_word=str(supernet), data_dir_word=str(data_dir),
                                     predictor_word=FeaturePredictor(), valid_subset=20, device="cpu", out=tmp_path / "out")
    summary = run_search(request, algorithm)
    assert summary["settings"]["algorithm"] == "toy-random" and summary["settings"]["samples"] == 5
    assert summary["evaluations"] == 5 and summary["predicted_latency_ms"] <= 25.0
    best = SubTransformerConfig.from_yaml(summary["config"])
    best.validate(SearchSpace.builtin("demo"))
    assert len((tmp_path / "out" / "explored.csv").read_text().splitlines()) == 6
    assert "toy-random" in SEARCH_ALGORITHMS


# ======================================================================================= a hardware backend
class ToyBoardPlugin:
    """A hardware plugin as a third party writes one (an object or module with the hook implementation)."""

    @hookimpl
    def register_hardware(self, register):
        register(Backend(name="toy-board", description="this CPU, one thread, a quick protocol", device="cpu", threads=1,
                         protocol=MeasurementProtocol(warmup=0, repetitions=2), lat_norm=50.0,
                         published_predictors={"wmt14.en-de": "wmt14ende_cpu_xeon"}))


def test_a_new_backend_is_registered_through_the_plugin_hook_and_measures(monkeypatch, tmp_path):
    registry = load_hardware(extra_plugins=(ToyBoardPlugin(),))
    backend = registry.get("toy-board")
    assert backend.source == "ToyBoardPlugin" and "cpu" in registry.backends  # the built-ins load as well
    task = resolve.task("demo")
    measured = LatencyMeter(backend, task, resolve.timed_shape(task)).measure(SearchSpace.builtin("demo").smallest())
    assert measured.total_ms > 0

    # With no predictor fitted here, the backend's published predictor for the task is the one used.
    asked = []
    monkeypatch.setattr(resolve, "load_published_predictor", lambda name, progress=None: asked.append(name) or FeaturePredictor())
    monkeypatch.chdir(tmp_path)  # no latency_dataset/ here
    wmt = resolve.task("wmt14.en-de")
    resolve.predictor(None, backend, wmt, resolve.search_space(None, wmt))
    assert asked == ["wmt14ende_cpu_xeon"]
