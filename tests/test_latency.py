"""Latency protocol, the latency CSV (HAT's header, resume, torn lines, drift rows) and `hat collect-latency`."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hat_cli.core.errors import HatError
from hat_cli.latency.backends import get_backend
from hat_cli.latency.meters import LatencyMeter, trimmed_values
from hat_cli.latency.dataset import (
    HAT_COLUMNS,
    collect,
    config_from_row,
    header_for,
    read_latency_csv,
    reference_config,
    sample_config,
)
from hat_cli.model.space import SearchSpace
from hat_cli.tasks import get_task

HAT_HEADER = (
    "encoder_embed_dim,encoder_layer_num,encoder_ffn_embed_dim_avg,encoder_self_attention_heads_avg,"
    "decoder_embed_dim,decoder_layer_num,decoder_ffn_embed_dim_avg,decoder_self_attention_heads_avg,"
    "decoder_ende_attention_heads_avg,decoder_arbitrary_ende_attn_avg,latency_mean_encoder,latency_mean_decoder,"
    "latency_std_encoder,latency_std_decoder"
)


def _hat(args, timeout=180):
    env = dict(os.environ, HAT_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    env.pop("HAT_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "hat_cli.cli.app", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def demo():
    task = get_task("demo")
    space = SearchSpace.builtin(task.latency_space)
    backend = get_backend("cpu")
    backend = dataclasses.replace(backend, protocol=dataclasses.replace(backend.protocol, warmup=0, repetitions=2))
    return task, space, LatencyMeter(backend, task, space.shape)


def _metadata(seed=1):
    return {"hardware": "cpu", "device": "cpu test", "precision": "fp32", "mode": "inference", "threads": "1",
            "repetitions": "3", "instances": "1", "torch_version": "x", "task": "demo", "seed": str(seed)}


def test_trimming_follows_hat_latency_dataset():
    # 20 runs: drop the 2 fastest and the 2 slowest.
    values = list(range(1, 21))
    kept = trimmed_values([float(v) for v in values])
    assert len(kept) == 16 and statistics.fmean(kept) == pytest.approx(10.5)
    # 5 runs: floor(0.5) = 0 fastest dropped, max(1, 0) = 1 slowest dropped.
    assert statistics.fmean(trimmed_values([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(2.5)


def test_measure_real_model_both_modes(demo):
    task, space, meter = demo
    config = space.largest()
    result = meter.measure(config)
    assert result.encoder_ms > 0 and result.decoder_ms > 0
    assert result.total_ms == pytest.approx(result.encoder_ms + result.decoder_ms)
    published = LatencyMeter(meter.backend, task, space.shape, mode="published")
    model = published.build(config)
    assert model.training  # HAT's quirk: training mode while timing
    assert published.measure(config, model).decoder_ms > 0
    with pytest.raises(HatError, match="mode"):
        LatencyMeter(meter.backend, task, space.shape, mode="fast")


def test_instances_time_the_same_weights_at_new_addresses(demo):
    """With instances=K, one measurement times K placements of the model in memory: before each, every
    weight moves to a new address with the same values, and the model computes exactly what it did before."""
    import torch

    task, space, meter = demo
    several = LatencyMeter(meter.backend, task, space.shape, overrides={"instances": 3})
    config = space.largest()
    model = several.build(config)
    values = {name: t.detach().clone() for name, t in model.named_parameters()}
    src = torch.tensor([[2] + [7] * 9])
    with torch.inference_mode():
        expected = model.encode(src, config).out.clone()
    moves = []
    move = several.meter._move_weights

    def recording_move(m):
        before = {name: t.data_ptr() for name, t in m.named_parameters()}
        spacer = move(m)
        moves.append(all(t.data_ptr() != before[name] for name, t in m.named_parameters()))
        return spacer

    several.meter._move_weights = recording_move
    result = several.measure(config, model)
    assert result.encoder_ms > 0 and result.decoder_ms > 0
    assert moves == [True, True, True]  # one move per placement, every weight somewhere new each time
    assert all(torch.equal(t, values[name]) for name, t in model.named_parameters())
    with torch.inference_mode():
        assert torch.equal(model.encode(src, config).out, expected)
    assert several.csv_metadata()["instances"] == "3"


def test_cuda_backend_without_gpu_is_a_clear_error(demo):
    import torch

    task, space, _ = demo
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(HatError, match="CUDA"):
        LatencyMeter(get_backend("cuda"), task, space.shape)


def test_csv_header_starts_with_hats_exact_columns(tmp_path, demo):
    task, space, meter = demo
    path = tmp_path / "lat.csv"
    collect(path, space, meter.measure, 2, 1, _metadata(), reference_every=0)
    lines = path.read_text().splitlines()
    assert ",".join(lines[0].split(",")[:14]) == HAT_HEADER
    assert tuple(lines[0].split(",")) == header_for(space)
    assert len(lines) == 3
    table = read_latency_csv(path)
    for i, row in enumerate(table.rows):
        assert config_from_row(row) == sample_config(space, 1, i)
        assert int(row["sample_index"]) == i
        # HAT's features are written with str(); averages reproduce config.features()
        assert [float(row[c]) for c in HAT_COLUMNS[:10]] == pytest.approx(sample_config(space, 1, i).features())


def test_resume_after_a_torn_last_line_loses_and_duplicates_nothing(tmp_path, demo):
    task, space, meter = demo
    path = tmp_path / "lat.csv"
    collect(path, space, meter.measure, 3, 7, _metadata(7), reference_every=2)
    complete = path.read_text()
    # Simulate a crash in the middle of writing the next row.
    with open(path, "a") as handle:
        handle.write("512,6,1024.0,4.0,51")
    result = collect(path, space, meter.measure, 5, 7, _metadata(7), reference_every=2)
    text = path.read_text()
    assert text.startswith(complete) and "512,6,1024.0,4.0,51\n" not in text
    table = read_latency_csv(path)
    samples = [int(r["sample_index"]) for r in table.samples()]
    assert samples == [0, 1, 2, 3, 4] and result.rows == 5
    assert [config_from_row(r) for r in table.samples()] == [sample_config(space, 7, i) for i in range(5)]
    # Reference rows before samples 0, 2 and 4, each once, always the same architecture.
    assert [int(r["sample_index"]) for r in table.references()] == [0, 2, 4]
    assert all(config_from_row(r) == reference_config(space) for r in table.references())
    # Nothing left to do: a third run writes nothing.
    assert collect(path, space, meter.measure, 5, 7, _metadata(7), reference_every=2).new_rows == 0


def test_resume_refuses_a_file_from_other_settings(tmp_path, demo):
    task, space, meter = demo
    path = tmp_path / "lat.csv"
    collect(path, space, meter.measure, 1, 1, _metadata(1))
    with pytest.raises(HatError, match="seed"):
        collect(path, space, meter.measure, 2, 2, _metadata(2))
    with pytest.raises(HatError, match="instances=1, this run has instances=4"):  # pooled placements differ in noise
        collect(path, space, meter.measure, 2, 1, _metadata(1) | {"instances": "4"})
    other = SearchSpace.builtin("latency")
    with pytest.raises(HatError, match="different columns"):
        collect(path, other, meter.measure, 2, 1, _metadata(1))
    # A file from before the 'instances' column: its own sentence, and the file stays as it was.
    older = tmp_path / "older.csv"
    older.write_text(",".join(c for c in header_for(space) if c != "instances") + "\n")
    before = older.read_bytes()
    with pytest.raises(HatError, match="earlier hat.*another --csv"):
        collect(older, space, meter.measure, 1, 1, _metadata(1))
    assert older.read_bytes() == before


def test_a_protocol_that_cannot_measure_is_refused_by_name(demo):
    task, space, _ = demo
    backend = get_backend("cpu")
    for change in ({"instances": 0}, {"repetitions": 0}, {"warmup": -1}):
        with pytest.raises(HatError, match="repetitions >= 1, instances >= 1 and warmup >= 0"):
            LatencyMeter(backend, task, space.shape, overrides=change)


@pytest.mark.slow
def test_collect_latency_cli_killed_mid_run_resumes_exactly(tmp_path):
    path = tmp_path / "demo.csv"
    args = ["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "40", "--csv", str(path),
            "--repetitions", "2", "--warmup", "0", "--reference-every", "5", "--seed", "3"]
    env = dict(os.environ, HAT_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "hat_cli.cli.app", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or path.read_text().count("\n") < 4):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_latency_csv(path)
    assert 1 <= len(before.samples()) < 40
    result = _hat([*args[:6], "6" if len(before.samples()) < 6 else str(len(before.samples()) + 2), *args[7:], "--json"])
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["hardware"] == "cpu" and document["csv"] == str(path)
    table = read_latency_csv(path)
    indices = [int(r["sample_index"]) for r in table.samples()]
    assert indices == list(range(document["rows"]))  # no gap, no duplicate
    space = SearchSpace.builtin("demo")
    assert [config_from_row(r) for r in table.samples()] == [sample_config(space, 3, i) for i in indices]


def test_collect_latency_bad_input_exits_2(tmp_path):
    result = _hat(["collect-latency", "--hw", "tpu9000", "--task", "demo", "--samples", "1", "--csv", str(tmp_path / "x.csv")])
    assert result.returncode == 2
    assert "tpu9000" in result.stderr and "cpu" in result.stderr and "xeon" in result.stderr
    assert "Traceback" not in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    result = _hat(["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "1", "--csv", str(bad)])
    assert result.returncode == 2 and "different columns" in result.stderr
    result = _hat(["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "1", "--instances", "0", "--csv", str(tmp_path / "y.csv")])
    assert result.returncode == 2 and "--instances must be at least 1" in result.stderr
    assert not (tmp_path / "y.csv").exists()


def test_named_device_warns_that_numbers_describe_this_machine(tmp_path):
    result = _hat(["collect-latency", "--hw", "xeon", "--task", "demo", "--samples", "1", "--csv", str(tmp_path / "x.csv"),
                   "--repetitions", "1", "--warmup", "0", "--reference-every", "0"])
    assert result.returncode == 0, result.stderr
    assert "describe this machine" in " ".join(result.stderr.split())
    rows = list(csv.DictReader(open(tmp_path / "x.csv")))
    assert rows[0]["hardware"] == "xeon" and rows[0]["mode"] == "inference"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (CUDA-graph timing)")
@pytest.mark.parametrize("task_name", ["demo", "wmt14.en-de"])
def test_cuda_graph_timing_measures_the_same_model_as_eager(task_name):
    """`cuda` captures encoder and decoder as CUDA graphs; `cuda-eager` launches from Python. Capture must
    work for the smallest and a sampled architecture of each task's latency space (no host sync inside
    the model), and twice on one model (graphs are released after each measurement)."""
    task = get_task(task_name)
    space = SearchSpace.builtin(task.latency_space)
    graphs = LatencyMeter(get_backend("cuda"), task, space.shape)
    eager = LatencyMeter(get_backend("cuda-eager"), task, space.shape)
    assert graphs.uses_cuda_graphs and not eager.uses_cuda_graphs
    for config in (space.smallest(), space.sample(random.Random(3))):
        model = graphs.build(config)
        for result in (graphs.measure(config, model), graphs.measure(config, model), eager.measure(config, model)):
            assert 0 < result.encoder_ms < math.inf and 0 < result.decoder_ms < math.inf


def test_demo_stops_with_one_sentence_when_the_cpu_was_too_busy(tmp_path):
    """`hat demo` checks the spread of its reference re-measurements before it fits and searches. A busy
    machine cannot be produced on demand, so the reference rows of a real collection are slowed by hand."""
    import csv

    from hat_cli.demo import measurement_noise

    path = tmp_path / "latency_cpu.csv"
    done = _hat(["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "6", "--csv", str(path),
                 "--repetitions", "2", "--warmup", "0", "--reference-every", "2"])
    assert done.returncode == 0, done.stderr
    assert measurement_noise(path, limit=0.5) < 0.5  # a quiet run passes, the CSV stays where it is
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    slowed = 0
    for row in rows:
        if row["reference"] == "1" and slowed % 2 == 1:  # every other reference measurement 100x slower
            row["latency_mean_decoder"] = str(float(row["latency_mean_decoder"]) * 100)
        slowed += row["reference"] == "1"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    original = path.read_bytes()
    with pytest.raises(HatError, match=r"too busy to measure latency: .* run `hat demo` again"):
        measurement_noise(path, limit=0.5)
    assert not path.exists() and (tmp_path / "latency_cpu.busy.csv").read_bytes() == original
