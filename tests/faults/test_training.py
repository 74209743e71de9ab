"""Training into a folder that holds another run, and resuming from damaged checkpoints.

The commands run in this process (`invoke`): the same app and error handling as the executable, without
paying for a torch import per run.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch

from _hat import assert_refused, invoke, temporary_leftovers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_convert_fixtures import Malicious  # noqa: E402


def train(assets, save_dir: Path, updates: int, *extra, cwd: Path):
    return invoke("train-super", "--task", "demo", "--data-dir", assets / "data", "--save-dir", save_dir,
                  "--max-updates", str(updates), "--save-interval", "2", "--validate-every", str(updates), "--keep-last", "3",
                  "--device", "cpu", "--json", *extra, cwd=cwd)


def checkpoints(save_dir: Path) -> list[str]:
    return sorted(p.name for p in save_dir.glob("checkpoint_*"))


@pytest.fixture(scope="module")
def six_updates(assets, tmp_path_factory) -> Path:
    """A finished 6-update run with checkpoints 2, 4 and 6 (copied by each test that changes it)."""
    root = tmp_path_factory.mktemp("six")
    result = train(assets, root / "s", 6, cwd=root)
    assert result.returncode == 0, result.stderr
    assert checkpoints(root / "s") == ["checkpoint_0000002", "checkpoint_0000004", "checkpoint_0000006"]
    return root / "s"


@pytest.mark.slow
def test_starting_over_never_deletes_the_earlier_run(tmp_path, assets, six_updates):
    save_dir = Path(shutil.copytree(six_updates, tmp_path / "s"))
    old = {name: (save_dir / name / "weights.safetensors").read_bytes() for name in checkpoints(save_dir)}

    again = train(assets, save_dir, 4, "--no-resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert checkpoints(save_dir) == ["checkpoint_0000002", "checkpoint_0000004"]  # the new run's, both kept
    pointer = json.loads((save_dir / "last.json").read_text())
    assert pointer["checkpoint"] == "checkpoint_0000004" and (save_dir / pointer["checkpoint"]).is_dir()
    # the earlier run was moved aside, whole, and the message says where
    (aside,) = save_dir.glob("earlier-run-*")
    assert checkpoints(aside) == list(old)
    for name, weights in old.items():
        assert (aside / name / "weights.safetensors").read_bytes() == weights
    assert (aside / "model" / "model.safetensors").is_file() and (aside / "last.json").is_file()
    assert "moved" in again.stderr and aside.name in again.stderr
    # a plain rerun continues the new run, not the old one
    rerun = train(assets, save_dir, 4, cwd=tmp_path)
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["resumed_from"] == 4


@pytest.mark.slow
def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, assets, six_updates):
    """The newest has a pickle named optimizer.safetensors, the one before truncated weights: resume from 2."""
    save_dir = Path(shutil.copytree(six_updates, tmp_path / "s"))
    marker = tmp_path / "PWNED"
    (save_dir / "checkpoint_0000006" / "optimizer.safetensors").write_bytes(pickle.dumps({"state": Malicious(marker)}))
    weights = save_dir / "checkpoint_0000004" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = train(assets, save_dir, 6, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["resumed_from"] == 2
    for name in ("checkpoint_0000006", "checkpoint_0000004", "checkpoint_0000002"):
        assert name in result.stderr
    assert not marker.exists()  # the pickle was only ever parsed as safetensors
    assert sorted(p.name for p in save_dir.glob("damaged-*")) == ["damaged-checkpoint_0000004", "damaged-checkpoint_0000006"]
    assert checkpoints(save_dir) == ["checkpoint_0000002", "checkpoint_0000004", "checkpoint_0000006"]  # redone whole
    assert not temporary_leftovers(save_dir)


def test_resume_with_every_checkpoint_damaged_is_one_sentence(tmp_path, assets, six_updates):
    save_dir = Path(shutil.copytree(six_updates, tmp_path / "s"))
    for path in save_dir.glob("checkpoint_*"):
        (path / "weights.safetensors").write_bytes(b"garbage")
    assert_refused(train(assets, save_dir, 8, cwd=tmp_path), str(save_dir), "--no-resume")


@pytest.mark.parametrize("damage", ["missing-weights", "garbage-state", "list-state", "no-position"])
def test_each_kind_of_damage_is_set_aside(tmp_path, damage):
    """load_newest_loadable on a tiny model: every damaged newest checkpoint gives way to the one before."""
    from hat_cli.core.errors import HatError
    from hat_cli.training import checkpoint as ckpt

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    for updates in (1, 2):
        ckpt.save_checkpoint(tmp_path, updates, model, optimizer, {"position": {"epoch": 1, "offset": updates}})
    newest = tmp_path / "checkpoint_0000002"
    if damage == "missing-weights":
        (newest / ckpt.WEIGHTS_FILE).unlink()
    elif damage == "garbage-state":
        (newest / ckpt.STATE_FILE).write_bytes(b"\xff\xfe not json")
    elif damage == "list-state":
        (newest / ckpt.STATE_FILE).write_text("[1, 2]")
    else:
        state = json.loads((newest / ckpt.STATE_FILE).read_text())
        del state["position"]
        (newest / ckpt.STATE_FILE).write_text(json.dumps(state))

    def needs_position(path, state):
        if "position" not in state:
            raise HatError(f"{path} records no position.")

    path, state, notes = ckpt.load_newest_loadable(tmp_path, model, optimizer, accept=needs_position)
    assert path.name == "checkpoint_0000001" and state["updates"] == 1
    assert len(notes) == 1 and "checkpoint_0000002" in notes[0]
    assert (tmp_path / "damaged-checkpoint_0000002").is_dir()
