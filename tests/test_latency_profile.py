"""`hat profile ARCH --hw H [--predict]` and the collect -> fit -> predict round trip on default paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hat_cli.model.space import SearchSpace


def _hat(args, cwd):
    env = dict(os.environ, HAT_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    env.pop("HAT_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "hat_cli.cli.app", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_profile_hw_measures_and_predicts_with_the_default_predictor(tmp_path):
    arch = tmp_path / "arch.yml"
    SearchSpace.builtin("demo").smallest().save_yaml(arch)
    # No predictor yet: a clear sentence, exit 2.
    result = _hat(["profile", str(arch), "--task", "demo", "--hw", "cpu", "--predict"], tmp_path)
    assert result.returncode == 2 and "fit-predictor" in result.stderr
    collect = ["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "12", "--repetitions", "2", "--warmup", "0",
               "--reference-every", "0", "--json"]
    result = _hat(collect, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["csv"] == os.path.join("latency_dataset", "demo_cpu.csv")
    result = _hat(["fit-predictor", "--hw", "cpu", "--task", "demo", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["predictor"] == os.path.join("latency_dataset", "demo_cpu.predictor")
    result = _hat(["profile", str(arch), "--task", "demo", "--hw", "cpu", "--predict", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    lat = doc["latency_ms"]
    assert lat["total"] == pytest.approx(lat["encoder"] + lat["decoder"]) and lat["decoder"] > 0
    assert doc["predicted_latency_ms"] > 0 and doc["hardware"] == "cpu"
    assert {"params", "flops"} <= set(doc)


def test_profile_predict_without_hw_exits_2(tmp_path):
    arch = tmp_path / "arch.yml"
    SearchSpace.builtin("demo").smallest().save_yaml(arch)
    result = _hat(["profile", str(arch), "--task", "demo", "--predict"], tmp_path)
    assert result.returncode == 2 and "--hw" in result.stderr
    result = _hat(["profile", str(arch), "--task", "demo", "--hw", "nosuch"], tmp_path)
    assert result.returncode == 2 and "known hardware" in result.stderr
