"""Training into a folder that holds another run, and resuming from damaged checkpoints."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from _hat import assert_refused, run_hat, temporary_leftovers


def train(assets, save_dir: Path, updates: int, *extra, cwd: Path):
    return run_hat("train-super", "--task", "demo", "--data-dir", assets / "data", "--save-dir", save_dir,
                   "--max-updates", str(updates), "--save-interval", "2", "--validate-every", str(updates), "--keep-last", "2",
                   "--device", "cpu", "--json", *extra, cwd=cwd)


def checkpoints(save_dir: Path) -> list[str]:
    return sorted(p.name for p in save_dir.glob("checkpoint_*"))


def test_starting_over_never_deletes_the_earlier_run(tmp_path, assets):
    save_dir = tmp_path / "s"
    first = train(assets, save_dir, 6, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    old = {name: (save_dir / name / "weights.safetensors").read_bytes() for name in checkpoints(save_dir)}
    assert list(old) == ["checkpoint_0000004", "checkpoint_0000006"]

    again = train(assets, save_dir, 4, "--no-resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert checkpoints(save_dir) == ["checkpoint_0000002", "checkpoint_0000004"]
    pointer = json.loads((save_dir / "last.json").read_text())
    assert pointer["checkpoint"] == "checkpoint_0000004" and (save_dir / pointer["checkpoint"]).is_dir()
    # the earlier run was moved aside, whole, and the message says where
    kept = [p for p in save_dir.rglob("checkpoint_000000[46]") if p.parent != save_dir]
    assert sorted(p.name for p in kept) == ["checkpoint_0000004", "checkpoint_0000006"]
    for path in kept:
        assert (path / "weights.safetensors").read_bytes() == old[path.name]
    assert "moved" in again.stderr and str(kept[0].parent.name) in again.stderr
    # a plain rerun continues the new run, not the old one
    rerun = train(assets, save_dir, 4, cwd=tmp_path)
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["resumed_from"] == 4


@pytest.mark.parametrize("damage", ["truncated-weights", "pickle-optimizer", "missing-weights", "garbage-state"])
def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, assets, damage):
    save_dir = tmp_path / "s"
    assert train(assets, save_dir, 4, cwd=tmp_path).returncode == 0
    latest = save_dir / "checkpoint_0000004"
    marker = tmp_path / "PWNED"
    if damage == "truncated-weights":
        data = (latest / "weights.safetensors").read_bytes()
        (latest / "weights.safetensors").write_bytes(data[: len(data) // 3])
    elif damage == "pickle-optimizer":
        sys_path = str(Path(__file__).resolve().parents[1])
        import sys

        sys.path.insert(0, sys_path)
        from test_convert_fixtures import Malicious

        (latest / "optimizer.safetensors").write_bytes(pickle.dumps({"state": Malicious(marker)}))
    elif damage == "missing-weights":
        (latest / "weights.safetensors").unlink()
    else:
        (latest / "state.json").write_bytes(b"\x00\x01 not json")
    result = train(assets, save_dir, 6, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["resumed_from"] == 2
    assert "checkpoint_0000004" in result.stderr and "checkpoint_0000002" in result.stderr
    assert not marker.exists()
    assert not temporary_leftovers(save_dir)
    assert checkpoints(save_dir)[-1] == "checkpoint_0000006"


def test_resume_with_every_checkpoint_damaged_is_one_sentence(tmp_path, assets):
    save_dir = tmp_path / "s"
    assert train(assets, save_dir, 4, cwd=tmp_path).returncode == 0
    for path in save_dir.glob("checkpoint_*"):
        (path / "weights.safetensors").write_bytes(b"garbage")
    assert_refused(train(assets, save_dir, 6, cwd=tmp_path), str(save_dir), "--no-resume")
