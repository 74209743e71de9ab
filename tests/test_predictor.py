"""Latency predictors on HAT's real latency CSVs: the default layer-cost model, HAT's MLP, files, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hat_cli.core.errors import HatError
from hat_cli.latency.dataset import read_latency_csv
from hat_cli.latency.predictors.base import FEATURE_NORM, LatencyRows, metrics, split_indices
from hat_cli.latency.predictors.fitting import fit_and_evaluate, fit_predictor, load_predictor
from hat_cli.latency.predictors.hat_mlp import HatMlpPredictor, from_published_hat_state_dict
from hat_cli.model.space import SearchSpace

LATENCY_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "hat-latency"
CSVS = sorted(LATENCY_DIR.glob("*.csv")) if LATENCY_DIR.is_dir() else []
needs_data = pytest.mark.skipif(not CSVS, reason=f"{LATENCY_DIR} (HAT's latency CSVs) is absent")


def _hat(args):
    env = dict(os.environ, HAT_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "hat_cli.cli.app", *args], capture_output=True, text=True, env=env, timeout=300)


def test_split_is_seeded_and_80_10_10():
    a = split_indices(2000, 1)
    b = split_indices(2000, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert [len(x) for x in a] == [1600, 200, 200]
    assert len(set(np.concatenate(a))) == 2000
    assert not np.array_equal(split_indices(2000, 2)[2], a[2])


def test_metrics():
    m = metrics(np.array([110.0, 90.0, 100.0, 130.0]), np.array([100.0, 100.0, 100.0, 100.0]))
    assert m["rmse_ms"] == pytest.approx(np.sqrt((100 + 100 + 0 + 900) / 4))
    assert m["mape"] == pytest.approx(0.125)
    assert m["within_10pct"] == pytest.approx(0.75) and m["n"] == 4


@needs_data
@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.stem)
def test_layer_cost_on_published_csvs(path):
    rows = LatencyRows.from_table(read_latency_csv(path))
    assert len(rows) == 2000 and not rows.has_layers
    report = fit_and_evaluate(rows, "layer-cost", seed=1, lat_norm=1.0)
    spread = float(np.std(rows.total_ms))
    # Far better than predicting the mean, and within a few percent on average (the files are noisy).
    assert report.test["rmse_ms"] < 0.45 * spread  # RPi: its 200 drifted rows cap what any predictor can do
    assert report.test["mape"] < 0.08 and report.test["n"] == 200


@needs_data
def test_hat_mlp_recipe_short_run_learns(tmp_path):
    """A 100-step run of HAT's recipe (the full 5000 run is in bench/bench_predictor.py)."""
    path = LATENCY_DIR / "wmt14ende_cpu_xeon_all.csv"
    rows = LatencyRows.from_table(read_latency_csv(path))
    train, _, test = split_indices(len(rows), 1)
    predictor = HatMlpPredictor.fit(rows.subset(train), lat_norm=300.0, seed=1, steps=100)
    untrained = HatMlpPredictor.fit(rows.subset(train), lat_norm=300.0, seed=1, steps=0)
    before = metrics(untrained.predict_rows(rows.subset(test)), rows.subset(test).total_ms)
    after = metrics(predictor.predict_rows(rows.subset(test)), rows.subset(test).total_ms)
    assert after["rmse_ms"] < before["rmse_ms"]
    predictor.save(tmp_path / "mlp")
    again = load_predictor(tmp_path / "mlp")
    assert np.allclose(again.predict_rows(rows.subset(test)), predictor.predict_rows(rows.subset(test)), rtol=1e-5)
    assert set(again.tensors()) == {"first_layer.weight", "first_layer.bias", "layers.0.weight", "layers.0.bias",
                                    "layers.1.weight", "layers.1.bias", "layers.2.weight", "layers.2.bias",
                                    "predict.weight", "predict.bias"}


def test_published_state_dict_conversion_matches_torch_forward():
    import torch

    torch.manual_seed(0)
    first, hidden, head = torch.nn.Linear(10, 400), [torch.nn.Linear(400, 400) for _ in range(3)], torch.nn.Linear(400, 1)
    state = {"first_layer.weight": first.weight, "first_layer.bias": first.bias, "predict.weight": head.weight, "predict.bias": head.bias}
    for i, layer in enumerate(hidden):
        state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = layer.weight, layer.bias
    predictor = from_published_hat_state_dict({k: v.detach() for k, v in state.items()}, lat_norm=200, feature_norm=FEATURE_NORM)
    space = SearchSpace.builtin("latency")
    import random

    configs = [space.sample(random.Random(i)) for i in range(5)]
    x = torch.tensor([c.features() for c in configs]) / torch.tensor(FEATURE_NORM)
    with torch.no_grad():
        h = torch.relu(first(x))
        for layer in hidden:
            h = torch.relu(layer(h))
        expected = head(h)[:, 0].double().numpy() * 200
    assert np.allclose(predictor.predict(configs), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(HatError, match="keys"):
        from_published_hat_state_dict({"weird": torch.zeros(1)}, lat_norm=200)


def test_layer_cost_uses_per_layer_columns_and_round_trips(tmp_path):
    """Synthetic per-layer data with an additive per-layer cost table is fitted almost exactly."""
    import random

    from hat_cli.latency.dataset import config_columns

    space = SearchSpace.builtin("latency")
    configs = [space.sample(random.Random(i)) for i in range(300)]
    cost = {3072: 3.0, 2048: 2.2, 1024: 1.1, 512: 0.9}  # deliberately not linear in the FFN width
    totals = np.array([5 + sum(cost[f] for f in c.decoder_ffn_embed_dim) * c.decoder_embed_dim / 512
                       + 0.4 * sum(c.encoder_layers_attended(i) for i in range(c.decoder_layer_num)) for c in configs])
    rows = LatencyRows.from_configs(configs)
    rows.decoder_ms = totals
    predictor = fit_predictor(rows.subset(range(250)), "layer-cost")
    assert predictor.feature_set == "layers"
    pred = predictor.predict(configs[250:])
    assert metrics(pred, totals[250:])["rmse_ms"] < 0.05
    predictor.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "predictor.json").read_text())
    assert meta["kind"] == "layer-cost" and meta["unit"] == "ms" and meta["feature_set"] == "layers"
    assert np.allclose(load_predictor(tmp_path / "p" / "predictor.json").predict(configs[250:]), pred)
    assert config_columns(configs[0], space)["decoder_ffn_embed_dim_0"] == configs[0].decoder_ffn_embed_dim[0]


@needs_data
def test_fit_predictor_cli_json_and_png(tmp_path):
    path = LATENCY_DIR / "iwslt14deen_gpu_titanxp_all.csv"
    result = _hat(["fit-predictor", "--dataset", str(path), "--out", str(tmp_path / "pred"), "--seed", "3", "--json"])
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["predictor"] == str(tmp_path / "pred")
    assert set(doc["test"]) == {"rmse_ms", "relative_rmse", "mape", "within_10pct", "n"} and doc["test"]["n"] == 200
    assert (tmp_path / "pred" / "predictor.safetensors").is_file()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "pred" / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
    # --test evaluates on another file (all of its rows)
    other = LATENCY_DIR / "wmt14ende_gpu_titanxp_all.csv"
    result = _hat(["fit-predictor", "--dataset", str(path), "--test", str(other), "--out", str(tmp_path / "p2"), "--json"])
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    # ... after fitting on every row of --dataset: no rows are held back when fresh samples judge the fit
    assert doc["test"]["n"] == 2000 and doc["split"] == {"train": 2000, "test": 2000} and doc["holdout"] is None


def test_fit_predictor_bad_input_exits_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = _hat(["fit-predictor", "--dataset", str(bad)])
    assert result.returncode == 2 and "HAT's" in result.stderr and "Traceback" not in result.stderr
    header = ",".join(["encoder_embed_dim", "encoder_layer_num", "encoder_ffn_embed_dim_avg", "encoder_self_attention_heads_avg",
                       "decoder_embed_dim", "decoder_layer_num", "decoder_ffn_embed_dim_avg", "decoder_self_attention_heads_avg",
                       "decoder_ende_attention_heads_avg", "decoder_arbitrary_ende_attn_avg", "latency_mean_encoder",
                       "latency_mean_decoder", "latency_std_encoder", "latency_std_decoder"])
    bad.write_text(header + "\n" + "640,6,1024,4,640,3,1024,4,4,1,oops,2,0,0\n")
    result = _hat(["fit-predictor", "--dataset", str(bad)])
    assert result.returncode == 2 and "not a number" in result.stderr
    result = _hat(["fit-predictor", "--dataset", str(tmp_path / "missing.csv")])
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = _hat(["fit-predictor", "--hw", "tpu9000", "--task", "demo"])
    assert result.returncode == 2 and "known hardware" in result.stderr
    with pytest.raises(HatError, match="does not exist"):
        load_predictor(tmp_path / "nope")


@needs_data
def test_layer_cost_drops_a_disturbed_measurement(monkeypatch):
    """One row measured while something else ran (here: the real Xeon CSV with one latency tripled) is left
    out of the refit instead of pulling every coefficient."""
    import hat_cli.latency.predictors.layer_cost as P

    rows = LatencyRows.from_table(read_latency_csv(LATENCY_DIR / "wmt14ende_cpu_xeon_all.csv"))
    train_idx, _, test_idx = split_indices(len(rows), 1)
    train_idx = train_idx[:300]  # a collect-latency-sized training set, where one bad row matters
    train, test = rows.subset(train_idx), rows.subset(test_idx)
    clean = fit_predictor(train)
    disturbed = rows.subset(train_idx)
    disturbed.decoder_ms = disturbed.decoder_ms.copy()
    disturbed.decoder_ms[np.argmax(disturbed.total_ms)] *= 3.0
    trimmed = fit_predictor(disturbed)
    assert trimmed.training["outliers_dropped"] >= 1
    monkeypatch.setattr(P, "OUTLIER_SIGMAS", float("inf"))
    untrimmed = fit_predictor(disturbed)
    rmse = {name: metrics(p.predict_rows(test), test.total_ms)["rmse_ms"] for name, p in
            (("clean", clean), ("trimmed", trimmed), ("untrimmed", untrimmed))}
    assert rmse["trimmed"] < 1.02 * rmse["clean"] and rmse["untrimmed"] > 1.2 * rmse["clean"]


def test_layer_cost_follows_a_bend_in_decoder_size(monkeypatch):
    """Per-step decoder weights past a cache size cost more per byte (the H200 shows it): the step-weights
    term lets the additive model bend there."""
    import random

    import hat_cli.latency.predictors.layer_cost as P

    space = SearchSpace.builtin("multi30k")
    configs = [space.sample(random.Random(i)) for i in range(400)]
    timed = P.TimedShape(output_vocab=10000, source_tokens=23)
    weights = np.array([P.decoder_step_weights(c, timed) for c in configs])
    knee = float(np.median(weights))
    totals = np.array([0.5 * c.decoder_layer_num * c.decoder_embed_dim / 512 + sum(c.decoder_ffn_embed_dim) / 4096
                       for c in configs]) + 2e-7 * np.maximum(weights - knee, 0)
    rows = LatencyRows.from_configs(configs)
    rows.decoder_ms = totals
    rows.timed = timed

    def held_out_rmse() -> float:
        predictor = fit_predictor(rows.subset(range(300)))
        return metrics(predictor.predict(configs[300:]), totals[300:])["rmse_ms"]

    with_term = held_out_rmse()
    monkeypatch.setattr(P, "step_weight_knots", lambda configs, timed: [0.0])  # one knot: a constant column
    without_term = held_out_rmse()
    assert with_term < 0.5 * without_term
    monkeypatch.undo()
    fitted = fit_predictor(rows.subset(range(300)))
    assert fitted.timed == timed


def test_layer_cost_learns_a_cost_of_one_decoder_depth_and_width(monkeypatch):
    """On an H200, 2-layer 256-wide decoders ran 0.02 ms off what per-layer sums predict: a term per
    (decoder depth, width) pair seen in training takes such an offset up, and the pair is kept in the file."""
    import random

    import hat_cli.latency.predictors.layer_cost as P

    space = SearchSpace.builtin("multi30k")
    configs = [space.sample(random.Random(i)) for i in range(400)]
    odd = np.array([c.decoder_layer_num == 2 and c.decoder_embed_dim == 256 for c in configs])
    totals = np.array([0.5 * c.decoder_layer_num * c.decoder_embed_dim / 512 + sum(c.decoder_ffn_embed_dim) / 4096
                       for c in configs]) + 0.05 * odd
    rows = LatencyRows.from_configs(configs)
    rows.decoder_ms = totals

    def held_out_rmse() -> float:
        predictor = fit_predictor(rows.subset(range(300)))
        return metrics(predictor.predict(configs[300:]), totals[300:])["rmse_ms"]

    assert odd[300:].any() and odd[:300].sum() >= 5
    with_term = held_out_rmse()
    assert 2 * 10000 + 256 in fit_predictor(rows.subset(range(300))).knots["decoder_depth_width"]
    monkeypatch.setattr(P, "depth_width_code", lambda config: 0.0)  # one pair for all: a constant column
    without_term = held_out_rmse()
    assert with_term < 0.5 * without_term


def test_a_decoder_depth_and_width_never_seen_in_training_is_predicted_without_pair_terms(tmp_path, monkeypatch):
    """Fitted alongside the pair terms, the other terms carry part of every pair's cost; a pair missing from
    the training rows is therefore predicted by the model fitted without pair terms, which is kept in the
    predictor's files."""
    import random

    import hat_cli.latency.predictors.layer_cost as P

    space = SearchSpace.builtin("multi30k")
    configs = [space.sample(random.Random(i)) for i in range(600)]
    totals = np.array([0.5 * c.decoder_layer_num * c.decoder_embed_dim / 512 + sum(c.decoder_ffn_embed_dim) / 4096
                       + 0.3 * c.encoder_embed_dim / 512 for c in configs])
    totals += np.random.RandomState(0).normal(0, 0.01, len(totals))
    rows = LatencyRows.from_configs(configs)
    rows.decoder_ms = totals
    missing = np.array([c.decoder_layer_num == 2 and c.decoder_embed_dim == 256 for c in configs])
    train, test = rows.subset(np.nonzero(~missing)[0]), rows.subset(np.nonzero(missing)[0])
    predictor = fit_predictor(train)
    assert P.depth_width_code(test.configs[0]) not in predictor.knots["decoder_depth_width"]
    error = metrics(predictor.predict_rows(test), test.total_ms)["rmse_ms"]
    assert error < 0.02  # the joint model's own terms, used for such a pair, were 0.04 ms off
    loaded = load_predictor(predictor.save(tmp_path / "p"))
    assert np.allclose(loaded.predict_rows(test), predictor.predict_rows(test))
    assert np.allclose(loaded.predict_rows(train), predictor.predict_rows(train))
    monkeypatch.setattr(predictor, "fallback", None)
    assert metrics(predictor.predict_rows(test), test.total_ms)["rmse_ms"] > 2 * error


def test_predictor_file_keeps_the_timed_shape_of_its_task(tmp_path):
    """A predictor fitted on a CSV of a known task keeps that task's vocabulary and source length, and
    predicts the same after a round trip through its files."""
    import csv
    import random

    from hat_cli.latency.dataset import config_columns
    from hat_cli.latency.predictors.base import TimedShape

    space = SearchSpace.builtin("multi30k")
    configs = [space.sample(random.Random(i)) for i in range(40)]
    path = tmp_path / "lat.csv"
    with path.open("w", newline="") as handle:
        writer = None
        for i, c in enumerate(configs):
            row = {**dict(zip(["encoder_embed_dim", "encoder_layer_num", "encoder_ffn_embed_dim_avg",
                               "encoder_self_attention_heads_avg", "decoder_embed_dim", "decoder_layer_num",
                               "decoder_ffn_embed_dim_avg", "decoder_self_attention_heads_avg",
                               "decoder_ende_attention_heads_avg", "decoder_arbitrary_ende_attn_avg"], c.features())),
                   "latency_mean_encoder": 1.0 + c.encoder_embed_dim / 512, "latency_mean_decoder": 2.0 + c.decoder_layer_num,
                   "latency_std_encoder": 0.0, "latency_std_decoder": 0.0, **config_columns(c, space),
                   "task": "multi30k.de-en", "sample_index": i, "reference": 0}
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
    rows = LatencyRows.from_table(read_latency_csv(path))
    assert rows.timed == TimedShape(10000, 23)
    predictor = fit_predictor(rows)
    predictor.save(tmp_path / "p")
    again = load_predictor(tmp_path / "p")
    assert again.timed == TimedShape(10000, 23)
    assert np.allclose(again.predict(configs), predictor.predict(configs))
