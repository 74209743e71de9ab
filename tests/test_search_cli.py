"""`hat search` end to end: inputs resolved from files, outputs written, errors as one sentence (exit 2).

The SuperTransformer is a real model directory (random weights, `save_model`) of the demo task's shape,
the validation data real Multi30k sentences binarized in fairseq layout under the demo task's language
names. The latency predictor is an analytic stand-in passed as an object where the fitted ones from
`hat fit-predictor` are not available.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hat_cli import resolve
from hat_cli.cli.app import app
from hat_cli.core.errors import HatError
from hat_cli.data.batching import load_split
from hat_cli.latency.predictors.base import LatencyRows
from hat_cli.latency.predictors.fitting import fit_predictor, load_predictor
from hat_cli.model.directory import save_model
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.search.evolution import EvolutionarySearch, EvolutionSettings
from hat_cli.search.budget import budget_margin
from hat_cli.search.run import run_search

import test_fitness as fixtures  # the Multi30k data-dir builder

WEIGHTS = (0.02, 1, 0.004, 0.2, 0.03, 4, 0.01, 0.3, 0.3, 1)


class FeaturePredictor:
    """A linear latency model over HAT's 10 features (ms), shaped like hat_cli.latency.predictors.fitting's objects."""

    def predict(self, configs):
        return [sum(f * w for f, w in zip(c.features(), WEIGHTS)) for c in configs]


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    """(data_dir, supernet_dir) for task `demo` (languages src -> tgt)."""

    root = tmp_path_factory.mktemp("demo-search")
    multi30k = fixtures.build_valid_dir(root / "m30k", sentences=60)
    data_dir = root / "data"
    data_dir.mkdir()
    for lang, new in (("de", "src"), ("en", "tgt")):
        for suffix in (".bin", ".idx"):
            (data_dir / f"valid.src-tgt.{new}{suffix}").write_bytes((multi30k / f"valid.de-en.{lang}{suffix}").read_bytes())
        (data_dir / f"dict.{new}.txt").write_bytes((multi30k / f"dict.{lang}.txt").read_bytes())
    data = load_split(data_dir, "valid", "src", "tgt")
    space = SearchSpace.builtin("demo")
    model = fixtures.make_supernet(space, len(data.tgt_dict), seed=5)
    supernet = save_model(model, root / "supernet", {"task": "demo", "dictionaries": {"src": data.src_dict.sha256(), "tgt": data.tgt_dict.sha256()}})
    return data_dir, supernet


SMALL = EvolutionSettings(population=8, parents=3, mutations=3, crossovers=2, iterations=3, seed=7)


def search(demo_inputs, out, settings=SMALL, log=lambda message: None, **changes):
    """`hat search`'s path through the library: words resolved (hat_cli.resolve), then run_search."""
    data_dir, supernet = demo_inputs
    words = dict(task="demo", hw="cpu", budget_ms=25.0, supernet=str(supernet), data_dir=str(data_dir),
                 predictor=FeaturePredictor(), out=str(out), device="cpu")
    words.update(changes)
    request = resolve.search_request(
        words.pop("task"), words.pop("hw"), words.pop("budget_ms"), settings.seed, supernet_word=words.pop("supernet"),
        data_dir_word=words.pop("data_dir"), predictor_word=words.pop("predictor"), **words,
    )
    return run_search(request, EvolutionarySearch(settings), log=log)


def test_search_writes_hat_yaml_summary_history_and_front(demo_inputs, tmp_path):
    summary = search(demo_inputs, tmp_path / "a")
    for key in ("config", "arch", "predicted_latency_ms", "valid_loss", "evaluations", "seconds"):
        assert key in summary
    yaml_path = Path(summary["config"])
    best = SubTransformerConfig.from_yaml(yaml_path)
    best.validate(SearchSpace.builtin("demo"))
    assert yaml_path.read_text() == best.to_yaml()  # HAT's layout, byte for byte
    assert summary["arch"] == best.to_hat_keys() and len(summary["arch"]) == 10
    assert summary["predicted_latency_ms"] <= 25.0
    assert FeaturePredictor().predict([best])[0] == pytest.approx(summary["predicted_latency_ms"])
    assert summary["evaluations"] <= SMALL.population + (SMALL.iterations - 1) * (SMALL.mutations + SMALL.crossovers)
    assert summary["seed"] == 7 and summary["settings"]["precision"] == "fp32"
    assert summary["settings"]["valid_sentences"] == 60
    saved = json.loads((tmp_path / "a" / "search.json").read_text())
    assert saved["arch"] == summary["arch"]
    assert len((tmp_path / "a" / "history.csv").read_text().splitlines()) == SMALL.iterations + 1
    if summary["files"]["front"]:
        assert (tmp_path / "a" / "front.png").stat().st_size > 1000


def test_seeded_searches_reproduce_the_winner(demo_inputs, tmp_path):
    first = search(demo_inputs, tmp_path / "a", valid_subset=20)
    second = search(demo_inputs, tmp_path / "b", valid_subset=20)
    assert Path(first["config"]).read_bytes() == Path(second["config"]).read_bytes()
    assert first["valid_loss"] == second["valid_loss"]
    assert first["settings"]["valid_sentences"] == 20


def test_infeasible_budget_fails_before_loading_anything(demo_inputs, tmp_path):
    # no data, no supernet: the budget check must come first
    with pytest.raises(HatError, match=r"smallest reachable predicted latency is [0-9.]+ ms"):
        search(demo_inputs, tmp_path / "x", budget_ms=1.0, data_dir=str(tmp_path / "none"), supernet="nope")
    assert not (tmp_path / "x").exists()


def test_missing_inputs_name_the_command_that_makes_them(demo_inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/demo/... here
    with pytest.raises(HatError, match=r"hat data --task demo"):
        search(demo_inputs, tmp_path / "x", data_dir=str(tmp_path / "none"))
    with pytest.raises(HatError, match=r"hat train-super --task demo"):
        search(demo_inputs, tmp_path / "x", supernet=None)


def test_dictionary_of_another_run_is_refused(demo_inputs, tmp_path):
    space = SearchSpace.builtin("demo")
    data_dir, _ = demo_inputs
    vocab = len((data_dir / "dict.tgt.txt").read_text().splitlines()) + 4
    other = save_model(fixtures.make_supernet(space, vocab), tmp_path / "other", {"task": "demo", "dictionaries": {"src": "0" * 64}})
    with pytest.raises(HatError, match="dictionary"):
        search(demo_inputs, tmp_path / "x", supernet=str(other))


def test_cli_errors_exit_2_with_a_sentence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    cases = [
        (["--latency", "100ms"], "hat collect-latency --hw cpu --task demo"),
        (["--latency", "fast"], "is not understood"),
        (["--latency", "100ms", "--population", "100"], "must equal parents"),
    ]
    for extra, sentence in cases:
        result = runner.invoke(app, ["search", "--task", "demo", "--hw", "cpu", *extra])
        assert result.exit_code == 2
        assert sentence in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output


def fitted_titanxp_predictor(directory: Path) -> Path:
    """hat's default predictor fitted on HAT's real TITAN Xp measurements (wmt14.en-de), saved as a directory."""

    csv = fixtures.SHARED_DATA / "hat-latency" / "wmt14ende_gpu_titanxp_all.csv"
    if not csv.exists():
        pytest.skip(f"real data {csv} is not available on this machine")
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    rows = LatencyRows(table[:, :10], [None] * len(table), table[:, 10], table[:, 11])
    return fit_predictor(rows, lat_norm=200.0).save(directory)


def test_cli_infeasible_budget_with_a_fitted_predictor(tmp_path, monkeypatch):
    """1 ms on a TITAN Xp is impossible: exit 2 at once, naming the smallest reachable latency."""
    path = fitted_titanxp_predictor(tmp_path / "titanxp.predictor")
    monkeypatch.chdir(tmp_path)  # no data, no SuperTransformer here: the budget check must come first
    result = CliRunner().invoke(app, ["search", "--task", "wmt14.en-de", "--hw", "titanxp", "--latency", "1ms", "--predictor", str(path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "smallest reachable predicted latency is" in text and "Traceback" not in text
    # a feasible budget gets past the check and stops at the next missing input, the data
    result = CliRunner().invoke(app, ["search", "--task", "wmt14.en-de", "--hw", "titanxp", "--latency", "200ms", "--predictor", str(path)])
    assert result.exit_code == 2
    assert "hat data --task wmt14.en-de" in " ".join(result.output.split())


def test_verify_measures_the_winner_on_this_cpu(demo_inputs, tmp_path):
    logged = []
    summary = search(demo_inputs, tmp_path / "v", valid_subset=10, verify=True, budget_ms=25.0, log=logged.append)
    verify = summary["verify"]
    assert verify["measured_latency_ms"] > 0
    assert verify["measured"]["total"] == pytest.approx(verify["measured"]["encoder"] + verify["measured"]["decoder"])
    assert verify["predicted_latency_ms"] == summary["predicted_latency_ms"]
    assert verify["within_budget"] == (verify["measured_latency_ms"] <= 25.0)
    assert any("over the" in line for line in logged) == (not verify["within_budget"])
    assert json.loads((tmp_path / "v" / "search.json").read_text())["verify"] == verify


def test_an_interrupted_search_resumes_from_saved_scores(demo_inputs, tmp_path):
    import dataclasses

    out = tmp_path / "r"
    short = dataclasses.replace(SMALL, iterations=2)
    first = search(demo_inputs, out, valid_subset=20, settings=short)  # "interrupted" after 2 generations
    assert (out / "scores.json").exists()
    resumed = search(demo_inputs, out, valid_subset=20)
    assert resumed["reused_evaluations"] == first["evaluations"] > 0
    assert resumed["computed_evaluations"] == resumed["evaluations"] - first["evaluations"]
    uninterrupted = search(demo_inputs, tmp_path / "u", valid_subset=20)
    assert resumed["arch"] == uninterrupted["arch"] and resumed["valid_loss"] == uninterrupted["valid_loss"]
    again = search(demo_inputs, out, valid_subset=20)
    assert again["computed_evaluations"] == 0
    saved = json.loads((out / "scores.json").read_text())  # scores of an earlier scorer's arithmetic: not mixed in
    assert saved["fingerprint"]["scorer"]["version"] >= 2
    saved["fingerprint"]["scorer"]["version"] = 1
    (out / "scores.json").write_text(json.dumps(saved))
    older = search(demo_inputs, out, valid_subset=20)
    assert older["reused_evaluations"] == 0 and older["computed_evaluations"] == older["evaluations"]
    fresh = search(demo_inputs, out, valid_subset=20, fresh=True)
    assert fresh["computed_evaluations"] == fresh["evaluations"]
    other = search(demo_inputs, out, valid_subset=21)  # another fitness: nothing reused
    assert other["reused_evaluations"] == 0


@pytest.mark.slow
def test_the_demo_pipeline_end_to_end(tmp_path, monkeypatch):
    """hat data -> train-super (a few updates) -> collect-latency -> fit-predictor -> search --verify, all defaults."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HAT_NO_PROGRESS", "1")
    runner = CliRunner()

    def hat(*args):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result

    hat("data", "--task", "demo")
    hat("train-super", "--task", "demo", "--max-updates", "3", "--validate-every", "3")
    hat("collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "24", "--repetitions", "3", "--warmup", "1")
    hat("fit-predictor", "--hw", "cpu", "--task", "demo")
    # This machine's speed is what it is: take a budget most random architectures meet, by the fitted predictor.
    space = SearchSpace.builtin("demo")
    rng = random.Random(0)
    fitted = load_predictor("latency_dataset/demo_cpu.predictor")
    predicted = sorted(fitted.predict([space.sample(rng) for _ in range(200)]))
    # The search keeps a margin for the predictor's error and this CPU's spread (large on a busy machine).
    margin = budget_margin(fitted).fraction
    budget = round(float(predicted[120]) / (1.0 - margin), 1)
    args = ["search", "--task", "demo", "--hw", "cpu", "--latency", f"{budget}ms", "--population", "10", "--parents", "4",
            "--mutations", "3", "--crossovers", "3", "--iterations", "3", "--valid-subset", "100", "--verify"]
    result = hat(*args, "--json")
    summary = json.loads(result.stdout)
    out = tmp_path / "runs" / "search" / f"demo-cpu-{budget:g}ms"
    assert Path(summary["config"]) == out.relative_to(tmp_path) / "subtransformer.yml"
    SubTransformerConfig.from_yaml(out / "subtransformer.yml").validate(space)
    assert summary["settings"]["supernet"] == "checkpoints/demo/supertransformer/model"
    assert summary["predicted_latency_ms"] <= budget * (1.0 - margin) + 1e-9
    assert summary["margin"]["fraction"] == pytest.approx(margin)
    assert summary["verify"]["measured_latency_ms"] > 0 and summary["verify"]["drift_corrected"]
    # the same command again reuses every score and finds the same winner
    again = json.loads(hat(*args, "--json").stdout)
    assert again["arch"] == summary["arch"] and again["computed_evaluations"] == 0
