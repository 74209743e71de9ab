"""kill -9 at random moments, and concurrent runs: a rerun finishes the job and nothing is lost or doubled.

Each scenario runs the command once undisturbed for reference, then kills fresh runs at random moments
(seeded; the moments are printed), reruns to the end and compares with the reference. The moments fall
anywhere from start-up (import) to the last write; whatever they hit, the invariants must hold.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from _hat import assert_refused, digest_tree, hat_env, kill_after, run_hat, start_hat, temporary_leftovers
from conftest import TINY, small_search

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("HAT_FAULT_SEED", "15"))
# One intra-op thread: CPU kernels are then deterministic, so an interrupted training can be compared
# with an undisturbed one weight for weight.
ENV = hat_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def kill_rounds(args, cwd: Path, rounds: int, low: float, high: float, label: str) -> list[float]:
    """Start `hat ARGS` ``rounds`` times, each killed after a random moment in [low, high) s (unless done)."""
    rng = random.Random(f"{SEED}:{label}")
    moments = []
    for _ in range(rounds):
        moment = rng.uniform(low, high)
        killed = kill_after(start_hat(*args, cwd=cwd, env=ENV), moment)
        moments.append(round(moment, 2) if killed else -1.0)
    print(f"{label}: killed after {moments} s (-1: finished first); HAT_FAULT_SEED={SEED}")
    # A scenario in which every run finished before its kill would test nothing: its window is too late.
    assert any(moment >= 0 for moment in moments), f"{label}: no run was killed; move the window [{low}, {high}) s earlier"
    return moments


def finish(args, cwd: Path):
    result = run_hat(*args, cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --------------------------------------------------------------------------------- collect-latency
def _sample_rows(path: Path):
    from hat_cli.latency.dataset import read_latency_csv

    return read_latency_csv(path).samples()


def _check_collection(path: Path, samples: int, seed: int = 1) -> None:
    from hat_cli.latency.dataset import config_from_row, sample_config
    from hat_cli.model.space import SearchSpace

    rows = _sample_rows(path)
    indices = [int(r["sample_index"]) for r in rows]
    assert sorted(indices) == list(range(samples)), f"lost or doubled samples: {sorted(indices)}"
    space = SearchSpace.builtin("demo")
    for row in rows:  # every row holds the architecture its index stands for
        assert config_from_row(row) == sample_config(space, seed, int(row["sample_index"]))


def test_collect_latency_killed_at_random_loses_and_doubles_nothing(tmp_path):
    path = tmp_path / "c.csv"
    # 150 samples take ~4 s on 2 cores (2.4 s of start-up, ~10 ms a sample): the kills land while rows are written.
    args = ["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "150", "--csv", path, *TINY]
    kill_rounds(args, tmp_path, 3, 1.5, 3.5, "collect-latency")
    finish(args, tmp_path)
    _check_collection(path, 150)
    assert not temporary_leftovers(tmp_path)


def test_concurrent_collections_into_one_csv_lose_and_double_nothing(tmp_path):
    path = tmp_path / "c.csv"
    args = ["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "8", "--csv", path, *TINY]
    for trial in range(2):
        first, second = start_hat(*args, cwd=tmp_path, env=ENV), start_hat(*args, cwd=tmp_path, env=ENV)
        results = []
        for process in (first, second):
            out, err = process.communicate(timeout=300)
            results.append(type("R", (), {"returncode": process.returncode, "stdout": out, "stderr": err})())
        codes = sorted(r.returncode for r in results)
        assert codes in ([0, 0], [0, 2]), [r.stderr[-2000:] for r in results]
        for r in results:
            if r.returncode == 2:
                assert_refused(r, str(path))
        _check_collection(path, 8)
        path.unlink()


# ------------------------------------------------------------------------------------- train-super
def _weights_digest(save_dir: Path) -> str:
    import hashlib

    from safetensors.torch import load_file

    tensors = load_file(str(save_dir / "model" / "model.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    return digest.hexdigest()


def test_train_super_killed_at_random_resumes_to_the_same_model(tmp_path, assets):
    def args(save_dir):
        return ["train-super", "--task", "demo", "--data-dir", assets / "data", "--save-dir", save_dir, "--max-updates", "6",
                "--save-interval", "2", "--validate-every", "4", "--keep-last", "2", "--device", "cpu", "--json"]

    started = time.time()
    reference = json.loads(finish(args(tmp_path / "ref"), tmp_path).stdout)
    # The window comes from this machine's own undisturbed run: from halfway to its second checkpoint (its first
    # was written before) to its final model, so the kills land among the writes however fast the machine is
    # (a fixed [1.0, 4.5) s window let a fast clean-clone run finish before every kill).
    second_checkpoint = (tmp_path / "ref" / "checkpoint_0000004" / "state.json").stat().st_mtime - started
    final_model = (tmp_path / "ref" / "model").stat().st_mtime - started
    print(f"reference run: second checkpoint at {second_checkpoint:.2f} s, final model at {final_model:.2f} s")
    save_dir = tmp_path / "run"
    kill_rounds(args(save_dir), tmp_path, 3, 0.5 * second_checkpoint, final_model, "train-super")
    pointer = save_dir / "last.json"
    if pointer.exists():  # whatever moment the kill hit, the pointer names a complete checkpoint
        name = json.loads(pointer.read_text())["checkpoint"]
        assert (save_dir / name / "state.json").is_file()
    resumed = json.loads(finish(args(save_dir), tmp_path).stdout)
    assert resumed["updates"] == reference["updates"] == 6
    assert resumed["valid_loss"] == reference["valid_loss"]
    assert _weights_digest(save_dir) == _weights_digest(tmp_path / "ref")
    assert not temporary_leftovers(save_dir)
    kept = sorted(p.name for p in save_dir.glob("checkpoint_*"))
    assert kept == ["checkpoint_0000004", "checkpoint_0000006"]


# ------------------------------------------------------------------------------------------ search
def test_search_killed_at_random_finds_the_same_winner(tmp_path, assets):
    def args(out):
        return small_search(hw="cpu", latency="1000ms", predictor=assets / "predictor", supernet=assets / "super" / "model",
                            data_dir=assets / "data", out=out, iterations=4) + ["--json"]

    reference = json.loads(finish(args(tmp_path / "ref"), tmp_path).stdout)
    out = tmp_path / "run"
    kill_rounds(args(out), tmp_path, 3, 0.5, 3.5, "search")
    resumed = json.loads(finish(args(out), tmp_path).stdout)
    assert resumed["arch"] == reference["arch"] and resumed["valid_loss"] == reference["valid_loss"]
    assert (out / "subtransformer.yml").read_text() == (tmp_path / "ref" / "subtransformer.yml").read_text()
    from hat_cli.search.outputs import read_explored_csv

    explored = [config for config, _, _ in read_explored_csv(out / "explored.csv")]
    assert len(explored) == len(set(explored)) == resumed["evaluations"]
    assert not temporary_leftovers(out)


# -------------------------------------------------------------------------------------------- data
def test_data_killed_at_random_leaves_no_temporary_files_and_the_same_result(tmp_path):
    def args(out):
        return ["data", "--task", "demo", "--data-dir", out]

    finish(args(tmp_path / "ref"), tmp_path)
    out = tmp_path / "run"
    kill_rounds(args(out), tmp_path, 4, 0.2, 1.2, "data")
    finish(args(out), tmp_path)
    assert not temporary_leftovers(out), temporary_leftovers(out)
    ignore = {"summary.json"}  # holds the run's own timings
    ref = {k: v for k, v in digest_tree(tmp_path / "ref").items() if k not in ignore}
    got = {k: v for k, v in digest_tree(out).items() if k not in ignore}
    assert got == ref


def test_data_leftovers_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    """Deterministic form of the case above: a temporary file of a dead writer beside its target."""
    out = tmp_path / "d"
    finish(["data", "--task", "demo", "--data-dir", out], tmp_path)
    dead = _dead_pid()
    stale = [out / f".dict.src.txt.{dead}.0badcafe.tmp", out / "text" / f".train.src.{dead}.deadbeef.tmp"]
    for path in stale:
        path.write_text("half of something")
    finish(["data", "--task", "demo", "--data-dir", out], tmp_path)
    assert not any(p.exists() for p in stale)
    assert not temporary_leftovers(out)


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
