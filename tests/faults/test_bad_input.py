"""Bad input reaches no silent wrong result and no traceback: exit 2 and one sentence (CLI.md), found by
the fault probe of issue 15 and kept so here. Each test names the case it covers."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from _hat import assert_refused, hat_env, invoke, run_hat, temporary_leftovers
from conftest import TINY, small_search


# ------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-300"])
def test_fit_predictor_lat_norm_must_be_positive_and_finite(tmp_path, latency_csv, value):
    result = invoke("fit-predictor", "--dataset", latency_csv, "--model", "hat-mlp", "--lat-norm", value,
                     "--out", tmp_path / "p", cwd=tmp_path)
    assert_refused(result, "--lat-norm")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("budget", ["1e999ms", "inf", "nan", "-5ms", "0s", "1e400"])
def test_search_budget_must_be_a_positive_finite_latency(tmp_path, predictor, budget):
    result = invoke(*small_search(hw="cpu", latency=budget, predictor=predictor, out=tmp_path / "o"), cwd=tmp_path)
    assert_refused(result, "latency")


def test_search_refuses_a_predictor_that_predicts_nan(tmp_path, predictor, demo_data, supernet):
    meta = json.loads((predictor / "predictor.json").read_text())
    meta["lat_norm"] = math.nan
    (predictor / "predictor.json").write_text(json.dumps(meta))
    result = invoke(*small_search(hw="cpu", latency="1000ms", predictor=predictor, supernet=supernet,
                                   data_dir=demo_data, out=tmp_path / "o"), cwd=tmp_path)
    assert_refused(result)
    assert not (tmp_path / "o" / "subtransformer.yml").exists()


def test_search_refuses_a_predictor_of_another_task(tmp_path, predictor):
    result = invoke(*small_search(("--task", "iwslt14.de-en"), hw="cpu", latency="1000ms", predictor=predictor,
                                   out=tmp_path / "o"), cwd=tmp_path)
    assert_refused(result, "demo")


def test_search_refuses_unknown_hardware_even_with_a_predictor(tmp_path, predictor):
    result = invoke(*small_search(hw="nope", latency="1000ms", predictor=predictor, out=tmp_path / "o"), cwd=tmp_path)
    assert_refused(result, "nope")


def test_search_max_tokens_must_be_positive(tmp_path, predictor, demo_data, supernet):
    result = invoke(*small_search(hw="cpu", latency="1000ms", predictor=predictor, supernet=supernet,
                                   data_dir=demo_data, out=tmp_path / "o", max_tokens=0), cwd=tmp_path)
    assert_refused(result, "--max-tokens")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_test_lenpen_must_be_finite(tmp_path, supernet, demo_data, value):
    result = invoke("test", supernet, "--task", "demo", "--data-dir", demo_data, "--lenpen", value,
                     "--output", tmp_path / "hyp", cwd=tmp_path)
    assert_refused(result, "--lenpen")


def test_collect_latency_refuses_a_csv_holding_nan_latencies(tmp_path, latency_csv):
    lines = latency_csv.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("latency_mean_encoder")] = "nan"
    path = tmp_path / "c.csv"
    path.write_text("\n".join([lines[0], ",".join(row), *lines[2:4]]) + "\n")
    before = path.read_bytes()
    result = invoke("collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "5", "--csv", path, *TINY, cwd=tmp_path)
    assert_refused(result, "latency_mean_encoder")
    assert path.read_bytes() == before


def test_fit_predictor_refuses_negative_latencies(tmp_path, latency_csv):
    lines = latency_csv.read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    rows[3][header.index("latency_mean_encoder")] = "-2.5"
    path = tmp_path / "neg.csv"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    result = invoke("fit-predictor", "--dataset", path, "--out", tmp_path / "p", cwd=tmp_path)
    assert_refused(result, "latency_mean_encoder")


@pytest.mark.parametrize("extra", [["--hw", "cpu"], ["--task", "demo"], ["--hw", "cpu", "--task", "demo"]])
def test_fit_predictor_dataset_and_hw_task_are_exclusive(tmp_path, latency_csv, extra):
    result = invoke("fit-predictor", "--dataset", latency_csv, *extra, "--out", tmp_path / "p", cwd=tmp_path)
    assert_refused(result, "--dataset")


def test_data_refuses_binary_text(tmp_path):
    source = tmp_path / "text"
    source.mkdir()
    for split in ("train", "valid"):
        for lang in ("de", "en"):
            (source / f"{split}.{lang}").write_bytes(bytes(range(256)) * 8)
    result = invoke("data", "--task", "multi30k.de-en", "--from-dir", source, "--data-dir", tmp_path / "out", cwd=tmp_path)
    assert_refused(result, "text")


def test_demo_checks_its_numbers_before_any_work(tmp_path):
    result = invoke("demo", "--workdir", tmp_path / "w", "--samples", "-3", cwd=tmp_path)
    assert_refused(result, "--samples")
    assert not (tmp_path / "w" / "data").exists()


# ------------------------------------------------------------------------------------- corrupt inputs
def _search_with(tmp_path, predictor_path):
    return invoke(*small_search(hw="cpu", latency="1000ms", predictor=predictor_path, out=tmp_path / "o"), cwd=tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_predictor_weights_are_one_sentence(tmp_path, predictor, damage):
    weights = predictor / "predictor.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"garbage": os.urandom(300), "truncated": data[: len(data) // 2], "empty": b""}[damage])
    assert_refused(_search_with(tmp_path, predictor), "predictor.safetensors")
    lone = tmp_path / "lone.safetensors"  # a bare file, the form zoo-pulled HAT predictors take
    lone.write_bytes(weights.read_bytes())
    assert_refused(_search_with(tmp_path, lone), "lone.safetensors")


@pytest.mark.parametrize("damage", ["binary", "no-keys", "list", "wrong-types"])
def test_damaged_predictor_json_is_one_sentence(tmp_path, predictor, damage):
    meta_path = predictor / "predictor.json"
    meta = json.loads(meta_path.read_text())
    if damage == "binary":
        meta_path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    elif damage == "no-keys":
        meta_path.write_text(json.dumps({"format": meta["format"]}))
    elif damage == "list":
        meta_path.write_text("[1, 2, 3]")
    else:
        meta_path.write_text(json.dumps({**meta, "knots": 7, "alpha": "x"}))
    assert_refused(_search_with(tmp_path, predictor), "predictor.json")


def test_garbage_existing_csv_is_one_sentence_and_untouched(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(os.urandom(2000) + b"\n")
    before = path.read_bytes()
    result = invoke("collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "2", "--csv", path, *TINY, cwd=tmp_path)
    assert_refused(result, "c.csv")
    assert path.read_bytes() == before


@pytest.mark.parametrize("damage", ["vocab-mismatch", "absurd-dims", "negative-vocab", "not-a-dict", "bad-arch"])
def test_damaged_model_config_json_is_one_sentence(tmp_path, supernet, demo_data, damage):
    import shutil

    model = Path(shutil.copytree(supernet, tmp_path / "model"))
    meta = json.loads((model / "config.json").read_text())
    if damage == "vocab-mismatch":
        meta["tgt_vocab_size"] = meta["src_vocab_size"] + 8  # shared embeddings need one vocabulary
    elif damage == "absurd-dims":
        meta["super_shape"]["encoder_embed_dim"] = 10**9
    elif damage == "negative-vocab":
        meta["src_vocab_size"] = meta["tgt_vocab_size"] = -5
    elif damage == "not-a-dict":
        meta["super_shape"] = [1, 2, 3]
    else:
        meta["arch"] = {"encoder_embed_dim": "wide"}
    (model / "config.json").write_text(json.dumps(meta))
    result = invoke("test", model, "--task", "demo", "--data-dir", demo_data, "--output", tmp_path / "h", cwd=tmp_path)
    assert_refused(result, "config.json")


def test_zoo_push_offline_is_one_sentence(tmp_path, supernet):
    env = hat_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_TOKEN="hf_fake")
    result = run_hat("zoo", "push", supernet, "--repo", "someone/x", cwd=tmp_path, env=env, timeout=60)
    assert_refused(result, "someone/x")
    env.pop("HF_HUB_OFFLINE")  # no network either: the host cannot be resolved here
    env["HF_ENDPOINT"] = "https://hub.invalid"
    result = run_hat("zoo", "push", supernet, "--repo", "someone/x", cwd=tmp_path, env=env, timeout=60)
    # The host is asked once and the push gives up at once (huggingface_hub alone retries for ~25 s).
    assert "cannot be resolved" in assert_refused(result, "someone/x")


# ------------------------------------------------------------------------------- names of things
def test_a_directory_given_as_a_file_is_named_as_a_directory(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for args in (["zoo", "convert", folder, "-o", tmp_path / "o"],
                 ["fit-predictor", "--dataset", folder, "--out", tmp_path / "p"],
                 ["data", "--task", "demo", "--srcdict", folder, "--data-dir", tmp_path / "d"]):
        sentence = assert_refused(invoke(*args, cwd=tmp_path), str(folder))
        assert "does not exist" not in sentence and "directory" in sentence


def test_offline_zoo_pull_fails_fast(tmp_path):
    """No network (the Hub's host does not resolve): one sentence in seconds, not a 25-second retry storm."""
    from hat_cli.core.paths import zoo_file

    table = tmp_path / "zoo.toml"  # the original checkpoints' hosts made unresolvable too, network or not
    table.write_text(zoo_file().read_text().replace("https://www.dropbox.com/", "https://www.dropbox.invalid/"))
    env = hat_env(HAT_HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="https://hub.invalid",
                  HAT_ZOO_FILE=str(table))
    result = run_hat("zoo", "pull", "HAT_wmt14ende_xeon@204.2ms", cwd=tmp_path, env=env, timeout=120)
    sentence = assert_refused(result)  # the Hub was skipped once its host did not resolve; the original's host
    assert "Cannot reach www.dropbox.invalid" in sentence and "attempts" not in sentence  # is not retried either
    assert not temporary_leftovers(tmp_path / "home") if (tmp_path / "home").exists() else True
    env["HF_HUB_OFFLINE"] = "1"
    assert_refused(run_hat("zoo", "pull", "HAT_wmt14ende_xeon@204.2ms", cwd=tmp_path, env=env), "HF_HUB_OFFLINE")
